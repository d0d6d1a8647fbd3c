//! Pods: kube-apiserver's defaulting (`pkg/apis/core/v1/defaults.go`), the Priority and
//! DefaultTolerationSeconds admission plugins, QoS class, validation of a new pod and of an
//! update (only images, `activeDeadlineSeconds`, added tolerations and removed scheduling gates
//! may change), and resource quantities.

use serde_json::{json, Map, Value};

use super::errors::{ApiError, FieldError};
use super::util;

/// Apply `SetDefaults_Pod` and friends to a pod object.
pub fn set_defaults(pod: &mut Value) {
    let spec = util::object_at_mut(pod, &["spec"]);
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut() {
                default_requests_from_limits(c);
            }
        }
    }
    spec.entry("enableServiceLinks").or_insert(json!(true));
    default_pod_spec(spec);
}

fn default_requests_from_limits(c: &mut Value) {
    let Some(limits) = c
        .pointer("/resources/limits")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let req = util::object_at_mut(c, &["resources", "requests"]);
    for (k, v) in limits {
        req.entry(k).or_insert(v);
    }
}

fn set_if_missing(m: &mut Map<String, Value>, k: &str, v: Value) {
    match m.get(k) {
        None | Some(Value::Null) => {
            m.insert(k.into(), v);
        }
        Some(Value::String(s)) if s.is_empty() => {
            m.insert(k.into(), v);
        }
        _ => {}
    }
}

/// `SetDefaults_PodSpec` plus the per-container, probe, port and volume defaults.
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_if_missing(spec, "dnsPolicy", json!("ClusterFirst"));
    set_if_missing(spec, "restartPolicy", json!("Always"));
    set_if_missing(spec, "securityContext", json!({}));
    set_if_missing(spec, "terminationGracePeriodSeconds", json!(30));
    set_if_missing(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c, host_network);
            }
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            default_volume(v);
        }
    }
}

fn default_container(c: &mut Map<String, Value>, host_network: bool) {
    if c.get("imagePullPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag_is_latest(image) {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    set_if_missing(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_if_missing(c, "terminationMessagePolicy", json!("File"));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_if_missing(p, "protocol", json!("TCP"));
            if host_network && p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                if let Some(cp) = p.get("containerPort").cloned() {
                    p.insert("hostPort".into(), cp);
                }
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = c.get_mut(probe) {
            set_if_missing(p, "timeoutSeconds", json!(1));
            set_if_missing(p, "periodSeconds", json!(10));
            set_if_missing(p, "successThreshold", json!(1));
            set_if_missing(p, "failureThreshold", json!(3));
            default_handler(p);
        }
    }
    if let Some(Value::Object(l)) = c.get_mut("lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(Value::Object(h)) = l.get_mut(hook) {
                default_handler(h);
            }
        }
    }
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(Value::Object(f)) = e.pointer_mut("/valueFrom/fieldRef") {
                set_if_missing(f, "apiVersion", json!("v1"));
            }
        }
    }
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(Value::Object(g)) = h.get_mut("httpGet") {
        set_if_missing(g, "path", json!("/"));
        set_if_missing(g, "scheme", json!("HTTP"));
    }
    if let Some(Value::Object(g)) = h.get_mut("grpc") {
        g.entry("service").or_insert(json!(""));
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn default_volume(v: &mut Map<String, Value>) {
    if !VOLUME_SOURCES.iter().any(|s| v.contains_key(*s)) {
        v.insert("emptyDir".into(), json!({}));
    }
    for src in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(Value::Object(s)) = v.get_mut(src) {
            s.entry("defaultMode").or_insert(json!(420));
        }
    }
    if let Some(Value::Object(h)) = v.get_mut("hostPath") {
        h.entry("type").or_insert(json!(""));
    }
    let field_refs = |items: &mut Value| {
        for it in items.as_array_mut().into_iter().flatten() {
            if let Some(Value::Object(f)) = it.get_mut("fieldRef") {
                set_if_missing(f, "apiVersion", json!("v1"));
            }
        }
    };
    if let Some(items) = v.get_mut("downwardAPI").and_then(|d| d.get_mut("items")) {
        field_refs(items);
    }
    if let Some(Value::Array(sources)) = v.get_mut("projected").and_then(|p| p.get_mut("sources")) {
        for s in sources {
            if let Some(Value::Object(t)) = s.get_mut("serviceAccountToken") {
                t.entry("expirationSeconds").or_insert(json!(3600));
            }
            if let Some(items) = s.get_mut("downwardAPI").and_then(|d| d.get_mut("items")) {
                field_refs(items);
            }
        }
    }
}

/// `parsers.ParseImageName`: no tag and no digest means `latest`.
fn image_tag_is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

/// Priority admission: built-in classes only.
pub fn admit_priority(pod: &mut Value) -> Result<(), ApiError> {
    let name = util::name(pod).to_string();
    let spec = util::object_at_mut(pod, &["spec"]);
    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let computed = match class.as_str() {
        "" => 0,
        "system-node-critical" => 2_000_001_000,
        "system-cluster-critical" => 2_000_000_000,
        other => {
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: no PriorityClass with name {other} was found"
            )))
        }
    };
    if let Some(p) = spec.get("priority").and_then(Value::as_i64) {
        if p != computed {
            return Err(ApiError::forbidden(format!(
                "pods \"{name}\" is forbidden: the integer value of priority ({p}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name"
            )));
        }
    }
    spec.insert("priority".into(), json!(computed));
    spec.entry("preemptionPolicy")
        .or_insert(json!("PreemptLowerPriority"));
    Ok(())
}

/// DefaultTolerationSeconds admission: tolerate not-ready and unreachable for 300 s.
pub fn admit_default_tolerations(pod: &mut Value) {
    let spec = util::object_at_mut(pod, &["spec"]);
    let tols = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(vec![]));
    let Some(list) = tols.as_array_mut() else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let effect = t["effect"].as_str().unwrap_or("");
            let k = t["key"].as_str().unwrap_or("");
            let exists = t["operator"].as_str() == Some("Exists");
            (effect.is_empty() || effect == "NoExecute") && (k == key || (k.is_empty() && exists))
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}),
            );
        }
    }
}

/// A quantity in milli-units (`100m` → 100, `1Gi` → 1073741824000).
pub fn parse_quantity_milli(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult * 1000.0)
}

fn quantity_of(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => parse_quantity_milli(s),
        Value::Number(n) => n.as_f64().map(|f| f * 1000.0),
        _ => None,
    }
}

/// `qos.GetPodQOS`.
pub fn qos_class(pod: &Value) -> &'static str {
    let mut requests: std::collections::BTreeMap<String, f64> = Default::default();
    let mut limits: std::collections::BTreeMap<String, f64> = Default::default();
    let mut guaranteed = true;
    let spec = &pod["spec"];
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["initContainers"].as_array().into_iter().flatten());
    for c in containers {
        for (name, q) in c["resources"]["requests"].as_object().into_iter().flatten() {
            if name != "cpu" && name != "memory" {
                continue;
            }
            if let Some(v) = quantity_of(q).filter(|v| *v > 0.0) {
                *requests.entry(name.clone()).or_default() += v;
            }
        }
        let mut found = Vec::new();
        for (name, q) in c["resources"]["limits"].as_object().into_iter().flatten() {
            if name != "cpu" && name != "memory" {
                continue;
            }
            if let Some(v) = quantity_of(q).filter(|v| *v > 0.0) {
                found.push(name.clone());
                *limits.entry(name.clone()).or_default() += v;
            }
        }
        if !(found.iter().any(|f| f == "cpu") && found.iter().any(|f| f == "memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed {
        for (name, req) in &requests {
            if limits.get(name).is_none_or(|l| (l - req).abs() > 1e-6) {
                guaranteed = false;
                break;
            }
        }
    }
    if guaranteed && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

pub fn label_error(field: &str, value: &str) -> FieldError {
    FieldError::invalid(field, value, DNS1123_LABEL_MSG)
}

pub fn subdomain_error(field: &str, value: &str) -> FieldError {
    FieldError::invalid(field, value, DNS1123_SUBDOMAIN_MSG)
}

/// `ValidatePod`, the parts tests and kubelets run into.
pub fn validate(pod: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        errs.push(FieldError::required("spec.containers", ""));
    }
    let volumes: Vec<String> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect();
    let mut seen_vol = std::collections::HashSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let f = format!("spec.volumes[{i}].name");
        if v.is_empty() {
            errs.push(FieldError::required(f, ""));
        } else if !is_dns1123_label(v) {
            errs.push(label_error(&f, v));
        } else if !seen_vol.insert(v.clone()) {
            errs.push(FieldError::duplicate(f, v));
        }
    }
    let mut names = std::collections::HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let base = format!("spec.{list}[{i}]");
            let name = c["name"].as_str().unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{base}.name"), ""));
            } else if !is_dns1123_label(name) {
                errs.push(label_error(&format!("{base}.name"), name));
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{base}.name"), name));
            }
            if c["image"].as_str().unwrap_or("").trim().is_empty() {
                errs.push(FieldError::required(format!("{base}.image"), ""));
            }
            for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
                let cp = p["containerPort"].as_i64().unwrap_or(0);
                if !(1..=65535).contains(&cp) {
                    errs.push(FieldError::invalid(
                        format!("{base}.ports[{j}].containerPort"),
                        &cp.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
            for (j, m) in c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let vn = m["name"].as_str().unwrap_or("");
                if !volumes.iter().any(|v| v == vn) {
                    errs.push(FieldError::not_found(
                        format!("{base}.volumeMounts[{j}].name"),
                        vn,
                    ));
                }
                if m["mountPath"].as_str().unwrap_or("").is_empty() {
                    errs.push(FieldError::required(
                        format!("{base}.volumeMounts[{j}].mountPath"),
                        "",
                    ));
                }
            }
            for kind in ["requests", "limits"] {
                for (res, q) in c["resources"][kind].as_object().into_iter().flatten() {
                    if quantity_of(q).is_none() {
                        errs.push(FieldError::invalid(
                            format!("{base}.resources.{kind}[{res}]"),
                            &q.to_string(),
                            "must be a valid quantity",
                        ));
                    }
                }
            }
            for (res, req) in c["resources"]["requests"].as_object().into_iter().flatten() {
                let lim = c["resources"]["limits"].get(res);
                if let (Some(r), Some(l)) = (quantity_of(req), lim.and_then(quantity_of)) {
                    if r > l + 1e-6 {
                        errs.push(FieldError::invalid(
                            format!("{base}.resources.requests"),
                            req.as_str().unwrap_or(""),
                            format!(
                                "must be less than or equal to {res} limit of {}",
                                lim.and_then(Value::as_str).unwrap_or("")
                            ),
                        ));
                    }
                }
            }
        }
    }
    let rp = spec["restartPolicy"].as_str().unwrap_or("Always");
    if !matches!(rp, "Always" | "OnFailure" | "Never") {
        errs.push(FieldError::not_supported(
            "spec.restartPolicy",
            rp,
            &["Always", "OnFailure", "Never"],
        ));
    }
    let dns = spec["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
    if !matches!(
        dns,
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
    ) {
        errs.push(FieldError::not_supported(
            "spec.dnsPolicy",
            dns,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    errs
}

/// Defaults of an ephemeral container added through `pods/ephemeralcontainers`.
pub fn default_ephemeral_container(c: &mut Value) {
    if let Some(m) = c.as_object_mut() {
        default_container(m, false);
    }
}

/// `ValidatePodEphemeralContainersUpdate`: ephemeral containers are only added, each with a
/// unique name, an image, none of what an ephemeral container may not have, and a target that
/// names one of the pod's containers.
pub fn validate_ephemeral_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Vec::new();
    let new_list = new["spec"]["ephemeralContainers"]
        .as_array()
        .unwrap_or(&empty);
    let old_list = old["spec"]["ephemeralContainers"]
        .as_array()
        .unwrap_or(&empty);
    for o in old_list {
        let name = o["name"].as_str().unwrap_or("");
        match new_list.iter().find(|n| n["name"] == o["name"]) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers \"{name}\" may not be removed"),
            )),
            Some(n) if n != o => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!("existing ephemeral containers \"{name}\" may not be changed"),
            )),
            Some(_) => {}
        }
    }
    let mut names: Vec<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|l| old["spec"][*l].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let targets = names.clone();
    for (i, c) in new_list.iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let name = c["name"].as_str().unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else if names.iter().any(|n| n == name) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        } else {
            names.push(name.to_string());
        }
        if c["image"].as_str().unwrap_or("").is_empty() {
            errs.push(FieldError::required(format!("{path}.image"), ""));
        }
        for f in [
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "resources",
            "resizePolicy",
        ] {
            if c.get(f)
                .is_some_and(|v| !v.is_null() && v != &json!({}) && v != &json!([]))
            {
                errs.push(FieldError::forbidden(
                    format!("{path}.{f}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(t) = c["targetContainerName"].as_str().filter(|t| !t.is_empty()) {
            if !targets.iter().any(|n| n == t) {
                errs.push(FieldError::not_found(
                    format!("{path}.targetContainerName"),
                    t,
                ));
            }
        }
    }
    errs
}

/// `ValidatePodUpdate`'s rule on the spec: only some fields may change.
pub fn validate_spec_update(new: &Value, old: &Value) -> Option<FieldError> {
    let mut a = new["spec"].clone();
    let b = &old["spec"];
    for list in ["containers", "initContainers"] {
        if let (Some(na), Some(ob)) = (
            a.get_mut(list).and_then(Value::as_array_mut),
            b[list].as_array(),
        ) {
            if na.len() == ob.len() {
                for (n, o) in na.iter_mut().zip(ob) {
                    if let (Some(nm), Some(img)) = (n.as_object_mut(), o.get("image")) {
                        nm.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    if let Some(m) = a.as_object_mut() {
        match b.get("activeDeadlineSeconds") {
            Some(v) => m.insert("activeDeadlineSeconds".into(), v.clone()),
            None => m.remove("activeDeadlineSeconds"),
        };
        let old_tols = b["tolerations"].as_array().cloned().unwrap_or_default();
        let new_tols = m
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if old_tols.iter().all(|t| new_tols.contains(t)) {
            match b.get("tolerations") {
                Some(v) => m.insert("tolerations".into(), v.clone()),
                None => m.remove("tolerations"),
            };
        }
        if b["terminationGracePeriodSeconds"]
            .as_i64()
            .is_some_and(|g| g < 0)
        {
            if let Some(v) = b.get("terminationGracePeriodSeconds") {
                m.insert("terminationGracePeriodSeconds".into(), v.clone());
            }
        }
        let old_gates = b["schedulingGates"].as_array().cloned().unwrap_or_default();
        let new_gates = m
            .get("schedulingGates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if new_gates.iter().all(|g| old_gates.contains(g)) {
            match b.get("schedulingGates") {
                Some(v) => m.insert("schedulingGates".into(), v.clone()),
                None => m.remove("schedulingGates"),
            };
        }
    }
    if &a == b {
        return None;
    }
    let mut diffs = Vec::new();
    diff_paths(&a, b, "spec", &mut diffs);
    diffs.truncate(5);
    Some(FieldError::forbidden(
        "spec",
        format!(
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n  changed: {}",
            diffs.join(", ")
        ),
    ))
}

/// Paths at which two values differ.
fn diff_paths(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff_paths(p, q, &format!("{path}.{k}"), out),
                    _ => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff_paths(p, q, &format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_like_the_apiserver() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "busybox",
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                "ports": [{"containerPort": 80}],
                "readinessProbe": {"httpGet": {"port": 80}}},
                {"name": "d", "image": "reg:5000/x/busybox:1.35"}],
            "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}]}});
        set_defaults(&mut pod);
        let s = &pod["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["securityContext"], json!({}));
        let c = &s["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(s["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"]["requests"]["cpu"], "1");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/");
        assert_eq!(s["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(s["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(qos_class(&pod), "Burstable");
    }

    #[test]
    fn qos_classes() {
        let g = json!({"spec": {"containers": [{"resources": {
            "limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "0.5", "memory": "64Mi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        assert_eq!(
            qos_class(&json!({"spec": {"containers": [{}]}})),
            "BestEffort"
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity_milli("100m"), Some(100.0));
        assert_eq!(parse_quantity_milli("2"), Some(2000.0));
        assert_eq!(parse_quantity_milli("1Ki"), Some(1024000.0));
        assert_eq!(parse_quantity_milli("1e3"), Some(1e6));
        assert_eq!(parse_quantity_milli("x"), None);
    }

    #[test]
    fn only_images_may_change() {
        let old = json!({"spec": {"containers": [{"name": "c", "image": "a"}], "nodeName": "n"}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("b");
        assert!(validate_spec_update(&new, &old).is_none());
        new["spec"]["nodeName"] = json!("m");
        assert!(validate_spec_update(&new, &old).is_some());
    }

    #[test]
    fn validation_names_fields() {
        let pod = json!({"spec": {"containers": [{"name": "Bad"}, {"name": "c", "image": "i",
            "volumeMounts": [{"name": "missing", "mountPath": "/x"}]}]}});
        let errs: Vec<String> = validate(&pod).iter().map(|e| e.to_string()).collect();
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.containers[0].name: Invalid value: \"Bad\"")));
        assert!(errs
            .iter()
            .any(|e| e == "spec.containers[0].image: Required value"));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.containers[1].volumeMounts[0].name")));
    }
}
