//! The three classic patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! strategic merge patch with its directives (`$patch: replace|delete|merge`, `$retainKeys`,
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`), lists merged by their merge
//! keys from [`super::patchmeta`] and types found through the traced [`TypeGraph`].

use serde_json::{Map, Value};

use super::openapi::{Shape, TypeGraph};
use super::patchmeta::{field_meta, ListKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("{0}")]
    Invalid(String),
    #[error("the server rejected our request due to an error in our request: {0}")]
    Unprocessable(String),
}

// ---- JSON merge patch ----------------------------------------------------------------------

pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

// ---- JSON patch ----------------------------------------------------------------------------

fn unescape_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

fn pointer_parts(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    if !path.starts_with('/') {
        return Err(PatchError::Unprocessable(format!(
            "invalid JSON pointer: {path:?}"
        )));
    }
    Ok(path[1..].split('/').map(unescape_token).collect())
}

fn parent_and_last<'a>(
    doc: &'a mut Value,
    path: &str,
) -> Result<(&'a mut Value, String), PatchError> {
    let mut parts = pointer_parts(path)?;
    let last = parts
        .pop()
        .ok_or_else(|| PatchError::Unprocessable("cannot address the document root".into()))?;
    let mut cur = doc;
    for p in &parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError::Unprocessable(format!("doc is missing path: {path:?}")))?;
    }
    Ok((cur, last))
}

fn get_ptr<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, PatchError> {
    let mut cur = doc;
    for p in pointer_parts(path)? {
        cur = match cur {
            Value::Object(m) => m.get(&p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| PatchError::Unprocessable(format!("doc is missing path: {path:?}")))?;
    }
    Ok(cur)
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_and_last(doc, path)?;
    match parent {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            let i: usize = last.parse().map_err(|_| {
                PatchError::Unprocessable(format!("invalid array index {last:?} in {path:?}"))
            })?;
            if i > a.len() {
                return Err(PatchError::Unprocessable(format!(
                    "add operation does not apply: doc is missing path: {path:?}"
                )));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(PatchError::Unprocessable(format!(
            "add operation does not apply: doc is missing path: {path:?}"
        ))),
    }
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = parent_and_last(doc, path)?;
    let missing = || {
        PatchError::Unprocessable(format!(
            "remove operation does not apply: doc is missing path: {path:?}"
        ))
    };
    match parent {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops = ops.as_array().ok_or_else(|| {
        PatchError::Invalid(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch".into(),
        )
    })?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or("");
        let path = op["path"].as_str().unwrap_or("");
        match kind {
            "add" => add_at(doc, path, op.get("value").cloned().unwrap_or(Value::Null))?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "replace" => {
                get_ptr(doc, path).map_err(|_| {
                    PatchError::Unprocessable(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ))
                })?;
                if path.is_empty() {
                    *doc = op.get("value").cloned().unwrap_or(Value::Null);
                } else {
                    remove_at(doc, path)?;
                    add_at(doc, path, op.get("value").cloned().unwrap_or(Value::Null))?;
                }
            }
            "move" => {
                let from = op["from"].as_str().unwrap_or("");
                let v = remove_at(doc, from)?;
                add_at(doc, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().unwrap_or("");
                let v = get_ptr(doc, from)?.clone();
                add_at(doc, path, v)?;
            }
            "test" => {
                let have = get_ptr(doc, path)?;
                let want = op.get("value").unwrap_or(&Value::Null);
                if have != want {
                    return Err(PatchError::Unprocessable(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => {
                return Err(PatchError::Unprocessable(format!(
                    "Unexpected kind: {other}"
                )))
            }
        }
    }
    Ok(())
}

// ---- strategic merge patch -----------------------------------------------------------------

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// The shape a field of a struct has, if known.
fn field_shape<'g>(g: &'g TypeGraph, shape: Option<&Shape>, field: &str) -> Option<&'g Shape> {
    match shape? {
        Shape::Struct(n) => g.get(n)?.field(field).map(|f| &f.shape),
        _ => None,
    }
}

fn struct_name(shape: Option<&Shape>) -> Option<&str> {
    match shape? {
        Shape::Struct(n) => Some(n),
        _ => None,
    }
}

/// Apply a strategic merge patch to `original` of the kind whose root type is `root`.
pub fn strategic_merge(
    g: &TypeGraph,
    root: &str,
    original: &mut Value,
    patch: &Value,
) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid(
            "json: cannot unmarshal array into Go value of type map[string]interface {}".into(),
        ));
    };
    let shape = Shape::Struct(root.to_string());
    if !original.is_object() {
        *original = Value::Object(Map::new());
    }
    merge_map(
        g,
        Some(&shape),
        original.as_object_mut().expect("object"),
        p,
    )
}

/// Remove directive markers from a value taken whole from a patch.
fn strip(v: &Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return None;
            }
            let mut out = Map::new();
            for (k, v) in m {
                if k == DIRECTIVE
                    || k == RETAIN_KEYS
                    || k.starts_with(SET_ORDER)
                    || k.starts_with(DELETE_PRIMITIVE)
                {
                    continue;
                }
                if v.is_null() {
                    continue;
                }
                if let Some(s) = strip(v) {
                    out.insert(k.clone(), s);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(
            a.iter()
                .filter(|e| {
                    !(e.is_object()
                        && e.get(DIRECTIVE).is_some()
                        && e.as_object().is_some_and(|o| o.len() == 1))
                })
                .filter_map(strip)
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn merge_map(
    g: &TypeGraph,
    shape: Option<&Shape>,
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<(), PatchError> {
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove(DIRECTIVE);
            *original = match strip(&Value::Object(replaced)) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            return Ok(());
        }
        Some("delete") => {
            original.clear();
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Invalid(format!(
                "Unknown patch type: {other} in map: {}",
                Value::Object(patch.clone())
            )))
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        let keys: Vec<&str> = keys
            .as_array()
            .ok_or_else(|| PatchError::Invalid("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        original.retain(|k, _| keys.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            if let (Some(Value::Array(list)), Some(del)) = (original.get_mut(field), v.as_array()) {
                list.retain(|e| !del.contains(e));
            }
        }
    }
    for (k, pv) in patch {
        if k == DIRECTIVE
            || k == RETAIN_KEYS
            || k.starts_with(SET_ORDER)
            || k.starts_with(DELETE_PRIMITIVE)
        {
            continue;
        }
        if pv.is_null() {
            original.remove(k);
            continue;
        }
        let child = match shape {
            Some(Shape::Map(v)) => Some(&**v),
            _ => field_shape(g, shape, k),
        };
        let meta = struct_name(shape).and_then(|t| field_meta(t, k));
        match (original.get_mut(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => merge_map(g, child, o, p)?,
            (Some(Value::Array(o)), Value::Array(p)) => {
                let elem = match child {
                    Some(Shape::Seq(e)) => Some(&**e),
                    _ => None,
                };
                let merged = merge_list(g, elem, meta.map(|m| m.list), o, p)?;
                *o = merged;
            }
            (existing, _) => {
                let _ = existing;
                // New field, or a change of kind: take the patch value, without directives.
                let v = if let (Value::Array(p), Some(m)) = (pv, meta) {
                    let elem = match child {
                        Some(Shape::Seq(e)) => Some(&**e),
                        _ => None,
                    };
                    Value::Array(merge_list(g, elem, Some(m.list), &[], p)?)
                } else {
                    match strip(pv) {
                        Some(v) => v,
                        None => {
                            original.remove(k);
                            continue;
                        }
                    }
                };
                original.insert(k.clone(), v);
            }
        }
    }
    for (k, order) in patch {
        if let Some(field) = k.strip_prefix(SET_ORDER) {
            let meta = struct_name(shape).and_then(|t| field_meta(t, field));
            if let (Some(Value::Array(list)), Some(order)) =
                (original.get_mut(field), order.as_array())
            {
                reorder(list, order, meta.map(|m| m.list));
            }
        }
    }
    Ok(())
}

fn key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.get(key)
}

fn merge_list(
    g: &TypeGraph,
    elem: Option<&Shape>,
    kind: Option<ListKind>,
    original: &[Value],
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    // `{"$patch": "replace"}` as an element replaces the whole list.
    let replace = patch.iter().any(|e| {
        e.as_object()
            .and_then(|o| o.get(DIRECTIVE))
            .and_then(Value::as_str)
            == Some("replace")
    });
    if replace || kind.is_none() {
        return Ok(patch
            .iter()
            .filter(|e| {
                !e.as_object()
                    .is_some_and(|o| o.len() == 1 && o.contains_key(DIRECTIVE))
            })
            .filter_map(strip)
            .collect());
    }
    let mut out: Vec<Value> = original.to_vec();
    match kind.expect("checked") {
        ListKind::Set => {
            for p in patch {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        ListKind::Map { key, .. } => {
            for p in patch {
                let Some(pk) = key_of(p, key) else {
                    return Err(PatchError::Invalid(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    )));
                };
                let pos = out.iter().position(|o| key_of(o, key) == Some(pk));
                let delete = p.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        if let (Value::Object(o), Value::Object(pm)) = (&mut out[i], p) {
                            merge_map(g, elem, o, pm)?;
                        } else {
                            out[i] = p.clone();
                        }
                    }
                    (None, false) => {
                        if let Some(v) = strip(p) {
                            // Nested keyed lists inside a new element are taken as given.
                            out.push(v);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `$setElementOrder`: listed elements take the listed order among the positions listed
/// elements occupy; elements the patch does not list keep their places.
fn reorder(list: &mut Vec<Value>, order: &[Value], kind: Option<ListKind>) {
    let index_of = |v: &Value| -> Option<usize> {
        match kind {
            Some(ListKind::Map { key, .. }) => {
                let k = key_of(v, key)?;
                order.iter().position(|o| key_of(o, key) == Some(k))
            }
            _ => order.iter().position(|o| o == v),
        }
    };
    let mut listed: Vec<(usize, Value)> = list
        .iter()
        .filter_map(|v| index_of(v).map(|i| (i, v.clone())))
        .collect();
    listed.sort_by_key(|(i, _)| *i);
    let mut it = listed.into_iter().map(|(_, v)| v);
    let old = std::mem::take(list);
    for v in old {
        if index_of(&v).is_some() {
            if let Some(next) = it.next() {
                list.push(next);
            }
        } else {
            list.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph() -> TypeGraph {
        TypeGraph::build()
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let mut v = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut v, &json!({"a": null, "b": {"c": 5}, "e": [1]}));
        assert_eq!(v, json!({"b": {"c": 5, "d": 3}, "e": [1]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut v = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        json_patch(
            &mut v,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "remove", "path": "/list/0"},
                {"op": "test", "path": "/list/0", "value": 2},
            ]),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"labels": {"a": "x", "b/c": "2"}}, "list": [2, 3]})
        );
        assert!(json_patch(
            &mut v,
            &json!([{"op": "test", "path": "/list/0", "value": 9}])
        )
        .is_err());
        assert!(json_patch(&mut v, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let g = graph();
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}],
            "tolerations": [{"key": "t1"}]}});
        strategic_merge(
            &g,
            "Pod",
            &mut pod,
            &json!({"spec": {
                "containers": [{"name": "b", "image": "b:2"},
                               {"name": "a", "env": [{"name": "Y", "value": "2"}]}],
                "tolerations": [{"key": "t2"}]}}),
        )
        .unwrap();
        assert_eq!(pod["spec"]["containers"][0]["image"], "a:1");
        assert_eq!(
            pod["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(pod["spec"]["containers"][1]["image"], "b:2");
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "t2"}]));
    }

    #[test]
    fn strategic_merge_directives() {
        let g = graph();
        let mut node = json!({"metadata": {"finalizers": ["a", "b"]},
            "status": {"conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "MemoryPressure", "status": "False"},
                {"type": "DiskPressure", "status": "False"}]}});
        strategic_merge(
            &g,
            "Node",
            &mut node,
            &json!({
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"]},
                "status": {
                    "$setElementOrder/conditions": [{"type": "DiskPressure"}, {"type": "MemoryPressure"}, {"type": "Ready"}],
                    "conditions": [{"type": "Ready", "status": "True"},
                                   {"type": "MemoryPressure", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(node["metadata"]["finalizers"], json!(["b", "c"]));
        let types: Vec<_> = node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(types, ["DiskPressure", "Ready"]);
        assert_eq!(node["status"]["conditions"][1]["status"], "True");

        let mut pod = json!({"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}});
        strategic_merge(
            &g,
            "Pod",
            &mut pod,
            &json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "hostPath"],
                                          "hostPath": {"path": "/x"}}]}}),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["volumes"][0],
            json!({"name": "v", "hostPath": {"path": "/x"}})
        );

        let mut pod = json!({"metadata": {"labels": {"a": "1"}}});
        strategic_merge(
            &g,
            "Pod",
            &mut pod,
            &json!({"metadata": {"labels": {"$patch": "replace", "b": "2"}}}),
        )
        .unwrap();
        assert_eq!(pod["metadata"]["labels"], json!({"b": "2"}));
    }
}
