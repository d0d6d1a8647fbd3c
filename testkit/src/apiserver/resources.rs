//! Per-resource strategies, as the registries' `PrepareForCreate`, `PrepareForUpdate`,
//! `Validate` and admission plugins: what the server sets on create (status of a new pod or
//! namespace, a CSR's requesting user, a service's cluster IP), what each kind of update may
//! change (the main resource keeps the stored status; `/status` keeps everything else;
//! `/approval` only conditions), object-meta validation, NamespaceLifecycle and
//! NodeRestriction.

use serde_json::{json, Value};

use super::auth::UserInfo;
use super::errors::{ApiError, ApiResult, FieldError};
use super::pods;
use super::registry::ResourceDef;
use super::selectors::valid_label_value;
use super::store::Inner;
use super::util;

/// Namespaces that may not be deleted (`NamespaceLifecycle`'s immortal namespaces).
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn valid_qualified_name(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if prefix.is_some_and(|p| !pods::is_dns1123_subdomain(p)) {
        return false;
    }
    !name.is_empty() && valid_label_value(name)
}

/// `ValidateObjectMeta`: name format per resource, label and annotation keys and values.
pub fn validate_meta(r: &ResourceDef, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = util::name(obj);
    let name_ok = match r.resource {
        "namespaces" => pods::is_dns1123_label(name),
        "services" => {
            pods::is_dns1123_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase())
        }
        "certificatesigningrequests" => {
            !name.is_empty()
                && !name.contains('/')
                && !name.contains('%')
                && name != "."
                && name != ".."
        }
        _ => pods::is_dns1123_subdomain(name),
    };
    if !name_ok {
        errs.push(if r.resource == "namespaces" || r.resource == "services" {
            pods::label_error("metadata.name", name)
        } else {
            pods::subdomain_error("metadata.name", name)
        });
    }
    if let Some(labels) = util::labels(obj) {
        for (k, v) in labels {
            if !valid_qualified_name(k) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    k,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                ));
            }
            let v = v.as_str().unwrap_or("");
            if !valid_label_value(v) {
                errs.push(FieldError::invalid(
                    "metadata.labels",
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                ));
            }
        }
    }
    if let Some(ann) = util::annotations(obj) {
        let mut total = 0usize;
        for (k, v) in ann {
            total += k.len() + v.as_str().map_or(0, str::len);
            if !valid_qualified_name(&k.to_ascii_lowercase()) {
                errs.push(FieldError::invalid(
                    "metadata.annotations",
                    k,
                    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                ));
            }
        }
        if total > 256 * 1024 {
            errs.push(FieldError::invalid(
                "metadata.annotations",
                "",
                "Too long: must have at most 262144 bytes",
            ));
        }
    }
    errs
}

fn next_cluster_ip(g: &Inner) -> String {
    let used: std::collections::HashSet<String> = g
        .list("services", None)
        .iter()
        .map(|(_, s)| util::str_at(s, &["spec", "clusterIP"]).to_string())
        .collect();
    for n in 10u32..(1 << 20) {
        let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) + n);
        let s = ip.to_string();
        if !used.contains(&s) {
            return s;
        }
    }
    String::new()
}

/// What the server sets on a new object of each kind, and admission of it.
pub fn prepare_create(
    g: &Inner,
    r: &ResourceDef,
    user: &UserInfo,
    obj: &mut Value,
) -> ApiResult<()> {
    match r.resource {
        "namespaces" => {
            let name = util::name(obj).to_string();
            let labels = util::meta_mut(obj)
                .entry("labels")
                .or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        "pods" => {
            pods::set_defaults(obj);
            super::sa::admit_pod(g, obj)?;
            pods::admit_priority(obj)?;
            pods::admit_default_tolerations(obj);
            let qos = pods::qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "nodes"
            if obj["status"]["allocatable"].is_null() && obj["status"]["capacity"].is_object() =>
        {
            obj["status"]["allocatable"] = obj["status"]["capacity"].clone();
        }
        "secrets" => {
            move_string_data(obj);
            if obj["type"].as_str().unwrap_or("").is_empty() {
                obj["type"] = json!("Opaque");
            }
        }
        "services" => default_service(g, obj),
        "certificatesigningrequests" => {
            let spec = util::object_at_mut(obj, &["spec"]);
            spec.insert("username".into(), json!(user.name));
            if user.uid.is_empty() {
                spec.remove("uid");
            } else {
                spec.insert("uid".into(), json!(user.uid));
            }
            spec.insert("groups".into(), json!(user.groups));
            if user.extra.is_empty() {
                spec.remove("extra");
            } else {
                spec.insert("extra".into(), json!(user.extra));
            }
            obj["status"] = json!({});
        }
        _ => {}
    }
    Ok(())
}

/// `stringData` is write-only: it is merged into `data` and dropped.
pub fn move_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let data = util::object_at_mut(obj, &["data"]);
    for (k, v) in sd {
        let s = v.as_str().unwrap_or("");
        data.insert(
            k,
            json!(base64::engine::general_purpose::STANDARD.encode(s)),
        );
    }
}

fn default_service(g: &Inner, obj: &mut Value) {
    let spec = util::object_at_mut(obj, &["spec"]);
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ty = if ty.is_empty() {
        "ClusterIP".to_string()
    } else {
        ty
    };
    spec.insert("type".into(), json!(ty));
    spec.entry("sessionAffinity").or_insert(json!("None"));
    if ty != "ExternalName" {
        let ip = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if ip.is_empty() {
            let ip = next_cluster_ip(g);
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        } else if ip != "None" {
            spec.entry("clusterIPs").or_insert(json!([ip]));
        }
        spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
        spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
        spec.entry("internalTrafficPolicy")
            .or_insert(json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            p.entry("protocol").or_insert(json!("TCP"));
            let unset = match p.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                _ => false,
            };
            if unset {
                if let Some(port) = p.get("port").cloned() {
                    p.insert("targetPort".into(), port);
                }
            }
        }
    }
    obj.as_object_mut()
        .expect("object")
        .entry("status")
        .or_insert(json!({"loadBalancer": {}}));
}

/// Validation of a new object.
pub fn validate_create(r: &ResourceDef, obj: &Value) -> ApiResult<()> {
    let mut errs = validate_meta(r, obj);
    match r.resource {
        "pods" => errs.extend(pods::validate(obj)),
        "certificatesigningrequests" => errs.extend(validate_csr(obj)),
        // Events may be about any object; nothing else is checked.
        _ => {}
    }
    invalid_if_any(r, obj, errs)
}

fn invalid_if_any(r: &ResourceDef, obj: &Value, errs: Vec<FieldError>) -> ApiResult<()> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.kind, r.group, util::name(obj), errs))
    }
}

fn validate_csr(obj: &Value) -> Vec<FieldError> {
    use base64::Engine;
    let mut errs = Vec::new();
    let spec = &obj["spec"];
    if spec["signerName"].as_str().unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.signerName", ""));
    }
    if spec["usages"].as_array().is_none_or(|u| u.is_empty()) {
        errs.push(FieldError::required("spec.usages", ""));
    }
    let req = spec["request"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    if let Err(e) = super::pki::parse_csr(&req) {
        errs.push(FieldError::invalid("spec.request", "[]byte{...}", e));
    }
    if let Some(s) = spec["expirationSeconds"].as_i64() {
        if s < 600 {
            errs.push(FieldError::invalid(
                "spec.expirationSeconds",
                &s.to_string(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    errs
}

/// Carry over what a write may not change, per subresource.
pub fn prepare_update(r: &ResourceDef, sub: &str, new: &mut Value, old: &Value) {
    // Server-owned metadata never comes from the client.
    {
        let om = util::meta(old).cloned().unwrap_or_default();
        let nm = util::meta_mut(new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
            "selfLink",
        ] {
            match om.get(k) {
                Some(v) => nm.insert(k.into(), v.clone()),
                None => nm.remove(k),
            };
        }
        // pods/status may not touch owner references (old kubelets corrupted them); labels,
        // annotations and finalizers may change through status, as in kube-apiserver.
        if sub == "status" && r.resource == "pods" {
            match om.get("ownerReferences") {
                Some(v) => nm.insert("ownerReferences".into(), v.clone()),
                None => nm.remove("ownerReferences"),
            };
        }
    }
    let keep = |new: &mut Value, field: &str| {
        let o = new.as_object_mut().expect("object");
        match old.get(field) {
            Some(v) => o.insert(field.into(), v.clone()),
            None => o.remove(field),
        };
    };
    match sub {
        "status" => {
            for f in top_level_fields(new, old) {
                if f != "status" && f != "metadata" && f != "apiVersion" && f != "kind" {
                    keep(new, &f);
                }
            }
            if r.resource == "certificatesigningrequests" {
                // Approval and denial go through /approval only.
                let conds = keep_conditions(old, new, |t| t == "Approved" || t == "Denied", true);
                if !conds.is_null() {
                    new["status"]["conditions"] = conds;
                }
            }
        }
        "approval" => {
            for f in top_level_fields(new, old) {
                if f != "status" && f != "metadata" && f != "apiVersion" && f != "kind" {
                    keep(new, &f);
                }
            }
            let conds = new["status"]["conditions"].clone();
            new["status"] = old["status"].clone();
            if !new["status"].is_object() {
                new["status"] = json!({});
            }
            if !conds.is_null() {
                new["status"]["conditions"] = conds;
            }
        }
        "ephemeralcontainers" => {
            // Only spec.ephemeralContainers comes from the client, defaulted as on create.
            let mut eph = new["spec"]["ephemeralContainers"].clone();
            *new = {
                let mut o = old.clone();
                if let Some(list) = eph.as_array_mut() {
                    for c in list.iter_mut() {
                        pods::default_ephemeral_container(c);
                    }
                }
                o["spec"]["ephemeralContainers"] = eph;
                o
            };
        }
        "finalize" => {
            let fin = new["spec"]["finalizers"].clone();
            *new = {
                let mut o = old.clone();
                o["spec"]["finalizers"] = fin;
                o
            };
        }
        _ => {
            if r.status_subresource {
                keep(new, "status");
            }
            if r.resource == "certificatesigningrequests" {
                keep(new, "spec");
            }
            if r.resource == "namespaces" {
                keep(new, "spec");
            }
            if r.resource == "secrets" {
                move_string_data(new);
                if new["type"].as_str().unwrap_or("").is_empty() {
                    new["type"] = old["type"].clone();
                }
            }
            if r.resource == "pods" {
                pods::set_defaults(new);
            }
        }
    }
}

fn top_level_fields(a: &Value, b: &Value) -> Vec<String> {
    let mut out: Vec<String> = a
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    for k in b.as_object().into_iter().flat_map(|o| o.keys()) {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// Conditions of `new`, with those of the given types taken from `old` instead.
fn keep_conditions(
    old: &Value,
    new: &Value,
    from_old: impl Fn(&str) -> bool,
    _status: bool,
) -> Value {
    let mut out: Vec<Value> = new["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| !from_old(c["type"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    out.extend(
        old["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| from_old(c["type"].as_str().unwrap_or("")))
            .cloned(),
    );
    if out.is_empty() && new["status"]["conditions"].is_null() {
        Value::Null
    } else {
        Value::Array(out)
    }
}

/// Validation of an update.
pub fn validate_update(r: &ResourceDef, sub: &str, new: &Value, old: &Value) -> ApiResult<()> {
    let mut errs = validate_meta(r, new);
    match (r.resource, sub) {
        ("pods", "") => {
            errs.extend(pods::validate(new));
            errs.extend(pods::validate_spec_update(new, old));
        }
        ("pods", "ephemeralcontainers") => errs.extend(pods::validate_ephemeral_update(new, old)),
        ("secrets" | "configmaps", _) if old["immutable"].as_bool() == Some(true) => {
            for f in ["data", "binaryData", "immutable"] {
                if new.get(f) != old.get(f) {
                    errs.push(FieldError::forbidden(
                        f,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        ("certificatesigningrequests", "approval") => {
            let conds = new["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let has = |t: &str| conds.iter().any(|c| c["type"].as_str() == Some(t));
            if has("Approved") && has("Denied") {
                errs.push(FieldError::invalid(
                    "status.conditions",
                    "Approved",
                    "Approved and Denied conditions are mutually exclusive",
                ));
            }
            for t in ["Approved", "Denied"] {
                let had = old["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"].as_str() == Some(t));
                if had && !has(t) {
                    errs.push(FieldError::forbidden(
                        "status.conditions",
                        format!("updates may not remove a condition of type \"{t}\""),
                    ));
                }
            }
            for (i, c) in conds.iter().enumerate() {
                let st = c["status"].as_str().unwrap_or("");
                if !matches!(st, "True" | "False" | "Unknown") {
                    errs.push(FieldError::not_supported(
                        format!("status.conditions[{i}].status"),
                        st,
                        &["True", "False", "Unknown"],
                    ));
                }
            }
        }
        _ => {}
    }
    invalid_if_any(r, new, errs)
}

/// NamespaceLifecycle: namespaced objects need an existing namespace that is not terminating.
pub fn admit_namespace(g: &Inner, r: &ResourceDef, ns: &str, create: bool) -> ApiResult<()> {
    if !r.namespaced || !r.stored {
        return Ok(());
    }
    match g.get("namespaces", "", ns) {
        None => Err(ApiError::not_found(
            super::errors::Target {
                group: "",
                resource: "namespaces",
            },
            ns,
        )),
        Some(n) if create && util::deletion_timestamp(&n).is_some() => Err(ApiError::forbidden(format!(
            "{} \"\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            r.resource
        ))
        .with_details(json!({"kind": r.resource, "causes": [{"reason": "NamespaceTerminating",
            "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}))),
        Some(_) => Ok(()),
    }
}

/// NodeRestriction: a node may only write its own Node and Lease and the pods bound to it,
/// and may create only mirror pods.
pub fn admit_node_restriction(
    user: &UserInfo,
    r: &ResourceDef,
    verb: &str,
    sub: &str,
    obj: Option<&Value>,
    old: Option<&Value>,
    name: &str,
) -> ApiResult<()> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let deny = |why: String| {
        Err(ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: {why}",
            r.resource
        )))
    };
    match r.resource {
        "nodes" if matches!(verb, "create" | "update" | "patch" | "delete") => {
            if name != node {
                return deny(format!(
                    "node \"{node}\" is not allowed to modify node \"{name}\""
                ));
            }
            if let Some(o) = obj {
                let bad = util::labels(o).into_iter().flatten().find(|(k, _)| {
                    k.starts_with("node-restriction.kubernetes.io/")
                        && !util::labels(old.unwrap_or(&Value::Null))
                            .is_some_and(|l| l.get(*k) == util::labels(o).and_then(|n| n.get(*k)))
                });
                if let Some((k, _)) = bad {
                    return deny(format!("is not allowed to modify labels: {k}"));
                }
            }
        }
        "leases" if matches!(verb, "create" | "update" | "patch" | "delete") && name != node => {
            return deny(
                "can only access node lease with the same name as the requesting node".to_string(),
            );
        }
        "pods" => {
            let target = obj.or(old);
            let bound = target
                .map(|p| util::str_at(p, &["spec", "nodeName"]).to_string())
                .unwrap_or_default();
            match (verb, sub) {
                ("create", "") => {
                    let mirror = target.is_some_and(|p| {
                        util::annotations(p)
                            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
                    });
                    if !mirror {
                        return deny(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"));
                    }
                    if bound != node {
                        return deny(format!(
                            "node \"{node}\" can only create pods with spec.nodeName set to itself"
                        ));
                    }
                }
                ("update" | "patch", "status") | ("delete", "") | ("create", "eviction")
                    if bound != node =>
                {
                    return deny(format!(
                        "node \"{node}\" can only {} pods with spec.nodeName set to itself",
                        if sub == "status" {
                            "update pod status for"
                        } else {
                            "delete"
                        }
                    ));
                }
                ("update" | "patch", "") => {
                    return deny(format!("node \"{node}\" can only update pod status"));
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}
