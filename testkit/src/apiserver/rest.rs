//! The generic REST verbs over the store, as kube-apiserver's generic registry runs them:
//! get, list (resourceVersion / resourceVersionMatch semantics, `limit` and `continue`,
//! label and field selectors), create (generateName, defaulting, admission, validation,
//! dry run), update (optimistic concurrency: a stale resourceVersion is 409), patch (JSON
//! merge, strategic merge, JSON patch, server-side apply), delete (grace periods, finalizers,
//! preconditions, propagation) and deletecollection, plus the `status`, `approval`,
//! `finalize`, `binding` and `eviction` subresources.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::auth::UserInfo;
use super::errors::{ApiError, ApiResult, FieldError};
use super::patch::{self, PatchError};
use super::registry::{self, ResourceDef};
use super::request::{query_bool, Query, Representation, RequestInfo};
use super::resources;
use super::selectors::{FieldSelector, LabelSelector};
use super::ssa;
use super::store::{Inner, Obj, StoreError};
use super::table;
use super::util;
use super::Server;

/// One API request, decoded as far as the router could.
pub struct Req<'a> {
    pub srv: &'a Arc<Server>,
    pub user: &'a UserInfo,
    pub info: &'a RequestInfo,
    pub query: &'a Query,
    pub repr: Representation,
    pub content_type: String,
    pub user_agent: String,
    pub body: bytes::Bytes,
}

/// A JSON answer with its status code and any `Warning` headers.
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn ok(code: u16, body: Value) -> Reply {
        Reply {
            code,
            body,
            warnings: Vec::new(),
        }
    }
}

impl Req<'_> {
    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|v| v == "All")
    }

    fn field_manager(&self) -> String {
        match self.query.get("fieldManager") {
            Some(m) if !m.is_empty() => m.clone(),
            _ => self
                .user_agent
                .split('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .chars()
                .take(128)
                .collect(),
        }
    }

    fn ns(&self, r: &ResourceDef) -> String {
        if r.namespaced {
            self.info.namespace.clone()
        } else {
            String::new()
        }
    }
}

/// Parse a request body as JSON (or YAML).
pub fn parse_body(req: &Req<'_>) -> ApiResult<Value> {
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/yaml" | "application/apply-patch+yaml" => {
            if let Ok(v) = serde_json::from_slice::<Value>(&req.body) {
                return Ok(v);
            }
            serde_yaml::from_slice::<Value>(&req.body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(&req.srv.graph, &req.body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode protobuf body: {e}"))),
        "application/cbor" | "application/apply-patch+cbor" => {
            Err(ApiError::unsupported_media_type(&ct))
        }
        _ => serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
    }
}

/// Paths present (non-null) in `input` but dropped by the typed round trip: unknown fields.
fn unknown_fields(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match o.get(k) {
                    None => out.push(p),
                    Some(ov) => unknown_fields(v, ov, &p, out),
                }
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (idx, (a, b)) in i.iter().zip(o).enumerate() {
                unknown_fields(a, b, &format!("{path}[{idx}]"), out);
            }
        }
        _ => {}
    }
}

/// Check `apiVersion`/`kind`, decode through the typed struct and apply field validation.
pub fn decode_object(
    req: &Req<'_>,
    r: &ResourceDef,
    mut v: Value,
    warnings: &mut Vec<String>,
) -> ApiResult<Value> {
    let Some(o) = v.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: expected an object",
            r.kind, r.version, r.kind
        )));
    };
    let api_version = r.api_version();
    match o.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("apiVersion".into(), json!(api_version));
        }
        Some(a) if a != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({a}) does not match the expected API version ({api_version})"
            )))
        }
        _ => {}
    }
    match o.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            o.insert("kind".into(), json!(r.kind));
        }
        Some(k) if k != r.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                r.kind
            )))
        }
        _ => {}
    }
    let decoded = (r.decode)(v.clone()).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            r.kind, r.version, r.kind
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(&v, &decoded, "", &mut unknown);
    if !unknown.is_empty() {
        let msgs: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        match req.query.get("fieldValidation").map(String::as_str) {
            Some("Strict") => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                    r.kind,
                    r.version,
                    r.kind,
                    msgs.join(", ")
                )))
            }
            Some("Ignore") => {}
            _ => warnings.extend(msgs),
        }
    }
    Ok(decoded)
}

fn target(r: &ResourceDef) -> super::errors::Target<'static> {
    r.target()
}

// ---- reads ---------------------------------------------------------------------------------

pub fn get(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let ns = req.ns(r);
    let obj = req
        .srv
        .store
        .read(|g| g.get(r.key(), &ns, &req.info.name))
        .ok_or_else(|| ApiError::not_found(target(r), &req.info.name))?;
    Ok(Reply::ok(200, represent_object(req, r, &obj)))
}

/// The object in the representation the client asked for.
pub fn represent_object(req: &Req<'_>, r: &ResourceDef, obj: &Value) -> Value {
    match req.repr {
        Representation::Table { v1beta1 } => table::to_table(
            r,
            std::slice::from_ref(obj),
            util::resource_version(obj),
            None,
            req.query.get("includeObject").map(String::as_str),
            v1beta1,
            true,
        ),
        Representation::PartialMetadata => partial(obj),
        _ => obj.clone(),
    }
}

pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
           "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

pub struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn parse(req: &Req<'_>, r: &ResourceDef) -> ApiResult<Selectors> {
        let ls = req
            .query
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or("");
        let fs = req
            .query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or("");
        let labels = LabelSelector::parse(ls).map_err(ApiError::bad_request)?;
        let mut fields = FieldSelector::parse(fs).map_err(ApiError::bad_request)?;
        if req.info.legacy_watch && !req.info.name.is_empty() {
            let extra = FieldSelector::parse(&format!("metadata.name={}", req.info.name))
                .map_err(ApiError::bad_request)?;
            fields = if fs.is_empty() {
                extra
            } else {
                FieldSelector::parse(&format!("{fs},metadata.name={}", req.info.name))
                    .map_err(ApiError::bad_request)?
            };
        }
        fields.validate(r).map_err(|e| {
            ApiError::bad_request(format!(
                "Unable to find \"{}/{}, Resource={}\" that match label selector \"{ls}\", field selector \"{fs}\": {e}",
                r.group, r.version, r.resource
            ))
        })?;
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, o: &Value) -> bool {
        self.labels.matches(o) && self.fields.matches(o)
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

fn too_large(requested: u64, current: u64) -> ApiError {
    ApiError::timeout(format!(
        "Timeout: Too large resource version: {requested}, current: {current}"
    ))
    .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
}

/// Wait (up to 3 s, as the watch cache does) for the store to reach `rv`.
pub async fn wait_for_rv(srv: &Server, rv: u64) -> ApiResult<()> {
    let mut sub = srv.store.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let cur = srv.store.current_rv();
        if cur >= rv {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, sub.changed()).await {
            Ok(Ok(())) => continue,
            _ => return Err(too_large(rv, srv.store.current_rv())),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: u64, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv: rv as i64,
        start: start.into(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(s: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request("continue key is not valid: illegal base64 data");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

fn key_string(r: &ResourceDef, ns: &str, name: &str) -> String {
    if r.namespaced {
        format!("{ns}/{name}")
    } else {
        name.to_string()
    }
}

pub async fn list(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let sel = Selectors::parse(req, r)?;
    let ns = req.ns(r);
    let ns_filter = if ns.is_empty() {
        None
    } else {
        Some(ns.as_str())
    };
    let limit = match req.query.get("limit").map(|l| l.parse::<i64>()) {
        None => 0,
        Some(Ok(n)) if n >= 0 => n as usize,
        Some(_) => {
            return Err(ApiError::bad_request(
                "limit must be a non-negative integer",
            ))
        }
    };
    let rv_param = req
        .query
        .get("resourceVersion")
        .cloned()
        .unwrap_or_default();
    let rv_match = req
        .query
        .get("resourceVersionMatch")
        .cloned()
        .unwrap_or_default();
    let cont = match req.query.get("continue") {
        Some(c) if !c.is_empty() => {
            if !rv_param.is_empty() && rv_param != "0" {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            Some(decode_continue(c)?)
        }
        _ => None,
    };
    if !rv_match.is_empty() && rv_param.is_empty() {
        return Err(ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            vec![FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )],
        ));
    }
    let requested: Option<u64> =
        if rv_param.is_empty() {
            None
        } else {
            Some(rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: {rv_param}"))
            })?)
        };
    let exact = rv_match == "Exact";
    if let (Some(n), false) = (requested, exact) {
        if n > 0 {
            wait_for_rv(req.srv, n).await?;
        }
    }
    let (items, list_rv, next, remaining) = req.srv.store.read(|g| {
        let (at, start) = match &cont {
            Some(t) => (t.rv as u64, Some(t.start.clone())),
            None => match requested {
                Some(n) if exact => {
                    if n > g.rv() {
                        return Err(too_large(n, g.rv()));
                    }
                    (n, None)
                }
                _ => (g.rv(), None),
            },
        };
        let all = g.list_at(r.key(), ns_filter, at).map_err(|e| match e {
            StoreError::Compacted { .. } if cont.is_some() => ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ),
            StoreError::Compacted { requested, oldest } => ApiError::gone(format!(
                "The resourceVersion for the provided list is too old. (requested {requested}, oldest {oldest})"
            )),
            other => ApiError::internal(other.to_string()),
        })?;
        let mut out: Vec<Obj> = Vec::new();
        let mut last_key = String::new();
        let mut more = false;
        let mut remaining = 0usize;
        for ((ons, oname), o) in all {
            let k = key_string(r, &ons, &oname);
            if let Some(s) = &start {
                let s = s.trim_end_matches('\u{0}');
                let (sns, sname) = if r.namespaced {
                    s.split_once('/').unwrap_or(("", s))
                } else {
                    ("", s)
                };
                if (ons.as_str(), oname.as_str()) <= (sns, sname) {
                    continue;
                }
            }
            if !sel.matches(&o) {
                continue;
            }
            if limit > 0 && out.len() >= limit {
                more = true;
                remaining += 1;
                continue;
            }
            last_key = k;
            out.push(o);
        }
        let next = if more {
            Some(encode_continue(at, &format!("{last_key}\u{0}")))
        } else {
            None
        };
        let remaining = if more && sel.is_empty() {
            Some(remaining)
        } else {
            None
        };
        Ok((out, at, next, remaining))
    })?;
    Ok(Reply::ok(
        200,
        represent_list(req, r, &items, list_rv, next, remaining),
    ))
}

fn represent_list(
    req: &Req<'_>,
    r: &ResourceDef,
    items: &[Obj],
    rv: u64,
    cont: Option<String>,
    remaining: Option<usize>,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = &cont {
        meta["continue"] = json!(c);
    }
    if let Some(n) = remaining {
        meta["remainingItemCount"] = json!(n);
    }
    match req.repr {
        Representation::Table { v1beta1 } => {
            let objs: Vec<Value> = items.iter().map(|o| (**o).clone()).collect();
            let mut t = table::to_table(
                r,
                &objs,
                &rv.to_string(),
                cont.as_deref(),
                req.query.get("includeObject").map(String::as_str),
                v1beta1,
                true,
            );
            if let Some(n) = remaining {
                t["metadata"]["remainingItemCount"] = json!(n);
            }
            t
        }
        Representation::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": items.iter().map(|o| partial(o)).collect::<Vec<_>>(),
        }),
        _ => {
            let list: Vec<Value> = items
                .iter()
                .map(|o| {
                    let mut v = (**o).clone();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("apiVersion");
                        m.remove("kind");
                    }
                    v
                })
                .collect();
            json!({"kind": r.list_kind(), "apiVersion": r.api_version(), "metadata": meta, "items": list})
        }
    }
}

// ---- writes --------------------------------------------------------------------------------

/// Fill server-owned metadata of a new object.
pub fn init_meta(obj: &mut Value, ns: &str, namespaced: bool) {
    let m = util::meta_mut(obj);
    m.insert("uid".into(), json!(util::new_uid()));
    m.insert("creationTimestamp".into(), json!(util::now_string()));
    for k in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "resourceVersion",
    ] {
        m.remove(k);
    }
    if namespaced {
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
    m.remove("generation");
}

pub fn create(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let body = parse_body(req)?;
    let mut warnings = Vec::new();
    let obj = decode_object(req, r, body, &mut warnings)?;
    let reply = req.srv.store.write(|g| create_in(req, g, r, obj, None))?;
    Ok(Reply {
        warnings: [warnings, reply.warnings].concat(),
        ..reply
    })
}

/// Create inside a transaction (also used by create-on-update and apply of a new object).
fn create_in(
    req: &Req<'_>,
    g: &mut Inner,
    r: &'static ResourceDef,
    mut obj: Value,
    applied: Option<&Value>,
) -> ApiResult<Reply> {
    let ns = req.ns(r);
    let body_ns = util::namespace(&obj).to_string();
    if r.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if !util::resource_version(&obj).is_empty() && applied.is_none() {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if util::name(&obj).is_empty() {
        let gen = util::meta_str(&obj, "generateName").to_string();
        if gen.is_empty() {
            return Err(ApiError::invalid(
                r.kind,
                r.group,
                "",
                vec![FieldError::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        let name = loop {
            let candidate = format!("{gen}{}", util::random_suffix(5));
            if g.get(r.key(), &ns, &candidate).is_none() {
                break candidate;
            }
        };
        util::meta_mut(&mut obj).insert("name".into(), json!(name));
    }
    let name = util::name(&obj).to_string();
    init_meta(&mut obj, &ns, r.namespaced);
    resources::admit_namespace(g, r, &ns, true)?;
    resources::admit_node_restriction(req.user, r, "create", "", Some(&obj), None, &name)?;
    resources::prepare_create(g, r, req.user, &mut obj)?;
    resources::validate_create(r, &obj)?;
    if g.get(r.key(), &ns, &name).is_some() {
        return Err(ApiError::already_exists(target(r), &name));
    }
    let manager = req.field_manager();
    match applied {
        Some(cfg) => ssa::record_apply_create(&req.srv.graph, r, &mut obj, cfg, &manager),
        None => ssa::record_update(&req.srv.graph, r, None, &mut obj, &manager, ""),
    }
    if req.dry_run() {
        return Ok(Reply::ok(201, obj));
    }
    let stored = g.create(r.key(), obj);
    super::controllers::after_create(req.srv, g, r, &stored);
    Ok(Reply::ok(201, (*stored).clone()))
}

fn check_preconditions(
    r: &ResourceDef,
    name: &str,
    old: &Value,
    uid: &str,
    rv: &str,
) -> ApiResult<()> {
    if !uid.is_empty() && uid != util::uid(old) {
        return Err(ApiError::conflict(
            target(r),
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                util::uid(old)
            ),
        ));
    }
    if !rv.is_empty() && rv != util::resource_version(old) {
        return Err(ApiError::modified(target(r), name));
    }
    Ok(())
}

pub fn update(req: &Req<'_>, r: &'static ResourceDef, sub: &str) -> ApiResult<Reply> {
    let body = parse_body(req)?;
    let mut warnings = Vec::new();
    let obj = decode_object(req, r, body, &mut warnings)?;
    let name = req.info.name.clone();
    let body_name = util::name(&obj);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let ns = req.ns(r);
    let body_ns = util::namespace(&obj);
    if r.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let reply = req.srv.store.write(|g| {
        let Some(old) = g.get(r.key(), &ns, &name) else {
            if sub.is_empty() && r.create_on_update {
                let mut obj = obj.clone();
                util::meta_mut(&mut obj).insert("name".into(), json!(name));
                util::meta_mut(&mut obj).remove("resourceVersion");
                return create_in(req, g, r, obj, None);
            }
            return Err(ApiError::not_found(target(r), &name));
        };
        check_preconditions(
            r,
            &name,
            &old,
            util::uid(&obj),
            util::resource_version(&obj),
        )?;
        write_update(req, g, r, sub, obj.clone(), &old, "update")
    })?;
    Ok(Reply {
        warnings: [warnings, reply.warnings].concat(),
        ..reply
    })
}

/// Equal but for what changes on every write (resourceVersion, managedFields times): such a
/// write is a no-op, which kube-apiserver does not persist.
fn same_but_volatile(a: &Value, b: &Value) -> bool {
    fn without<'a>(
        m: &'a serde_json::Map<String, Value>,
        skip: &'a [&str],
    ) -> impl Iterator<Item = (&'a String, &'a Value)> {
        m.iter().filter(move |(k, _)| !skip.contains(&k.as_str()))
    }
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    if !without(a, &["metadata"]).eq(without(b, &["metadata"])) {
        return false;
    }
    let empty = serde_json::Map::new();
    let am = a
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let bm = b
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let skip = ["resourceVersion", "managedFields"];
    if !without(am, &skip).eq(without(bm, &skip)) {
        return false;
    }
    let entries = |m: &serde_json::Map<String, Value>| -> Vec<Value> {
        m.get("managedFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|e| {
                let mut e = e.clone();
                if let Some(o) = e.as_object_mut() {
                    o.remove("time");
                }
                e
            })
            .collect()
    };
    entries(am) == entries(bm)
}

/// The common tail of update and patch: strategy, admission, validation, no-op detection,
/// finalization, write.
fn write_update(
    req: &Req<'_>,
    g: &mut Inner,
    r: &'static ResourceDef,
    sub: &str,
    mut new: Value,
    old: &Obj,
    verb: &str,
) -> ApiResult<Reply> {
    let ns = util::namespace(old).to_string();
    let name = util::name(old).to_string();
    resources::prepare_update(r, sub, &mut new, old);
    resources::admit_node_restriction(req.user, r, verb, sub, Some(&new), Some(old), &name)?;
    resources::validate_update(r, sub, &new, old)?;
    if verb != "apply" {
        ssa::record_update(
            &req.srv.graph,
            r,
            Some(old),
            &mut new,
            &req.field_manager(),
            sub,
        );
    }
    util::meta_mut(&mut new).insert("resourceVersion".into(), json!(util::resource_version(old)));
    if same_but_volatile(&new, old) {
        return Ok(Reply::ok(200, (**old).clone()));
    }
    if req.dry_run() {
        return Ok(Reply::ok(200, new));
    }
    let finished = util::deletion_timestamp(&new).is_some()
        && util::finalizers(&new).is_empty()
        && util::meta(&new)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0;
    if finished {
        let gone = g.delete(r.key(), &ns, &name);
        if let Some(o) = &gone {
            super::controllers::after_delete(req.srv, g, r, o);
        }
        return Ok(Reply::ok(200, gone.map(|o| (*o).clone()).unwrap_or(new)));
    }
    let stored = g.update(r.key(), new);
    Ok(Reply::ok(200, (*stored).clone()))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub fn patch(req: &Req<'_>, r: &'static ResourceDef, sub: &str) -> ApiResult<Reply> {
    let ct = req
        .content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ptype = match ct.as_str() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" => PatchType::Strategic,
        "application/apply-patch+yaml" => PatchType::Apply,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"),
            ))
        }
    };
    let body = parse_body(req)?;
    if ptype == PatchType::Apply && req.query.get("fieldManager").is_none_or(|m| m.is_empty()) {
        return Err(ApiError::bad_request(
            "PATCH /apply: fieldManager is required for apply requests",
        ));
    }
    let name = req.info.name.clone();
    let ns = req.ns(r);
    let force = query_bool(req.query, "force");
    if force && ptype != PatchType::Apply {
        return Err(ApiError::bad_request(
            "force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let mut warnings = Vec::new();
    let reply = req.srv.store.write(|g| {
        let Some(old) = g.get(r.key(), &ns, &name) else {
            if ptype == PatchType::Apply && sub.is_empty() {
                let mut cfg = body.clone();
                if util::name(&cfg).is_empty() {
                    util::meta_mut(&mut cfg).insert("name".into(), json!(name));
                }
                let obj = decode_object(req, r, cfg.clone(), &mut warnings)?;
                return create_in(req, g, r, obj, Some(&cfg));
            }
            return Err(ApiError::not_found(target(r), &name));
        };
        let mut cur = (*old).clone();
        let perr = |e: PatchError| match e {
            PatchError::Invalid(m) => ApiError::bad_request(m),
            PatchError::Unprocessable(m) => ApiError::new(422, "Invalid", m),
        };
        match ptype {
            PatchType::Merge => patch::merge_patch(&mut cur, &body),
            PatchType::Json => patch::json_patch(&mut cur, &body).map_err(perr)?,
            PatchType::Strategic => {
                let root = req.srv.graph.root_of(r).unwrap_or(r.kind).to_string();
                patch::strategic_merge(&req.srv.graph, &root, &mut cur, &body).map_err(perr)?
            }
            PatchType::Apply => {
                let cfg = decode_object(req, r, body.clone(), &mut warnings)?;
                let _ = cfg;
                ssa::apply(
                    &req.srv.graph,
                    r,
                    &mut cur,
                    &body,
                    &req.field_manager(),
                    force,
                    sub,
                )?;
            }
        }
        let new_uid = util::uid(&cur).to_string();
        if new_uid != util::uid(&old) {
            return Err(ApiError::invalid(
                r.kind,
                r.group,
                &name,
                vec![FieldError::invalid(
                    "metadata.uid",
                    &new_uid,
                    "field is immutable",
                )],
            ));
        }
        let rv = util::resource_version(&cur).to_string();
        if rv != util::resource_version(&old) && !rv.is_empty() {
            return Err(ApiError::modified(target(r), &name));
        }
        let decoded = decode_object(req, r, cur, &mut Vec::new())
            .map_err(|e| ApiError::new(422, "Invalid", e.message))?;
        write_update(
            req,
            g,
            r,
            sub,
            decoded,
            &old,
            if ptype == PatchType::Apply {
                "apply"
            } else {
                "patch"
            },
        )
    })?;
    Ok(Reply {
        warnings: [warnings, reply.warnings].concat(),
        ..reply
    })
}

// ---- delete --------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace: Option<i64>,
    pub propagation: String,
    pub uid: String,
    pub rv: String,
    pub dry_run: bool,
}

pub fn delete_options(req: &Req<'_>) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions::default();
    if !req.body.is_empty() {
        let v = parse_body(req)?;
        options_from_value(&v, &mut o);
    }
    if let Some(g) = req.query.get("gracePeriodSeconds") {
        o.grace = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request("gracePeriodSeconds must be an integer"))?,
        );
    }
    if let Some(p) = req.query.get("propagationPolicy") {
        o.propagation = p.clone();
    }
    if query_bool(req.query, "orphanDependents") {
        o.propagation = "Orphan".into();
    }
    if req.query.get("dryRun").is_some_and(|d| d == "All") {
        o.dry_run = true;
    }
    Ok(o)
}

pub fn options_from_value(v: &Value, o: &mut DeleteOptions) {
    if let Some(g) = v["gracePeriodSeconds"].as_i64() {
        o.grace = Some(g);
    }
    if let Some(p) = v["propagationPolicy"].as_str() {
        o.propagation = p.to_string();
    }
    if v["orphanDependents"].as_bool() == Some(true) {
        o.propagation = "Orphan".into();
    }
    if let Some(u) = v["preconditions"]["uid"].as_str() {
        o.uid = u.to_string();
    }
    if let Some(r) = v["preconditions"]["resourceVersion"].as_str() {
        o.rv = r.to_string();
    }
    if v["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|d| d == "All"))
    {
        o.dry_run = true;
    }
}

/// What a delete did.
pub enum Deleted {
    /// Still there: graceful deletion or finalizers pending.
    Pending(Obj),
    Gone(Obj),
}

/// The generic store's delete, with the pod strategy's grace periods.
pub fn delete_in(
    srv: &Arc<Server>,
    g: &mut Inner,
    user: Option<&UserInfo>,
    r: &'static ResourceDef,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> ApiResult<Deleted> {
    let old = g
        .get(r.key(), ns, name)
        .ok_or_else(|| ApiError::not_found(target(r), name))?;
    check_preconditions(r, name, &old, &opts.uid, &opts.rv)?;
    if let Some(u) = user {
        resources::admit_node_restriction(u, r, "delete", "", None, Some(&old), name)?;
    }
    if r.resource == "namespaces" {
        if resources::IMMORTAL_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            ))
            .with_details(json!({"name": name, "kind": "namespaces"})));
        }
        if util::deletion_timestamp(&old).is_some() {
            return Ok(Deleted::Pending(old));
        }
        let mut o = (*old).clone();
        let m = util::meta_mut(&mut o);
        m.insert("deletionTimestamp".into(), json!(util::now_string()));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        o["status"]["phase"] = json!("Terminating");
        if opts.dry_run {
            return Ok(Deleted::Pending(Arc::new(o)));
        }
        return Ok(Deleted::Pending(g.update(r.key(), o)));
    }
    let mut grace = 0i64;
    if r.resource == "pods" {
        grace = opts.grace.unwrap_or_else(|| {
            old["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
        });
        let phase = util::str_at(&old, &["status", "phase"]);
        if util::str_at(&old, &["spec", "nodeName"]).is_empty()
            || phase == "Failed"
            || phase == "Succeeded"
        {
            grace = 0;
        }
        if grace < 0 {
            grace = 1;
        }
    }
    let existing_grace = util::meta(&old)
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64);
    let finalizers = util::finalizers(&old);
    if let Some(dt) = util::deletion_timestamp(&old) {
        match existing_grace {
            Some(eg) if eg > 0 => {
                let requested = opts.grace;
                match requested {
                    Some(p) if p < eg => {
                        // Shorten the pending graceful deletion.
                        let base = util::parse_time(dt).unwrap_or_else(util::now);
                        let start = base
                            .checked_sub(jiff::SignedDuration::from_secs(eg))
                            .unwrap_or(base);
                        let p = if r.resource == "pods" {
                            grace.min(p).max(0)
                        } else {
                            p
                        };
                        if p > 0 || !finalizers.is_empty() {
                            let mut o = (*old).clone();
                            let m = util::meta_mut(&mut o);
                            let new_ts = start
                                .checked_add(jiff::SignedDuration::from_secs(p))
                                .unwrap_or(start);
                            m.insert("deletionTimestamp".into(), json!(util::format_time(new_ts)));
                            m.insert("deletionGracePeriodSeconds".into(), json!(p));
                            if opts.dry_run {
                                return Ok(Deleted::Pending(Arc::new(o)));
                            }
                            return Ok(Deleted::Pending(g.update(r.key(), o)));
                        }
                    }
                    _ => return Ok(Deleted::Pending(old)),
                }
            }
            _ => {
                if !finalizers.is_empty() {
                    return Ok(Deleted::Pending(old));
                }
            }
        }
    } else if grace > 0 || !finalizers.is_empty() {
        let mut o = (*old).clone();
        let when = util::now()
            .checked_add(jiff::SignedDuration::from_secs(grace))
            .unwrap_or_else(|_| util::now());
        let m = util::meta_mut(&mut o);
        m.insert("deletionTimestamp".into(), json!(util::format_time(when)));
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if opts.dry_run {
            return Ok(Deleted::Pending(Arc::new(o)));
        }
        if opts.propagation == "Orphan" {
            super::controllers::orphan_dependents(g, util::uid(&old));
        }
        return Ok(Deleted::Pending(g.update(r.key(), o)));
    }
    if opts.dry_run {
        return Ok(Deleted::Gone(old));
    }
    if opts.propagation == "Orphan" {
        super::controllers::orphan_dependents(g, util::uid(&old));
    }
    let gone = g.delete(r.key(), ns, name).unwrap_or(old);
    super::controllers::after_delete(srv, g, r, &gone);
    Ok(Deleted::Gone(gone))
}

fn delete_reply(r: &ResourceDef, d: Deleted) -> Reply {
    match d {
        Deleted::Pending(o) => Reply::ok(200, (*o).clone()),
        Deleted::Gone(o) if r.return_deleted => Reply::ok(200, (*o).clone()),
        Deleted::Gone(o) => {
            let mut details =
                json!({"name": util::name(&o), "kind": r.resource, "uid": util::uid(&o)});
            if !r.group.is_empty() {
                details["group"] = json!(r.group);
            }
            Reply::ok(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                       "details": details}),
            )
        }
    }
}

pub fn delete(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let opts = delete_options(req)?;
    let ns = req.ns(r);
    let d = req
        .srv
        .store
        .write(|g| delete_in(req.srv, g, Some(req.user), r, &ns, &req.info.name, &opts))?;
    Ok(delete_reply(r, d))
}

pub fn delete_collection(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let opts = delete_options(req)?;
    let sel = Selectors::parse(req, r)?;
    let ns = req.ns(r);
    let items = req.srv.store.write(|g| {
        let list = g.list(
            r.key(),
            if ns.is_empty() {
                None
            } else {
                Some(ns.as_str())
            },
        );
        let mut out = Vec::new();
        for ((ons, oname), o) in list {
            if !sel.matches(&o) {
                continue;
            }
            match delete_in(req.srv, g, Some(req.user), r, &ons, &oname, &opts) {
                Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => out.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    })?;
    let rv = req.srv.store.current_rv();
    Ok(Reply::ok(
        200,
        represent_list(req, r, &items, rv, None, None),
    ))
}

// ---- subresources --------------------------------------------------------------------------

pub fn binding(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let body = parse_body(req)?;
    let b = registry::decode_binding(body).map_err(|e| {
        ApiError::bad_request(format!(
            "Binding in version \"v1\" cannot be handled as a Binding: {e}"
        ))
    })?;
    let node = b["target"]["name"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            "",
            &req.info.name,
            vec![FieldError::required("target.name", "")],
        ));
    }
    let ns = req.ns(r);
    req.srv
        .store
        .write(|g| bind_pod(g, &ns, &req.info.name, &node, util::uid(&b)))?;
    Ok(Reply::ok(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// Assign a pod to a node, as `pods/binding` does.
pub fn bind_pod(g: &mut Inner, ns: &str, name: &str, node: &str, uid: &str) -> ApiResult<Obj> {
    let t = super::errors::Target {
        group: "",
        resource: "pods",
    };
    let pod = g
        .get("pods", ns, name)
        .ok_or_else(|| ApiError::not_found(t, name))?;
    if !uid.is_empty() && uid != util::uid(&pod) {
        return Err(ApiError::conflict(
            t,
            name,
            "the UID in the binding does not match the pod",
        ));
    }
    if util::deletion_timestamp(&pod).is_some() {
        return Err(ApiError::conflict(
            super::errors::Target {
                group: "",
                resource: "pods/binding",
            },
            name,
            &format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    let current = util::str_at(&pod, &["spec", "nodeName"]);
    if !current.is_empty() {
        return Err(ApiError::conflict(
            super::errors::Target {
                group: "",
                resource: "pods/binding",
            },
            name,
            &format!("pod {name} is already assigned to node \"{current}\""),
        ));
    }
    let mut p = (*pod).clone();
    p["spec"]["nodeName"] = json!(node);
    let conds = util::object_at_mut(&mut p, &["status"])
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if let Some(list) = conds.as_array_mut() {
        list.retain(|c| c["type"].as_str() != Some("PodScheduled"));
        list.push(
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                         "lastTransitionTime": util::now_string()}),
        );
    }
    Ok(g.update("pods", p))
}

pub fn eviction(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let body = parse_body(req)?;
    let ev = registry::decode_eviction(body).map_err(|e| {
        ApiError::bad_request(format!(
            "Eviction in version \"v1\" cannot be handled as a Eviction: {e}"
        ))
    })?;
    let mut opts = DeleteOptions::default();
    options_from_value(&ev["deleteOptions"], &mut opts);
    if req.query.get("dryRun").is_some_and(|d| d == "All") {
        opts.dry_run = true;
    }
    let ns = req.ns(r);
    req.srv
        .store
        .write(|g| delete_in(req.srv, g, Some(req.user), r, &ns, &req.info.name, &opts))?;
    Ok(Reply::ok(
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

pub fn token(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let mut body = parse_body(req)?;
    // The status is the server's to fill in.
    if let Some(o) = body.as_object_mut() {
        o.remove("status");
    }
    let tr = registry::decode_token_request(body).map_err(|e| {
        ApiError::bad_request(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
        ))
    })?;
    let ns = req.ns(r);
    let out = req
        .srv
        .store
        .read(|g| super::sa::token_request(req.srv, g, &ns, &req.info.name, tr))?;
    Ok(Reply::ok(201, out))
}

/// TokenReview, SubjectAccessReview and the self-reviews: computed, never stored.
pub fn review(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<Reply> {
    let body = parse_body(req)?;
    let mut obj = decode_object(req, r, body, &mut Vec::new())?;
    let status = match r.resource {
        "tokenreviews" => {
            let token = obj["spec"]["token"].as_str().unwrap_or("").to_string();
            let auds: Vec<String> = obj["spec"]["audiences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            match req
                .srv
                .store
                .read(|g| super::auth::authenticate_token(req.srv, g, &token, &auds))
            {
                Ok((u, a)) => json!({"authenticated": true, "user": u.to_json(), "audiences": a}),
                Err(e) => json!({"authenticated": false, "user": {}, "error": e}),
            }
        }
        "selfsubjectreviews" => json!({"userInfo": req.user.to_json()}),
        "subjectaccessreviews" | "selfsubjectaccessreviews" => {
            let spec = &obj["spec"];
            let user = if r.resource == "selfsubjectaccessreviews" {
                req.user.clone()
            } else {
                UserInfo::from_json(spec)
            };
            let ra = &spec["resourceAttributes"];
            let na = &spec["nonResourceAttributes"];
            if ra.is_object() == na.is_object() {
                return Err(ApiError::invalid(
                    r.kind,
                    r.group,
                    "",
                    vec![FieldError::invalid(
                        "spec.resourceAttributes",
                        "",
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    )],
                ));
            }
            if r.resource == "subjectaccessreviews"
                && user.name.is_empty()
                && user.groups.is_empty()
            {
                return Err(ApiError::invalid(
                    r.kind,
                    r.group,
                    "",
                    vec![FieldError::invalid(
                        "spec.user",
                        "",
                        "at least one of user or group must be specified",
                    )],
                ));
            }
            let attrs = if ra.is_object() {
                let s = |k: &str| ra[k].as_str().unwrap_or("").to_string();
                super::auth::Attributes {
                    verb: s("verb"),
                    resource: Some(super::auth::ResourceAttrs {
                        group: s("group"),
                        resource: s("resource"),
                        subresource: s("subresource"),
                        namespace: s("namespace"),
                        name: s("name"),
                    }),
                    path: String::new(),
                }
            } else {
                super::auth::Attributes {
                    verb: na["verb"].as_str().unwrap_or("").into(),
                    resource: None,
                    path: na["path"].as_str().unwrap_or("").into(),
                }
            };
            match super::auth::authorize(&user, &attrs) {
                Ok(()) => {
                    json!({"allowed": true, "reason": "allowed by the test API server's policy"})
                }
                Err(_) => json!({"allowed": false}),
            }
        }
        _ => json!({}),
    };
    obj["status"] = status;
    let m = util::meta_mut(&mut obj);
    m.insert("creationTimestamp".into(), Value::Null);
    Ok(Reply::ok(201, obj))
}
