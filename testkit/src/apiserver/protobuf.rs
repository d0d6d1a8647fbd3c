//! Decoding of `application/vnd.kubernetes.protobuf` request bodies (kubectl's typed clients
//! send them: `create namespace|configmap|secret|token`, `certificate approve`, `auth can-i`).
//! The envelope is `k8s\0` + `runtime.Unknown{typeMeta, raw}`; the raw message is decoded by
//! walking the protobuf wire format with the field numbers of [`super::protobuf_fields`] and
//! the shapes of the traced types, into the JSON the rest of the server works with. Empty
//! strings and zero timestamps, which the Go encoder writes for unset fields, are dropped, as
//! Go's JSON encoding omits them. Every length is checked against the input.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::openapi::{Shape, TypeGraph};
use super::protobuf_fields::FIELDS;

const MAGIC: &[u8] = b"k8s\x00";
const MAX_DEPTH: usize = 64;

fn fields() -> &'static HashMap<&'static str, HashMap<u32, &'static str>> {
    static F: OnceLock<HashMap<&'static str, HashMap<u32, &'static str>>> = OnceLock::new();
    F.get_or_init(|| {
        FIELDS
            .iter()
            .map(|(n, fs)| (*n, fs.iter().copied().collect()))
            .collect()
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
        let end = self.pos.checked_add(len).ok_or("length overflow")?;
        if end > self.buf.len() {
            return Err(format!("length {len} runs past the end of the message"));
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        if end > self.buf.len() {
            return Err("truncated fixed-width field".into());
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// A raw field: number, wire type and payload.
enum Wire<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Len(&'a [u8]),
    /// 32-bit fields are skipped (no served field uses one).
    Fixed32,
}

fn fields_of(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut out = Vec::new();
    while !r.done() {
        let key = r.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        let w = match key & 7 {
            0 => Wire::Varint(r.varint()?),
            1 => Wire::Fixed64(r.fixed(8)?),
            2 => Wire::Len(r.bytes()?),
            5 => {
                r.fixed(4)?;
                Wire::Fixed32
            }
            t => return Err(format!("unsupported wire type {t}")),
        };
        out.push((tag, w));
    }
    Ok(out)
}

fn varint_of(w: &Wire<'_>) -> Option<u64> {
    match w {
        Wire::Varint(v) => Some(*v),
        _ => None,
    }
}

fn str_of(w: &Wire<'_>) -> Result<String, String> {
    match w {
        Wire::Len(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".into())
        }
        _ => Err("expected a length-delimited field".into()),
    }
}

fn time_of(b: &[u8], micro: bool) -> Result<Option<Value>, String> {
    let mut secs = 0i64;
    let mut nanos = 0i64;
    for (tag, w) in fields_of(b)? {
        match (tag, varint_of(&w)) {
            (1, Some(v)) => secs = v as i64,
            (2, Some(v)) => nanos = i64::from(v as i32),
            _ => {}
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(None);
    }
    let t = jiff::Timestamp::new(secs, nanos as i32).map_err(|e| e.to_string())?;
    Ok(Some(json!(if micro {
        super::util::format_micro_time(t)
    } else {
        super::util::format_time(t)
    })))
}

fn scalar(shape: &Shape, w: &Wire<'_>) -> Result<Option<Value>, String> {
    Ok(Some(match (shape, w) {
        (Shape::String, _) => {
            let s = str_of(w)?;
            if s.is_empty() {
                return Ok(None);
            }
            json!(s)
        }
        (Shape::Bytes, Wire::Len(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Shape::Int32, Wire::Varint(v)) => json!(*v as i64 as i32),
        (Shape::Int64, Wire::Varint(v)) => json!(*v as i64),
        (Shape::Bool, Wire::Varint(v)) => json!(*v != 0),
        (Shape::Number, Wire::Fixed64(b)) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            json!(f64::from_le_bytes(a))
        }
        _ => return Err(format!("field does not match its type {shape:?}")),
    }))
}

fn value(
    g: &TypeGraph,
    shape: &Shape,
    w: &Wire<'_>,
    depth: usize,
) -> Result<Option<Value>, String> {
    let Wire::Len(b) = w else {
        return scalar(shape, w);
    };
    match shape {
        Shape::Struct(n) => message(g, n, b, depth + 1).map(|m| Some(Value::Object(m))),
        Shape::Time => time_of(b, false),
        Shape::MicroTime => time_of(b, true),
        Shape::Quantity => {
            for (tag, w) in fields_of(b)? {
                if tag == 1 {
                    return Ok(Some(json!(str_of(&w)?)));
                }
            }
            Ok(None)
        }
        Shape::IntOrString => {
            let (mut ty, mut i, mut s) = (0u64, 0i64, String::new());
            for (tag, w) in fields_of(b)? {
                match tag {
                    1 => ty = varint_of(&w).unwrap_or(0),
                    2 => i = varint_of(&w).map(|v| i64::from(v as i32)).unwrap_or(0),
                    3 => s = str_of(&w)?,
                    _ => {}
                }
            }
            Ok(Some(if ty == 1 { json!(s) } else { json!(i) }))
        }
        Shape::Any => {
            for (tag, w) in fields_of(b)? {
                if let (1, Wire::Len(raw)) = (tag, w) {
                    return Ok(serde_json::from_slice(raw).ok());
                }
            }
            Ok(None)
        }
        _ => scalar(shape, w),
    }
}

fn message(
    g: &TypeGraph,
    type_name: &str,
    buf: &[u8],
    depth: usize,
) -> Result<Map<String, Value>, String> {
    if depth > MAX_DEPTH {
        return Err("message nested too deeply".into());
    }
    let mut out = Map::new();
    let (Some(td), Some(nums)) = (g.get(type_name), fields().get(type_name)) else {
        return Ok(out);
    };
    for (tag, w) in fields_of(buf)? {
        let Some(pbname) = nums.get(&tag) else {
            continue;
        };
        let Some(f) = td
            .fields
            .iter()
            .find(|f| f.name.to_ascii_lowercase() == *pbname)
        else {
            continue;
        };
        match &f.shape {
            Shape::Seq(e) => {
                let list = out
                    .entry(f.name.clone())
                    .or_insert_with(|| Value::Array(vec![]));
                let items: Vec<Value> = match (&**e, &w) {
                    // Packed scalars.
                    (Shape::Int32 | Shape::Int64 | Shape::Bool, Wire::Len(b)) => {
                        let mut r = Reader { buf: b, pos: 0 };
                        let mut v = Vec::new();
                        while !r.done() {
                            if let Some(x) = scalar(e, &Wire::Varint(r.varint()?))? {
                                v.push(x);
                            }
                        }
                        v
                    }
                    (Shape::String, _) => vec![json!(str_of(&w)?)],
                    _ => value(g, e, &w, depth)?.into_iter().collect(),
                };
                if let Some(a) = list.as_array_mut() {
                    a.extend(items);
                }
            }
            Shape::Map(v) => {
                let Wire::Len(b) = w else { continue };
                let mut key = String::new();
                let mut val = None;
                for (t, ew) in fields_of(b)? {
                    match t {
                        1 => key = str_of(&ew)?,
                        2 => {
                            val = match &**v {
                                Shape::String => Some(json!(str_of(&ew)?)),
                                other => value(g, other, &ew, depth)?,
                            }
                        }
                        _ => {}
                    }
                }
                let m = out
                    .entry(f.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(m) = m.as_object_mut() {
                    m.insert(
                        key,
                        val.unwrap_or_else(|| match &**v {
                            Shape::String => json!(""),
                            _ => Value::Null,
                        }),
                    );
                }
            }
            shape => {
                if let Some(v) = value(g, shape, &w, depth)? {
                    out.insert(f.name.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// Decode a protobuf request body into the JSON object it stands for.
pub fn decode(g: &TypeGraph, body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body does not start with the k8s envelope magic")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (tag, w) in fields_of(rest)? {
        match (tag, w) {
            (1, Wire::Len(tm)) => {
                for (t, w) in fields_of(tm)? {
                    match t {
                        1 => api_version = str_of(&w)?,
                        2 => kind = str_of(&w)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Len(r)) => raw = r,
            _ => {}
        }
    }
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let type_name = g
        .types
        .iter()
        .find(|(_, t)| {
            t.gvk
                .as_ref()
                .is_some_and(|(tg, _, k)| tg == group && *k == kind)
        })
        .map(|(n, _)| n.clone())
        .ok_or_else(|| format!("no kind {kind:?} in {api_version:?} is served"))?;
    let mut obj = message(g, &type_name, raw, 0)?;
    // An unset status is written as an empty message; clients do not send status.
    if obj
        .get("status")
        .is_some_and(|s| s.as_object().is_some_and(Map::is_empty))
    {
        obj.remove("status");
    }
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(tag: u32, payload: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(tag) << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let g = TypeGraph::build();
        let mut meta = Vec::new();
        field(1, b"cm1", &mut meta);
        field(2, b"", &mut meta);
        field(3, b"ns", &mut meta);
        let mut labels = Vec::new();
        field(1, b"app", &mut labels);
        field(2, b"x", &mut labels);
        field(11, &labels, &mut meta);
        let mut cm = Vec::new();
        field(1, &meta, &mut cm);
        let mut entry = Vec::new();
        field(1, b"key", &mut entry);
        field(2, b"", &mut entry);
        field(2, &entry, &mut cm);
        let mut tm = Vec::new();
        field(1, b"v1", &mut tm);
        field(2, b"ConfigMap", &mut tm);
        let mut env = MAGIC.to_vec();
        field(1, &tm, &mut env);
        field(2, &cm, &mut env);
        let v = decode(&g, &env).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cm1", "namespace": "ns", "labels": {"app": "x"}},
                   "data": {"key": ""}})
        );
        assert!(decode(&g, b"nope").is_err());
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[0x0a, 0xff, 0x01]);
        assert!(decode(&g, &bad).is_err());
    }
}
