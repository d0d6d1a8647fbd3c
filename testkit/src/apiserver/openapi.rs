//! The served types' shapes and the OpenAPI documents generated from them.
//!
//! The shape of each type is read off its `k8s-openapi` `Deserialize` impl: a tracing
//! deserializer feeds every declared field one sample value and records what the impl asks for
//! (a struct, a list, a map, a string, an int32, a `Time`, a `Quantity`, ...) and whether the
//! field is optional. The resulting [`TypeGraph`] drives strategic merge patch (which type a
//! path is in) and the `/openapi/v3` documents kubectl reads to decide whether the server does
//! field validation, to compute `kubectl apply` patches and for `kubectl explain`. Nothing is
//! vendored from Kubernetes' generated swagger: descriptions are absent, the rest is generated.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde_json::{json, Map, Value};

use super::patchmeta::{field_meta, ListKind};
use super::registry::{self, ResourceDef};

/// The shape of one field or element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Struct(String),
    Seq(Box<Shape>),
    Map(Box<Shape>),
    String,
    Int32,
    Int64,
    Number,
    Bool,
    Time,
    MicroTime,
    Quantity,
    IntOrString,
    Bytes,
    Any,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub shape: Shape,
    /// Always false for k8s-openapi types: their impls read every field through an `Option`
    /// (a missing required field takes its default), so the tracer cannot tell.
    pub required: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TypeDef {
    pub fields: Vec<FieldDef>,
    /// The qualified OpenAPI name (`io.k8s.api.core.v1.PodSpec`).
    pub qualified: String,
    pub gvk: Option<(String, String, String)>,
}

impl TypeDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Every traced type by its short (Rust/Go) name.
#[derive(Debug, Default)]
pub struct TypeGraph {
    pub types: BTreeMap<String, TypeDef>,
    in_progress: HashSet<String>,
    /// Package of the root being traced (`core.v1`), for qualifying the names it reaches.
    package: String,
}

const META_TYPES: &[&str] = &[
    "ObjectMeta",
    "ListMeta",
    "OwnerReference",
    "ManagedFieldsEntry",
    "FieldsV1",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Status",
    "StatusDetails",
    "StatusCause",
    "DeleteOptions",
    "Preconditions",
    "Condition",
];

fn package_of(group: &str, version: &str) -> String {
    let g = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!("{g}.{version}")
}

impl TypeGraph {
    /// Trace every served kind and subresource body.
    pub fn build() -> TypeGraph {
        let mut g = TypeGraph::default();
        for r in registry::RESOURCES {
            g.package = package_of(r.group, r.version);
            let name = (r.trace)(&mut g);
            if let Some(t) = g.types.get_mut(&name) {
                t.gvk = Some((r.group.into(), r.version.into(), r.kind.into()));
            }
        }
        for (group, version, kind, trace) in registry::subresource_kinds() {
            g.package = package_of(group, version);
            let name = trace(&mut g);
            if let Some(t) = g.types.get_mut(&name) {
                t.gvk = Some((group.into(), version.into(), kind.into()));
            }
        }
        g
    }

    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// The root type name of a served kind.
    pub fn root_of(&self, r: &ResourceDef) -> Option<&str> {
        self.types
            .iter()
            .find(|(_, t)| {
                t.gvk
                    .as_ref()
                    .is_some_and(|(g, _, k)| g == r.group && k == r.kind)
            })
            .map(|(n, _)| n.as_str())
    }

    fn qualify(&self, name: &str) -> String {
        if META_TYPES.contains(&name) {
            format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}")
        } else {
            format!("io.k8s.api.{}.{name}", self.package)
        }
    }
}

/// Trace the `Deserialize` impl of a top-level kind; returns its type name.
pub fn trace_root<T: DeserializeOwned>(g: &mut TypeGraph) -> String {
    let mut shape = Shape::Any;
    let mut optional = false;
    let tracer = ValueTracer {
        g,
        out: &mut shape,
        optional: &mut optional,
        fixed: None,
        newtype: None,
        root: true,
    };
    // The sample values satisfy every impl; an error would only mean an unforeseen impl, and
    // then the type is simply absent from the documents.
    let _ = T::deserialize(tracer);
    match shape {
        Shape::Struct(n) => n,
        _ => String::new(),
    }
}

type TErr = de::value::Error;

struct ValueTracer<'a> {
    g: &'a mut TypeGraph,
    out: &'a mut Shape,
    optional: &'a mut bool,
    /// A value this position must hold (a kind's own `apiVersion` and `kind`).
    fixed: Option<String>,
    newtype: Option<&'static str>,
    root: bool,
}

struct Expecting<'a, V>(&'a V);

impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

impl<'de> de::Deserializer<'de> for ValueTracer<'_> {
    type Error = TErr;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        let expecting = Expecting(&visitor).to_string();
        match (self.newtype, expecting.as_str()) {
            (Some("Quantity"), _) | (_, "Quantity") => {
                *self.out = Shape::Quantity;
                visitor.visit_str("0")
            }
            (_, e) if e.contains("IntOrString") || e.contains("int or string") => {
                *self.out = Shape::IntOrString;
                visitor.visit_i32(0)
            }
            _ => {
                *self.out = Shape::Any;
                visitor.visit_unit()
            }
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        *self.out = Shape::Bool;
        visitor.visit_bool(false)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_i32(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_i32(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        *self.out = Shape::Int32;
        visitor.visit_i32(0)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        *self.out = Shape::Int64;
        visitor.visit_i64(0)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_i32(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_i32(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        *self.out = Shape::Number;
        visitor.visit_f64(0.0)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        match self.newtype {
            Some("Time") => {
                *self.out = Shape::Time;
                visitor.visit_str("1970-01-01T00:00:00Z")
            }
            Some("MicroTime") => {
                *self.out = Shape::MicroTime;
                visitor.visit_str("1970-01-01T00:00:00.000000Z")
            }
            Some("Bytes") => {
                *self.out = Shape::Bytes;
                visitor.visit_str("")
            }
            _ => {
                *self.out = Shape::String;
                match self.fixed {
                    Some(v) => visitor.visit_string(v),
                    None => visitor.visit_str(""),
                }
            }
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        *self.out = Shape::Bytes;
        visitor.visit_bytes(&[])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        if *self.optional {
            // An option inside an option is `ByteString`, which reads its string through one.
            return visitor.visit_some(ValueTracer {
                newtype: Some("Bytes"),
                ..self
            });
        }
        *self.optional = true;
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TErr> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TErr> {
        visitor.visit_newtype_struct(ValueTracer {
            newtype: Some(name),
            ..self
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        let mut elem = Shape::Any;
        let r = visitor.visit_seq(SeqTracer {
            g: self.g,
            out: &mut elem,
            done: false,
        });
        *self.out = Shape::Seq(Box::new(elem));
        r
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, TErr> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        if self.newtype == Some("FieldsV1") {
            *self.out = Shape::Any;
            return visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(
                String,
                String,
            )>()));
        }
        let mut val = Shape::Any;
        let r = visitor.visit_map(MapTracer {
            g: self.g,
            out: &mut val,
            state: 0,
        });
        *self.out = Shape::Map(Box::new(val));
        r
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TErr> {
        *self.out = Shape::Struct(name.to_string());
        if self.g.types.contains_key(name) || self.g.in_progress.contains(name) {
            // Known (or recursive): an empty object is a valid sample of any k8s-openapi struct
            // except a kind's own apiVersion/kind checks, which only roots have.
            return visitor.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(
                String,
                String,
            )>()));
        }
        self.g.in_progress.insert(name.to_string());
        let mut defs = Vec::new();
        let r = visitor.visit_map(StructTracer {
            g: self.g,
            fields,
            idx: 0,
            defs: &mut defs,
            root: self.root,
            kind: name,
        });
        let qualified = self.g.qualify(name);
        self.g.in_progress.remove(name);
        self.g.types.insert(
            name.to_string(),
            TypeDef {
                fields: defs,
                qualified,
                gvk: None,
            },
        );
        r
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, TErr> {
        Err(de::Error::custom("enums are not traced"))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TErr> {
        visitor.visit_unit()
    }
}

struct SeqTracer<'a> {
    g: &'a mut TypeGraph,
    out: &'a mut Shape,
    done: bool,
}

impl<'de> de::SeqAccess<'de> for SeqTracer<'_> {
    type Error = TErr;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, TErr> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        // Elements are never `Option`s in k8s-openapi; an option here is a `ByteString`.
        let mut opt = true;
        seed.deserialize(ValueTracer {
            g: self.g,
            out: self.out,
            optional: &mut opt,
            fixed: None,
            newtype: None,
            root: false,
        })
        .map(Some)
    }
}

struct MapTracer<'a> {
    g: &'a mut TypeGraph,
    out: &'a mut Shape,
    state: u8,
}

impl<'de> de::MapAccess<'de> for MapTracer<'_> {
    type Error = TErr;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TErr> {
        if self.state > 0 {
            return Ok(None);
        }
        self.state = 1;
        seed.deserialize("k".into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, TErr> {
        let mut opt = true;
        seed.deserialize(ValueTracer {
            g: self.g,
            out: self.out,
            optional: &mut opt,
            fixed: None,
            newtype: None,
            root: false,
        })
    }
}

struct StructTracer<'a> {
    g: &'a mut TypeGraph,
    fields: &'static [&'static str],
    idx: usize,
    defs: &'a mut Vec<FieldDef>,
    root: bool,
    kind: &'static str,
}

impl<'de> de::MapAccess<'de> for StructTracer<'_> {
    type Error = TErr;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TErr> {
        match self.fields.get(self.idx) {
            Some(f) => seed.deserialize((*f).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, TErr> {
        let name = self.fields[self.idx];
        self.idx += 1;
        let fixed = if self.root && name == "kind" {
            Some(self.kind.to_string())
        } else if self.root && name == "apiVersion" {
            root_api_version(self.kind)
        } else {
            None
        };
        let mut shape = Shape::Any;
        let mut optional = false;
        let r = seed.deserialize(ValueTracer {
            g: self.g,
            out: &mut shape,
            optional: &mut optional,
            fixed,
            newtype: None,
            root: false,
        })?;
        self.defs.push(FieldDef {
            name: name.to_string(),
            shape,
            required: !optional,
        });
        Ok(r)
    }
}

/// The apiVersion a traced kind checks for.
fn root_api_version(kind: &str) -> Option<String> {
    if let Some(r) = registry::RESOURCES.iter().find(|r| r.kind == kind) {
        return Some(r.api_version());
    }
    registry::subresource_kinds()
        .into_iter()
        .find(|(_, _, k, _)| *k == kind)
        .map(|(g, v, _, _)| {
            if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            }
        })
}

// ---- documents -----------------------------------------------------------------------------

fn ref_to(q: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{q}")})
}

fn shape_schema(g: &TypeGraph, shape: &Shape) -> Value {
    match shape {
        Shape::Struct(n) => match g.get(n) {
            Some(t) => json!({"allOf": [ref_to(&t.qualified)], "default": {}}),
            None => json!({"type": "object"}),
        },
        Shape::Seq(e) => json!({"type": "array", "items": shape_schema(g, e)}),
        Shape::Map(v) => json!({"type": "object", "additionalProperties": shape_schema(g, v)}),
        Shape::String => json!({"type": "string", "default": ""}),
        Shape::Int32 => json!({"type": "integer", "format": "int32"}),
        Shape::Int64 => json!({"type": "integer", "format": "int64"}),
        Shape::Number => json!({"type": "number", "format": "double"}),
        Shape::Bool => json!({"type": "boolean"}),
        Shape::Time => ref_to("io.k8s.apimachinery.pkg.apis.meta.v1.Time"),
        Shape::MicroTime => ref_to("io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"),
        Shape::Quantity => ref_to("io.k8s.apimachinery.pkg.api.resource.Quantity"),
        Shape::IntOrString => ref_to("io.k8s.apimachinery.pkg.util.intstr.IntOrString"),
        Shape::Bytes => json!({"type": "string", "format": "byte"}),
        Shape::Any => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    }
}

fn type_schema(g: &TypeGraph, name: &str, t: &TypeDef) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in &t.fields {
        let mut s = shape_schema(g, &f.shape);
        if let Some(m) = field_meta(name, &f.name) {
            let o = s.as_object_mut().expect("schema object");
            let strategy = if m.retain_keys {
                "merge,retainKeys"
            } else {
                "merge"
            };
            o.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            match m.list {
                ListKind::Map { key, map_keys } => {
                    o.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                    o.insert("x-kubernetes-list-type".into(), json!("map"));
                    o.insert("x-kubernetes-list-map-keys".into(), json!(map_keys));
                }
                ListKind::Set => {
                    o.insert("x-kubernetes-list-type".into(), json!("set"));
                }
            }
        } else if matches!(f.shape, Shape::Seq(_)) {
            s["x-kubernetes-list-type"] = json!("atomic");
        }
        if f.required && f.name != "metadata" {
            required.push(f.name.clone());
        }
        props.insert(f.name.clone(), s);
    }
    let mut s = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    if let Some((g, v, k)) = &t.gvk {
        s["x-kubernetes-group-version-kind"] = json!([{"group": g, "version": v, "kind": k}]);
    }
    s
}

fn builtin_schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
            json!({"type": "string", "format": "date-time"}),
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
            json!({"type": "string", "format": "date-time"}),
        ),
        (
            "io.k8s.apimachinery.pkg.api.resource.Quantity",
            json!({"type": "string", "x-kubernetes-int-or-string": true,
                   "oneOf": [{"type": "string"}, {"type": "number"}]}),
        ),
        (
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            json!({"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": true}),
        ),
    ]
}

/// Query parameters every PATCH operation declares (kubectl looks for `fieldValidation` to
/// know the server validates fields itself).
fn patch_parameters() -> Value {
    json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ])
}

fn gvk_ext(r: &ResourceDef, kind: &str, group: &str, version: &str) -> Value {
    let _ = r;
    json!({"group": group, "version": version, "kind": kind})
}

/// `/openapi/v3/<prefix>` for one group/version: paths with their operations and the schemas.
pub fn v3_document(g: &TypeGraph, group: &str, version: &str) -> Value {
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut wanted: Vec<String> = Vec::new();
    for r in registry::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let Some(root) = g.root_of(r) else { continue };
        wanted.push(root.to_string());
        let q = g.get(root).map(|t| t.qualified.clone()).unwrap_or_default();
        let ns = if r.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let gvk = gvk_ext(r, r.kind, r.group, r.version);
        let obj = json!({"content": {"application/json": {"schema": ref_to(&q)}}});
        let collection = format!("{prefix}{ns}/{}", r.resource);
        let mut coll = Map::new();
        if r.has_verb("list") {
            coll.insert(
                "get".into(),
                json!({"operationId": format!("list{}", r.kind), "x-kubernetes-action": "list",
                       "x-kubernetes-group-version-kind": gvk,
                       "responses": {"200": {"description": "OK"}}}),
            );
        }
        if r.has_verb("create") {
            coll.insert(
                "post".into(),
                json!({"operationId": format!("create{}", r.kind), "x-kubernetes-action": "post",
                       "x-kubernetes-group-version-kind": gvk,
                       "parameters": patch_parameters(),
                       "requestBody": {"content": {"*/*": {"schema": ref_to(&q)}}},
                       "responses": {"200": obj, "201": obj}}),
            );
        }
        if !r.has_verb("get") {
            // Create-only kinds (reviews): kube-apiserver lists no PATCH for them, and kubectl
            // then downloads the protobuf OpenAPI v2 document for client-side validation. This
            // server validates fields itself (`fieldValidation`), and says so with a PATCH
            // operation carrying the parameter; PATCH on the path is still 405.
            coll.insert(
                "patch".into(),
                json!({"operationId": format!("patch{}", r.kind), "x-kubernetes-action": "patch",
                       "x-kubernetes-group-version-kind": gvk, "parameters": patch_parameters(),
                       "requestBody": {"content": {"application/merge-patch+json": {"schema": {"type": "object"}}}},
                       "responses": {"405": {"description": "MethodNotAllowed"}}}),
            );
            paths.insert(collection.clone(), Value::Object(coll));
            continue;
        }
        paths.insert(collection.clone(), Value::Object(coll));
        let item = format!("{collection}/{{name}}");
        let mut ops = Map::new();
        ops.insert(
            "get".into(),
            json!({"operationId": format!("read{}", r.kind), "x-kubernetes-action": "get",
                   "x-kubernetes-group-version-kind": gvk, "responses": {"200": obj}}),
        );
        ops.insert(
            "put".into(),
            json!({"operationId": format!("replace{}", r.kind), "x-kubernetes-action": "put",
                   "x-kubernetes-group-version-kind": gvk, "parameters": patch_parameters(),
                   "requestBody": {"content": {"*/*": {"schema": ref_to(&q)}}},
                   "responses": {"200": obj}}),
        );
        ops.insert(
            "patch".into(),
            json!({"operationId": format!("patch{}", r.kind), "x-kubernetes-action": "patch",
                   "x-kubernetes-group-version-kind": gvk, "parameters": patch_parameters(),
                   "requestBody": {"content": {
                       "application/apply-patch+yaml": {"schema": {"type": "object"}},
                       "application/json-patch+json": {"schema": {"type": "object"}},
                       "application/merge-patch+json": {"schema": {"type": "object"}},
                       "application/strategic-merge-patch+json": {"schema": {"type": "object"}}}},
                   "responses": {"200": obj}}),
        );
        ops.insert(
            "delete".into(),
            json!({"operationId": format!("delete{}", r.kind), "x-kubernetes-action": "delete",
                   "x-kubernetes-group-version-kind": gvk, "responses": {"200": obj}}),
        );
        paths.insert(item.clone(), Value::Object(ops));
        if r.status_subresource && r.subresource("status").is_some() {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": {"operationId": format!("read{}Status", r.kind), "x-kubernetes-action": "get",
                            "x-kubernetes-group-version-kind": gvk, "responses": {"200": obj}},
                    "patch": {"operationId": format!("patch{}Status", r.kind), "x-kubernetes-action": "patch",
                              "x-kubernetes-group-version-kind": gvk, "parameters": patch_parameters(),
                              "requestBody": {"content": {
                                  "application/json-patch+json": {"schema": {"type": "object"}},
                                  "application/merge-patch+json": {"schema": {"type": "object"}},
                                  "application/strategic-merge-patch+json": {"schema": {"type": "object"}}}},
                              "responses": {"200": obj}},
                }),
            );
        }
    }
    for (sg, sv, kind, _) in registry::subresource_kinds() {
        if sg == group && sv == version {
            if let Some((n, _)) = g.types.iter().find(|(_, t)| {
                t.gvk
                    .as_ref()
                    .is_some_and(|(gg, _, k)| gg == sg && k == kind)
            }) {
                wanted.push(n.clone());
            }
        }
    }
    // The schemas reachable from this group/version's kinds.
    let mut schemas = Map::new();
    let mut stack = wanted;
    let mut seen = HashSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        let Some(t) = g.get(&n) else { continue };
        schemas.insert(t.qualified.clone(), type_schema(g, &n, t));
        for f in &t.fields {
            let mut s = &f.shape;
            loop {
                match s {
                    Shape::Seq(e) | Shape::Map(e) => s = e,
                    Shape::Struct(c) => {
                        stack.push(c.clone());
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
    for (q, s) in builtin_schemas() {
        schemas.insert(q.into(), s);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::discovery::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The `/openapi/v3` index: one entry per group/version with the URL of its document.
pub fn v3_index(hash: &str) -> Value {
    let mut paths = Map::new();
    for (group, version) in registry::group_versions() {
        let p = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_pod_shapes() {
        let g = TypeGraph::build();
        let pod = g.get("Pod").expect("Pod traced");
        assert_eq!(pod.gvk.as_ref().unwrap().2, "Pod");
        let spec = g.get("PodSpec").unwrap();
        assert_eq!(
            spec.field("containers").unwrap().shape,
            Shape::Seq(Box::new(Shape::Struct("Container".into())))
        );
        let c = g.get("Container").unwrap();
        assert_eq!(c.field("name").unwrap().shape, Shape::String);
        let rr = g.get("ResourceRequirements").unwrap();
        assert_eq!(
            rr.field("limits").unwrap().shape,
            Shape::Map(Box::new(Shape::Quantity))
        );
        let meta = g.get("ObjectMeta").unwrap();
        assert_eq!(meta.field("creationTimestamp").unwrap().shape, Shape::Time);
        assert_eq!(
            meta.qualified,
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let port = g.get("ContainerPort").unwrap();
        assert_eq!(port.field("containerPort").unwrap().shape, Shape::Int32);
        let probe = g.get("HTTPGetAction").unwrap();
        assert_eq!(probe.field("port").unwrap().shape, Shape::IntOrString);
        let secret = g.get("Secret").unwrap();
        assert_eq!(
            secret.field("data").unwrap().shape,
            Shape::Map(Box::new(Shape::Bytes))
        );
        assert!(g.get("Lease").is_some());
        assert_eq!(
            g.get("LeaseSpec")
                .unwrap()
                .field("renewTime")
                .unwrap()
                .shape,
            Shape::MicroTime
        );
    }

    #[test]
    fn v3_document_declares_patch_types_and_field_validation() {
        let g = TypeGraph::build();
        let doc = v3_document(&g, "", "v1");
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(patch["requestBody"]["content"]
            .get("application/strategic-merge-patch+json")
            .is_some());
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    }
}
