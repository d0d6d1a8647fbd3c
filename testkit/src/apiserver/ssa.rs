//! Field ownership (`metadata.managedFields`, `FieldsV1`) and server-side apply.
//!
//! Every write records its manager: an update takes ownership of the fields it changed (and
//! other managers lose them); an apply owns exactly the fields of its configuration. Apply
//! merges the configuration into the live object (lists by their merge keys, sets as sets,
//! atomic lists whole), removes fields the manager applied before and no longer applies
//! (unless someone else owns them), and answers 409 with the conflicting managers and fields
//! when another manager owns a field the configuration sets to a different value, unless
//! `force=true`. A faithful-enough merge, not structured-merge-diff itself.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::errors::{ApiError, ApiResult};
use super::openapi::{Shape, TypeGraph};
use super::patchmeta::{field_meta, ListKind};
use super::registry::ResourceDef;
use super::util;

/// A field set as the `FieldsV1` tree: `f:<field>`, `k:<keys json>`, `v:<value json>`, `.`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeMap<String, FieldSet>);

impl FieldSet {
    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    fn from_json(v: &Value) -> FieldSet {
        FieldSet(
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), FieldSet::from_json(v)))
                .collect(),
        )
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every path to a leaf.
    fn leaves(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (k, v) in &self.0 {
            prefix.push(k.clone());
            if v.0.is_empty() {
                out.push(prefix.clone());
            } else {
                v.leaves(prefix, out);
            }
            prefix.pop();
        }
    }

    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => true,
            Some((h, rest)) => self.0.get(h).is_some_and(|c| c.contains(rest)),
        }
    }

    fn insert(&mut self, path: &[String]) {
        if let Some((h, rest)) = path.split_first() {
            self.0.entry(h.clone()).or_default().insert(rest);
        }
    }

    fn remove(&mut self, path: &[String]) {
        if let Some((h, rest)) = path.split_first() {
            if rest.is_empty() {
                self.0.remove(h);
            } else if let Some(c) = self.0.get_mut(h) {
                c.remove(rest);
                if c.0.is_empty() {
                    self.0.remove(h);
                }
            }
        }
    }

    fn union(&mut self, other: &FieldSet) {
        let mut leaves = Vec::new();
        other.leaves(&mut Vec::new(), &mut leaves);
        for l in leaves {
            self.insert(&l);
        }
    }
}

/// Fields no manager owns.
const IGNORED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

fn child_shape<'g>(g: &'g TypeGraph, shape: Option<&Shape>, field: &str) -> Option<&'g Shape> {
    match shape? {
        Shape::Struct(n) => g.get(n)?.field(field).map(|f| &f.shape),
        _ => None,
    }
}

fn elem_shape(shape: Option<&Shape>) -> Option<&Shape> {
    match shape? {
        Shape::Seq(e) => Some(e),
        _ => None,
    }
}

fn list_kind(shape: Option<&Shape>, field: &str) -> Option<ListKind> {
    match shape? {
        Shape::Struct(n) => field_meta(n, field).map(|m| m.list),
        _ => None,
    }
}

fn key_pe(elem: &Value, map_keys: &[&str], key: &str) -> String {
    let mut k = Map::new();
    let keys: Vec<&str> = if map_keys.is_empty() {
        vec![key]
    } else {
        map_keys.to_vec()
    };
    for mk in keys {
        if let Some(v) = elem.get(mk) {
            k.insert(mk.to_string(), v.clone());
        }
    }
    format!("k:{}", Value::Object(k))
}

/// The fields an object sets.
pub fn field_set(g: &TypeGraph, root: Option<&str>, obj: &Value, skip_status: bool) -> FieldSet {
    let shape = root.map(|r| Shape::Struct(r.to_string()));
    let mut out = FieldSet::default();
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
            if k == "apiVersion" || k == "kind" || (skip_status && k == "status") || v.is_null() {
                continue;
            }
            let cs = child_shape(g, shape.as_ref(), k);
            let mut sub = FieldSet::default();
            if k == "metadata" {
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if IGNORED_META.contains(&mk.as_str()) || mv.is_null() {
                        continue;
                    }
                    let mut s = FieldSet::default();
                    collect(g, child_shape(g, cs, mk), list_kind(cs, mk), mv, &mut s);
                    sub.0.insert(format!("f:{mk}"), s);
                }
                if sub.is_empty() {
                    continue;
                }
            } else {
                collect(g, cs, list_kind(shape.as_ref(), k), v, &mut sub);
            }
            out.0.insert(format!("f:{k}"), sub);
        }
    }
    out
}

fn collect(
    g: &TypeGraph,
    shape: Option<&Shape>,
    lk: Option<ListKind>,
    v: &Value,
    out: &mut FieldSet,
) {
    match v {
        Value::Object(o) => {
            let is_map = matches!(shape, Some(Shape::Map(_)));
            if is_map && !o.is_empty() {
                out.0.insert(".".into(), FieldSet::default());
            }
            for (k, cv) in o {
                if cv.is_null() {
                    continue;
                }
                let cs = match shape {
                    Some(Shape::Map(vs)) => Some(&**vs),
                    _ => child_shape(g, shape, k),
                };
                let mut sub = FieldSet::default();
                collect(g, cs, list_kind(shape, k), cv, &mut sub);
                out.0.insert(format!("f:{k}"), sub);
            }
        }
        Value::Array(items) => match lk {
            Some(ListKind::Map { key, map_keys }) => {
                for it in items {
                    let mut sub = FieldSet::default();
                    sub.0.insert(".".into(), FieldSet::default());
                    collect(g, elem_shape(shape), None, it, &mut sub);
                    out.0.insert(key_pe(it, map_keys, key), sub);
                }
            }
            Some(ListKind::Set) => {
                for it in items {
                    out.0.insert(format!("v:{it}"), FieldSet::default());
                }
            }
            None => {}
        },
        _ => {}
    }
}

fn entries(obj: &Value) -> Vec<Value> {
    util::meta(obj)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, list: Vec<Value>) {
    let m = util::meta_mut(obj);
    if list.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), Value::Array(list));
    }
}

fn entry_fields(e: &Value) -> FieldSet {
    FieldSet::from_json(&e["fieldsV1"])
}

fn entry(manager: &str, op: &str, api_version: &str, sub: &str, fields: &FieldSet) -> Value {
    let mut e = json!({
        "manager": manager,
        "operation": op,
        "apiVersion": api_version,
        "time": util::now_string(),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields.to_json(),
    });
    if !sub.is_empty() {
        e["subresource"] = json!(sub);
    }
    e
}

fn same_entry(e: &Value, manager: &str, op: &str, sub: &str) -> bool {
    e["manager"].as_str() == Some(manager)
        && e["operation"].as_str() == Some(op)
        && e["subresource"].as_str().unwrap_or("") == sub
}

/// Leaf fields whose value differs between two objects (added or changed in `new`).
fn changed(
    g: &TypeGraph,
    root: Option<&str>,
    old: Option<&Value>,
    new: &Value,
    skip_status: bool,
) -> FieldSet {
    let new_set = field_set(g, root, new, skip_status);
    let Some(old) = old else { return new_set };
    let mut leaves = Vec::new();
    new_set.leaves(&mut Vec::new(), &mut leaves);
    let mut out = FieldSet::default();
    for l in leaves {
        // `.` (the element or map itself) changes only when it is new.
        let changed = if l.last().is_some_and(|p| p == ".") {
            value_at(old, &l[..l.len() - 1]).is_none()
        } else {
            value_at(new, &l) != value_at(old, &l)
        };
        if changed {
            out.insert(&l);
        }
    }
    out
}

/// Resolve a field path in an object.
fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for pe in path {
        if pe == "." {
            continue;
        }
        cur = if let Some(f) = pe.strip_prefix("f:") {
            cur.get(f)?
        } else if let Some(k) = pe.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur.as_array()?
                .iter()
                .find(|e| keys.iter().all(|(kk, kv)| e.get(kk) == Some(kv)))?
        } else if let Some(val) = pe.strip_prefix("v:") {
            let want: Value = serde_json::from_str(val).ok()?;
            cur.as_array()?.iter().find(|e| **e == want)?
        } else {
            return None;
        };
    }
    Some(cur)
}

/// Remove the field at a path (a `.` leaf removes the list element itself).
fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let (target_pe, container_path) = if last == "." {
        match parents.split_last() {
            Some((elem, rest)) => (elem.clone(), rest.to_vec()),
            None => return,
        }
    } else {
        (last.clone(), parents.to_vec())
    };
    let mut cur = v;
    for pe in &container_path {
        let next = if let Some(f) = pe.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = pe.strip_prefix("k:") {
            let Ok(keys) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|e| keys.iter().all(|(kk, kv)| e.get(kk) == Some(kv)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = target_pe.strip_prefix("f:") {
        if let Some(o) = cur.as_object_mut() {
            o.remove(f);
        }
    } else if let Some(k) = target_pe.strip_prefix("k:") {
        if let (Ok(keys), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|e| !keys.iter().all(|(kk, kv)| e.get(kk) == Some(kv)));
        }
    } else if let Some(val) = target_pe.strip_prefix("v:") {
        if let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(val), cur.as_array_mut()) {
            a.retain(|e| *e != want);
        }
    }
}

fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(a, b)| format!("{a}={b}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = pe.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Record the manager of an update (create, update, patch) in `new`'s managedFields.
pub fn record_update(
    g: &TypeGraph,
    r: &ResourceDef,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    sub: &str,
) {
    let root = g.root_of(r).map(str::to_string);
    let mut list = old.map(entries).unwrap_or_default();
    let skip_status = r.status_subresource && sub.is_empty();
    let mut ch = changed(g, root.as_deref(), old, new, skip_status);
    if sub == "status" {
        ch = FieldSet(ch.0.into_iter().filter(|(k, _)| k == "f:status").collect());
    }
    if ch.is_empty() && list.iter().any(|e| same_entry(e, manager, "Update", sub)) {
        set_entries(new, list);
        return;
    }
    let mut leaves = Vec::new();
    ch.leaves(&mut Vec::new(), &mut leaves);
    let present = field_set(g, root.as_deref(), new, false);
    let mut mine = FieldSet::default();
    for e in list.iter_mut() {
        let mut f = entry_fields(e);
        if same_entry(e, manager, "Update", sub) {
            mine = f;
            continue;
        }
        for l in &leaves {
            f.remove(l);
        }
        e["fieldsV1"] = f.to_json();
    }
    list.retain(|e| !same_entry(e, manager, "Update", sub) && !entry_fields(e).is_empty());
    mine.union(&ch);
    let mut kept = FieldSet::default();
    let mut all = Vec::new();
    mine.leaves(&mut Vec::new(), &mut all);
    for l in all {
        if present.contains(&l) {
            kept.insert(&l);
        }
    }
    if !kept.is_empty() {
        list.push(entry(manager, "Update", &r.api_version(), sub, &kept));
    }
    set_entries(new, list);
}

/// managedFields of an object created by an apply.
pub fn record_apply_create(
    g: &TypeGraph,
    r: &ResourceDef,
    obj: &mut Value,
    cfg: &Value,
    manager: &str,
) {
    let root = g.root_of(r).map(str::to_string);
    let set = field_set(g, root.as_deref(), cfg, false);
    set_entries(
        obj,
        vec![entry(manager, "Apply", &r.api_version(), "", &set)],
    );
}

/// Server-side apply of `cfg` by `manager` onto the live object `live`.
pub fn apply(
    g: &TypeGraph,
    r: &ResourceDef,
    live: &mut Value,
    cfg: &Value,
    manager: &str,
    force: bool,
    sub: &str,
) -> ApiResult<()> {
    let root = g.root_of(r).map(str::to_string);
    let skip_status = r.status_subresource && sub.is_empty();
    let cfg_set = field_set(g, root.as_deref(), cfg, skip_status);
    let mut list = entries(live);
    let prev = list
        .iter()
        .find(|e| same_entry(e, manager, "Apply", sub))
        .map(entry_fields)
        .unwrap_or_default();
    let mut cfg_leaves = Vec::new();
    cfg_set.leaves(&mut Vec::new(), &mut cfg_leaves);
    if !force {
        let mut conflicts = Vec::new();
        for e in &list {
            if same_entry(e, manager, "Apply", sub) {
                continue;
            }
            let theirs = entry_fields(e);
            for l in &cfg_leaves {
                if l.last().is_some_and(|p| p == ".") || !theirs.contains(l) {
                    continue;
                }
                if value_at(live, l) != value_at(cfg, l) {
                    conflicts.push((
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["apiVersion"].as_str().unwrap_or("").to_string(),
                        path_string(l),
                    ));
                }
            }
        }
        if !conflicts.is_empty() {
            let n = conflicts.len();
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {p}"))
                .collect();
            let message = if n == 1 {
                format!("Apply failed with 1 conflict: {}", lines[0])
            } else {
                format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
            };
            return Err(ApiError::new(409, "Conflict", message).with_details(json!({
                "causes": conflicts.iter().map(|(m, v, p)| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\" using {v}"),
                    "field": p,
                })).collect::<Vec<_>>()
            })));
        }
    }
    // Fields this manager applied before and no longer applies, that nobody else owns.
    let mut others = FieldSet::default();
    for e in &list {
        if !same_entry(e, manager, "Apply", sub) {
            others.union(&entry_fields(e));
        }
    }
    let mut prev_leaves = Vec::new();
    prev.leaves(&mut Vec::new(), &mut prev_leaves);
    for l in prev_leaves {
        if !cfg_set.contains(&l) && !others.contains(&l) {
            remove_at(live, &l);
        }
    }
    let shape = root.as_ref().map(|r| Shape::Struct(r.clone()));
    if let (Some(l), Some(c)) = (live.as_object_mut(), cfg.as_object()) {
        merge_into(g, shape.as_ref(), l, c, skip_status, true);
    }
    if force {
        for e in list.iter_mut() {
            if same_entry(e, manager, "Apply", sub) {
                continue;
            }
            let mut f = entry_fields(e);
            for l in &cfg_leaves {
                f.remove(l);
            }
            e["fieldsV1"] = f.to_json();
        }
    }
    list.retain(|e| !same_entry(e, manager, "Apply", sub) && !entry_fields(e).is_empty());
    list.push(entry(manager, "Apply", &r.api_version(), sub, &cfg_set));
    set_entries(live, list);
    Ok(())
}

fn merge_into(
    g: &TypeGraph,
    shape: Option<&Shape>,
    live: &mut Map<String, Value>,
    cfg: &Map<String, Value>,
    skip_status: bool,
    root: bool,
) {
    for (k, cv) in cfg {
        if root && (k == "status" && skip_status) {
            continue;
        }
        if root && k == "metadata" {
            if let (Some(Value::Object(lm)), Some(cm)) = (live.get_mut("metadata"), cv.as_object())
            {
                for (mk, mv) in cm {
                    if IGNORED_META.contains(&mk.as_str()) {
                        continue;
                    }
                    let ms = child_shape(g, child_shape(g, shape, "metadata"), mk);
                    let lk = list_kind(child_shape(g, shape, "metadata"), mk);
                    merge_value(g, ms, lk, lm.entry(mk.clone()).or_insert(Value::Null), mv);
                }
            }
            continue;
        }
        let cs = match shape {
            Some(Shape::Map(v)) => Some(&**v),
            _ => child_shape(g, shape, k),
        };
        let lk = list_kind(shape, k);
        merge_value(g, cs, lk, live.entry(k.clone()).or_insert(Value::Null), cv);
    }
}

fn merge_value(
    g: &TypeGraph,
    shape: Option<&Shape>,
    lk: Option<ListKind>,
    live: &mut Value,
    cfg: &Value,
) {
    match (live, cfg) {
        (Value::Object(l), Value::Object(c)) => merge_into(g, shape, l, c, false, false),
        (Value::Array(l), Value::Array(c)) => match lk {
            Some(ListKind::Map { key, map_keys }) => {
                let mut out: Vec<Value> = Vec::new();
                for ce in c {
                    let pe = key_pe(ce, map_keys, key);
                    let existing = l.iter().position(|le| key_pe(le, map_keys, key) == pe);
                    match existing {
                        Some(i) => {
                            let mut le = l.remove(i);
                            if let (Some(lo), Some(co)) = (le.as_object_mut(), ce.as_object()) {
                                merge_into(g, elem_shape(shape), lo, co, false, false);
                            }
                            out.push(le);
                        }
                        None => out.push(ce.clone()),
                    }
                }
                out.append(l);
                *l = out;
            }
            Some(ListKind::Set) => {
                for ce in c {
                    if !l.contains(ce) {
                        l.push(ce.clone());
                    }
                }
            }
            None => *l = c.clone(),
        },
        (l, c) => *l = c.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry;

    #[test]
    fn apply_owns_merges_removes_and_conflicts() {
        let g = TypeGraph::build();
        let cms = registry::lookup("", "v1", "configmaps").unwrap();
        let mut live = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1", "b": "2"}});
        let cfg1 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1", "b": "2"}});
        record_apply_create(&g, cms, &mut live, &cfg1, "tool");
        // Another manager updates `a`.
        let old = live.clone();
        live["data"]["a"] = json!("9");
        record_update(&g, cms, Some(&old), &mut live, "editor", "");
        // Re-applying `a` with the old value conflicts with the editor.
        let err = apply(&g, cms, &mut live.clone(), &cfg1, "tool", false, "").unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("conflict with \"editor\""),
            "{}",
            err.message
        );
        // Dropping `b` from the configuration removes it; forcing takes `a` back.
        let cfg2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"a": "1"}});
        apply(&g, cms, &mut live, &cfg2, "tool", true, "").unwrap();
        assert_eq!(live["data"], json!({"a": "1"}));
        let managers: Vec<&str> = live["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["tool"]);
    }

    #[test]
    fn keyed_lists_merge_by_key() {
        let g = TypeGraph::build();
        let pods = registry::lookup("", "v1", "pods").unwrap();
        let mut live = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
        let cfg = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "b", "image": "b:2"}]}});
        apply(&g, pods, &mut live, &cfg, "m", false, "").unwrap();
        assert_eq!(live["spec"]["containers"].as_array().unwrap().len(), 2);
        let fs = &live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:containers"];
        assert!(fs.get("k:{\"name\":\"b\"}").is_some(), "{fs}");
    }
}
