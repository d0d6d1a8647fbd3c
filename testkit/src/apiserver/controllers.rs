//! The controllers a cluster needs for kubectl and a kubelet to work, run in-process over the
//! store: the default namespaces, the `kubernetes` Service, and in every namespace the
//! `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap (created with the namespace,
//! so a pod created right after its namespace is admitted); a trivial scheduler binding pods
//! without a node to a Ready node that fits them (nodeSelector, required node affinity,
//! taints, cpu/memory/pods) with a `Scheduled` event; the CSR approver and signer; namespace
//! deletion; the pod garbage collector (pods of deleted nodes) and owner-reference garbage
//! collection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::auth::UserInfo;
use super::pods::parse_quantity_milli;
use super::registry::{self, ResourceDef};
use super::rest::{self, DeleteOptions};
use super::selectors::LabelSelector;
use super::store::{Inner, Key, Obj};
use super::util;
use super::Server;

fn res(key: &str) -> &'static ResourceDef {
    registry::by_key(key).expect("registered resource")
}

/// Create an object on the server's own behalf (no admission).
pub fn create_system(srv: &Arc<Server>, g: &mut Inner, key: &str, mut obj: Value) -> Option<Obj> {
    let r = res(key);
    let ns = util::namespace(&obj).to_string();
    if g.get(r.key(), &ns, util::name(&obj)).is_some() {
        return None;
    }
    obj["apiVersion"] = json!(r.api_version());
    obj["kind"] = json!(r.kind);
    rest::init_meta(&mut obj, &ns, r.namespaced);
    let system = UserInfo::new("system:apiserver", &["system:masters"]);
    if super::resources::prepare_create(g, r, &system, &mut obj).is_err() {
        return None;
    }
    let stored = g.create(r.key(), obj);
    after_create(srv, g, r, &stored);
    Some(stored)
}

/// What happens in the same transaction as a create.
pub fn after_create(srv: &Arc<Server>, g: &mut Inner, r: &ResourceDef, obj: &Obj) {
    if r.resource == "namespaces" {
        let ns = util::name(obj).to_string();
        create_system(
            srv,
            g,
            "serviceaccounts",
            json!({"metadata": {"name": "default", "namespace": ns}}),
        );
        create_system(
            srv,
            g,
            "configmaps",
            json!({"metadata": {"name": "kube-root-ca.crt", "namespace": ns, "annotations": {
                "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": srv.pki.ca_pem}}),
        );
    }
}

/// Owner-reference garbage collection and the pod GC for a removed object.
pub fn after_delete(srv: &Arc<Server>, g: &mut Inner, r: &ResourceDef, obj: &Obj) {
    let uid = util::uid(obj).to_string();
    let mut doomed: Vec<(&'static str, String, String)> = Vec::new();
    for (key, o) in g.all() {
        let owners: Vec<&Value> = util::meta(&o)
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        if owners.is_empty()
            || !owners
                .iter()
                .any(|x| x["uid"].as_str() == Some(uid.as_str()))
        {
            continue;
        }
        let alive = owners.iter().any(|x| {
            let ouid = x["uid"].as_str().unwrap_or("");
            ouid != uid && owner_exists(g, x, util::namespace(&o), ouid)
        });
        if !alive {
            doomed.push((key, util::namespace(&o).into(), util::name(&o).into()));
        }
    }
    if r.resource == "nodes" {
        // podgc: pods bound to a node that no longer exists go away.
        let node = util::name(obj);
        for ((ns, name), p) in g.list("pods", None) {
            if util::str_at(&p, &["spec", "nodeName"]) == node {
                doomed.push(("pods", ns, name));
            }
        }
    }
    let force = DeleteOptions {
        grace: Some(0),
        ..Default::default()
    };
    for (key, ns, name) in doomed {
        let opts = if key == "pods" && r.resource == "nodes" {
            force.clone()
        } else {
            DeleteOptions::default()
        };
        let _ = rest::delete_in(srv, g, None, res(key), &ns, &name, &opts);
    }
}

fn owner_exists(g: &Inner, owner: &Value, ns: &str, uid: &str) -> bool {
    let kind = owner["kind"].as_str().unwrap_or("");
    let group = owner["apiVersion"]
        .as_str()
        .unwrap_or("")
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or("");
    let Some(r) = registry::by_kind(group, kind) else {
        // Owners of kinds this server does not serve are assumed alive.
        return true;
    };
    let ons = if r.namespaced { ns } else { "" };
    g.get(r.key(), ons, owner["name"].as_str().unwrap_or(""))
        .is_some_and(|o| util::uid(&o) == uid)
}

/// `propagationPolicy: Orphan`: dependents lose the owner reference.
pub fn orphan_dependents(g: &mut Inner, uid: &str) {
    for (key, o) in g.all() {
        let Some(refs) = util::meta(&o)
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        if !refs.iter().any(|x| x["uid"].as_str() == Some(uid)) {
            continue;
        }
        let mut n = (*o).clone();
        let kept: Vec<Value> = refs
            .iter()
            .filter(|x| x["uid"].as_str() != Some(uid))
            .cloned()
            .collect();
        let m = util::meta_mut(&mut n);
        if kept.is_empty() {
            m.remove("ownerReferences");
        } else {
            m.insert("ownerReferences".into(), Value::Array(kept));
        }
        g.update(key, n);
    }
}

/// Objects every cluster has: the default namespaces, the `kubernetes` Service and its
/// Endpoints, and the bootstrap token's Secret.
pub fn bootstrap(srv: &Arc<Server>, bootstrap_token: &str) {
    srv.store.write(|g| {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            create_system(srv, g, "namespaces", json!({"metadata": {"name": ns}}));
        }
        let port = srv.addr.port();
        create_system(
            srv,
            g,
            "services",
            json!({"metadata": {"name": "kubernetes", "namespace": "default",
                      "labels": {"component": "apiserver", "provider": "kubernetes"}},
                   "spec": {"clusterIP": "10.96.0.1", "type": "ClusterIP", "sessionAffinity": "None",
                            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}),
        );
        let ep = json!({"metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                        "subsets": [{"addresses": [{"ip": srv.addr.ip().to_string()}],
                                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]});
        match g.get("endpoints", "default", "kubernetes") {
            None => {
                create_system(srv, g, "endpoints", ep);
            }
            Some(old) if old["subsets"] != ep["subsets"] => {
                let mut n = (*old).clone();
                n["subsets"] = ep["subsets"].clone();
                g.update("endpoints", n);
            }
            Some(_) => {}
        }
        if let Some((id, secret)) = bootstrap_token.split_once('.') {
            use base64::Engine;
            let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            create_system(
                srv,
                g,
                "secrets",
                json!({"metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
                       "type": "bootstrap.kubernetes.io/token",
                       "data": {"token-id": b(id), "token-secret": b(secret),
                                "usage-bootstrap-authentication": b("true"),
                                "usage-bootstrap-signing": b("true"),
                                "auth-extra-groups": b("system:bootstrappers:kubeadm:default-node-token"),
                                "description": b("test-apiserver bootstrap token")}}),
            );
        }
    });
}

/// Record a core/v1 Event about an object.
fn record_event(
    g: &mut Inner,
    srv: &Arc<Server>,
    about: &Value,
    ty: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let now = util::now();
    let ns = match util::namespace(about) {
        "" => "default",
        n => n,
    };
    let name = format!("{}.{:x}", util::name(about), now.as_nanosecond() as u64);
    create_system(
        srv,
        g,
        "events",
        json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": about["kind"], "namespace": util::namespace(about),
                "name": util::name(about), "uid": util::uid(about), "apiVersion": about["apiVersion"],
                "resourceVersion": util::resource_version(about)},
            "reason": reason,
            "message": message,
            "source": {},
            "firstTimestamp": null,
            "lastTimestamp": null,
            "type": ty,
            "eventTime": util::format_micro_time(now),
            "action": if reason == "Scheduled" { "Binding" } else { "Scheduling" },
            "reportingComponent": component,
            "reportingInstance": format!("{component}-testkit"),
        }),
    );
}

struct NodeFit {
    name: String,
    labels: serde_json::Map<String, Value>,
    taints: Vec<Value>,
    cpu: f64,
    memory: f64,
    pods: f64,
    used_cpu: f64,
    used_memory: f64,
    used_pods: f64,
}

fn requests_of(pod: &Value) -> (f64, f64) {
    let mut cpu = 0.0;
    let mut mem = 0.0;
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let r = &c["resources"]["requests"];
        cpu += r["cpu"]
            .as_str()
            .and_then(parse_quantity_milli)
            .unwrap_or(0.0);
        mem += r["memory"]
            .as_str()
            .and_then(parse_quantity_milli)
            .unwrap_or(0.0);
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let r = &c["resources"]["requests"];
        cpu = cpu.max(
            r["cpu"]
                .as_str()
                .and_then(parse_quantity_milli)
                .unwrap_or(0.0),
        );
        mem = mem.max(
            r["memory"]
                .as_str()
                .and_then(parse_quantity_milli)
                .unwrap_or(0.0),
        );
    }
    (cpu, mem)
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| {
            let effect = t["effect"].as_str().unwrap_or("");
            if !effect.is_empty() && effect != taint["effect"].as_str().unwrap_or("") {
                return false;
            }
            let key = t["key"].as_str().unwrap_or("");
            match t["operator"].as_str().unwrap_or("Equal") {
                "Exists" => key.is_empty() || key == taint["key"].as_str().unwrap_or(""),
                _ => {
                    key == taint["key"].as_str().unwrap_or("")
                        && t["value"].as_str().unwrap_or("")
                            == taint["value"].as_str().unwrap_or("")
                }
            }
        })
}

fn affinity_matches(pod: &Value, node: &NodeFit) -> bool {
    if let Some(sel) = pod["spec"]["nodeSelector"].as_object() {
        for (k, v) in sel {
            if node.labels.get(k) != Some(v) {
                return false;
            }
        }
    }
    let terms = &pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let Some(terms) = terms.as_array() else {
        return true;
    };
    let mut fields = serde_json::Map::new();
    fields.insert("metadata.name".into(), json!(node.name));
    terms.iter().any(|t| {
        let labels_ok =
            LabelSelector::from_object(&json!({"matchExpressions": t["matchExpressions"]}))
                .is_ok_and(|s| s.matches_map(Some(&node.labels)));
        let fields_ok = LabelSelector::from_object(&json!({"matchExpressions": t["matchFields"]}))
            .is_ok_and(|s| s.matches_map(Some(&fields)));
        labels_ok && fields_ok
    })
}

/// Bind pending pods: `candidates` (pods that changed), or every pod when `None`.
fn schedule(srv: &Arc<Server>, g: &mut Inner, candidates: Option<&[Obj]>) {
    let all;
    let pool: &[Obj] = match candidates {
        Some(c) => c,
        None => {
            all = g
                .list("pods", None)
                .into_iter()
                .map(|(_, p)| p)
                .collect::<Vec<_>>();
            &all
        }
    };
    let pending: Vec<Obj> = pool
        .iter()
        .filter(|p| {
            util::str_at(p, &["spec", "nodeName"]).is_empty()
                && matches!(
                    util::str_at(p, &["spec", "schedulerName"]),
                    "" | "default-scheduler"
                )
                && util::deletion_timestamp(p).is_none()
                && p["spec"]["schedulingGates"]
                    .as_array()
                    .is_none_or(|a| a.is_empty())
        })
        .cloned()
        .collect();
    if pending.is_empty() {
        return;
    }
    let pods = g.list("pods", None);
    let mut nodes: Vec<NodeFit> = Vec::new();
    let all_nodes = g.list("nodes", None);
    for (_, n) in &all_nodes {
        let ready = n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if !ready || n["spec"]["unschedulable"].as_bool() == Some(true) {
            continue;
        }
        let alloc = &n["status"]["allocatable"];
        let q = |k: &str, default: f64| {
            alloc[k]
                .as_str()
                .and_then(parse_quantity_milli)
                .unwrap_or(default)
        };
        nodes.push(NodeFit {
            name: util::name(n).to_string(),
            labels: util::labels(n).cloned().unwrap_or_default(),
            taints: n["spec"]["taints"].as_array().cloned().unwrap_or_default(),
            cpu: q("cpu", f64::INFINITY),
            memory: q("memory", f64::INFINITY),
            pods: q("pods", 110_000.0),
            used_cpu: 0.0,
            used_memory: 0.0,
            used_pods: 0.0,
        });
    }
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    for (_, p) in &pods {
        let phase = util::str_at(p, &["status", "phase"]);
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        if let Some(&i) = index.get(util::str_at(p, &["spec", "nodeName"])) {
            let (c, m) = requests_of(p);
            nodes[i].used_cpu += c;
            nodes[i].used_memory += m;
            nodes[i].used_pods += 1000.0;
        }
    }
    for pod in pending {
        let (cpu, mem) = requests_of(&pod);
        let mut reasons: HashMap<&str, usize> = HashMap::new();
        let mut best: Option<usize> = None;
        for (i, n) in nodes.iter().enumerate() {
            let why = if !affinity_matches(&pod, n) {
                Some("node(s) didn't match Pod's node affinity/selector")
            } else if n
                .taints
                .iter()
                .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
                .any(|t| !tolerates(&pod, t))
            {
                Some("node(s) had taints that the pod didn't tolerate")
            } else if n.used_pods + 1000.0 > n.pods {
                Some("Too many pods")
            } else if n.used_cpu + cpu > n.cpu + 1e-6 {
                Some("Insufficient cpu")
            } else if n.used_memory + mem > n.memory + 1e-6 {
                Some("Insufficient memory")
            } else {
                None
            };
            match why {
                Some(w) => *reasons.entry(w).or_default() += 1,
                None => {
                    if best.is_none_or(|b| {
                        (nodes[b].used_pods, &nodes[b].name) > (n.used_pods, &n.name)
                    }) {
                        best = Some(i);
                    }
                }
            }
        }
        let ns = util::namespace(&pod).to_string();
        let name = util::name(&pod).to_string();
        match best {
            Some(i) => {
                if let Ok(bound) = rest::bind_pod(g, &ns, &name, &nodes[i].name, util::uid(&pod)) {
                    nodes[i].used_cpu += cpu;
                    nodes[i].used_memory += mem;
                    nodes[i].used_pods += 1000.0;
                    let msg = format!("Successfully assigned {ns}/{name} to {}", nodes[i].name);
                    record_event(
                        g,
                        srv,
                        &bound,
                        "Normal",
                        "Scheduled",
                        &msg,
                        "default-scheduler",
                    );
                }
            }
            None => {
                let total = all_nodes.len();
                let mut parts: Vec<String> =
                    reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                parts.sort();
                let msg = if total == 0 {
                    "no nodes available to schedule pods".to_string()
                } else {
                    let not_ready = total - nodes.len();
                    if not_ready > 0 {
                        parts.push(format!(
                            "{not_ready} node(s) were unschedulable or not ready"
                        ));
                        parts.sort();
                    }
                    format!(
                        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.",
                        parts.join(", ")
                    )
                };
                let current = pod["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["type"] == "PodScheduled")
                    .map(|c| c["message"].as_str().unwrap_or("").to_string());
                if current.as_deref() == Some(msg.as_str()) {
                    continue;
                }
                let mut p = (*pod).clone();
                let conds = util::object_at_mut(&mut p, &["status"])
                    .entry("conditions")
                    .or_insert_with(|| json!([]));
                if let Some(list) = conds.as_array_mut() {
                    list.retain(|c| c["type"] != "PodScheduled");
                    list.push(json!({"type": "PodScheduled", "status": "False", "lastProbeTime": null,
                        "lastTransitionTime": util::now_string(), "reason": "Unschedulable", "message": msg}));
                }
                let stored = g.update("pods", p);
                record_event(
                    g,
                    srv,
                    &stored,
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    "default-scheduler",
                );
            }
        }
    }
}

fn condition(c: &Value, t: &str) -> bool {
    c["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x["type"] == t)
}

fn csr_request_pem(c: &Value) -> String {
    use base64::Engine;
    c["spec"]["request"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

fn usages(c: &Value) -> Vec<String> {
    c["spec"]["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

/// Whether the approver recognises the request; `Some(message)` to approve.
fn auto_approval(c: &Value) -> Option<&'static str> {
    let info = super::pki::parse_csr(&csr_request_pem(c)).ok()?;
    let signer = c["spec"]["signerName"].as_str().unwrap_or("");
    let user = c["spec"]["username"].as_str().unwrap_or("");
    let groups: Vec<&str> = c["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let us = usages(c);
    let node_subject = info.common_name.starts_with("system:node:")
        && info.common_name.len() > "system:node:".len()
        && info.organizations == ["system:nodes"];
    match signer {
        "kubernetes.io/kube-apiserver-client-kubelet" => {
            let allowed = ["digital signature", "key encipherment", "client auth"];
            let usages_ok = us.iter().any(|u| u == "client auth")
                && us.iter().all(|u| allowed.contains(&u.as_str()));
            let no_sans = info.dns_names.is_empty()
                && info.ips.is_empty()
                && info.emails.is_empty()
                && info.uris.is_empty();
            let requestor_ok = groups.contains(&"system:bootstrappers")
                || groups.contains(&"system:masters")
                || user == info.common_name;
            (node_subject && usages_ok && no_sans && requestor_ok)
                .then_some("Auto approving kubelet client certificate after SubjectAccessReview.")
        }
        "kubernetes.io/kubelet-serving" => {
            let allowed = ["digital signature", "key encipherment", "server auth"];
            let usages_ok = us.iter().any(|u| u == "server auth")
                && us.iter().all(|u| allowed.contains(&u.as_str()));
            let sans_ok = (!info.dns_names.is_empty() || !info.ips.is_empty())
                && info.emails.is_empty()
                && info.uris.is_empty();
            (node_subject
                && usages_ok
                && sans_ok
                && user == info.common_name
                && groups.contains(&"system:nodes"))
            .then_some("Auto approving kubelet serving certificate after SubjectAccessReview.")
        }
        _ => None,
    }
}

/// Signer-specific checks of `csrsigning`; the reason to fail, if any.
fn signer_check(c: &Value) -> Result<(), String> {
    let info = super::pki::parse_csr(&csr_request_pem(c))?;
    let us = usages(c);
    let has = |u: &str| us.iter().any(|x| x == u);
    match c["spec"]["signerName"].as_str().unwrap_or("") {
        "kubernetes.io/kube-apiserver-client-kubelet" => {
            if info.organizations != ["system:nodes"]
                || !info.common_name.starts_with("system:node:")
            {
                return Err("subject organization is not system:nodes or common name does not begin with 'system:node:'".into());
            }
            if !has("client auth") {
                return Err("usages did not contain client auth".into());
            }
        }
        "kubernetes.io/kubelet-serving" => {
            if info.organizations != ["system:nodes"]
                || !info.common_name.starts_with("system:node:")
            {
                return Err("subject organization is not system:nodes or common name does not begin with 'system:node:'".into());
            }
            if !has("server auth") {
                return Err("usages did not contain server auth".into());
            }
        }
        "kubernetes.io/kube-apiserver-client" => {
            if !has("client auth") {
                return Err("usages did not contain client auth".into());
            }
        }
        "kubernetes.io/legacy-unknown" => {}
        other => return Err(format!("signer {other:?} is not handled by this server")),
    }
    Ok(())
}

fn process_csrs(srv: &Arc<Server>, g: &mut Inner) {
    for (_, c) in g.list("certificatesigningrequests", None) {
        if condition(&c, "Denied") || condition(&c, "Failed") {
            continue;
        }
        let now = util::now_string();
        if !condition(&c, "Approved") {
            if let Some(msg) = auto_approval(&c) {
                let mut n = (*c).clone();
                let conds = util::object_at_mut(&mut n, &["status"])
                    .entry("conditions")
                    .or_insert_with(|| json!([]));
                if let Some(l) = conds.as_array_mut() {
                    l.push(
                        json!({"type": "Approved", "status": "True", "reason": "AutoApproved",
                        "message": msg, "lastUpdateTime": now, "lastTransitionTime": now}),
                    );
                }
                g.update("certificatesigningrequests", n);
            }
            continue;
        }
        if !c["status"]["certificate"].as_str().unwrap_or("").is_empty() {
            continue;
        }
        let signer = c["spec"]["signerName"].as_str().unwrap_or("");
        if !signer.starts_with("kubernetes.io/") {
            continue;
        }
        let mut n = (*c).clone();
        let result = signer_check(&c).and_then(|()| {
            let max = srv.config.cluster_signing_duration.as_secs() as i64;
            let want = c["spec"]["expirationSeconds"]
                .as_i64()
                .unwrap_or(max)
                .clamp(600, max.max(600));
            srv.pki.sign_csr(
                &csr_request_pem(&c),
                &usages(&c),
                Duration::from_secs(want as u64),
            )
        });
        match result {
            Ok(pem) => {
                use base64::Engine;
                n["status"]["certificate"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(pem));
            }
            Err(why) => {
                let conds = util::object_at_mut(&mut n, &["status"])
                    .entry("conditions")
                    .or_insert_with(|| json!([]));
                if let Some(l) = conds.as_array_mut() {
                    l.push(json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                        "message": why, "lastUpdateTime": now, "lastTransitionTime": now}));
                }
            }
        }
        g.update("certificatesigningrequests", n);
    }
}

fn process_namespaces(srv: &Arc<Server>, g: &mut Inner) {
    for (_, ns) in g.list("namespaces", None) {
        if util::deletion_timestamp(&ns).is_none() {
            continue;
        }
        let name = util::name(&ns).to_string();
        let mut remaining = 0;
        for r in registry::RESOURCES
            .iter()
            .filter(|r| r.namespaced && r.stored)
        {
            for ((ons, oname), o) in g.list(r.key(), Some(&name)) {
                remaining += 1;
                if util::deletion_timestamp(&o).is_none() {
                    let _ =
                        rest::delete_in(srv, g, None, r, &ons, &oname, &DeleteOptions::default());
                }
            }
        }
        if remaining == 0 {
            let mut n = (*ns).clone();
            n["spec"]["finalizers"] = json!([]);
            if util::finalizers(&n).is_empty() {
                let r = res("namespaces");
                if let Some(gone) = g.delete("namespaces", "", &name) {
                    after_delete(srv, g, r, &gone);
                }
            } else {
                g.update("namespaces", n);
            }
        }
    }
}

/// podgc: terminating pods whose node is gone are removed.
fn pod_gc(srv: &Arc<Server>, g: &mut Inner, candidates: Option<&[Obj]>) {
    let pods: Vec<Obj> = match candidates {
        Some(c) => c.to_vec(),
        None => g.list("pods", None).into_iter().map(|(_, p)| p).collect(),
    };
    for p in pods {
        let (ns, name) = (util::namespace(&p).to_string(), util::name(&p).to_string());
        let node = util::str_at(&p, &["spec", "nodeName"]);
        if util::deletion_timestamp(&p).is_some()
            && !node.is_empty()
            && g.get("nodes", "", node).is_none()
        {
            let opts = DeleteOptions {
                grace: Some(0),
                ..Default::default()
            };
            let _ = rest::delete_in(srv, g, None, res("pods"), &ns, &name, &opts);
        }
    }
}

/// The controller loop: react to changes, and tick once a second. Pods are looked at
/// incrementally (the ones that changed since the last round), everything else in full when
/// its resource changed.
pub async fn run(srv: Arc<Server>) {
    let mut sub = srv.store.subscribe();
    let mut pod_cursor = 0u64;
    let mut seen_nodes = u64::MAX;
    let mut seen_csrs = u64::MAX;
    loop {
        // Which pods changed (None: all of them, after a compaction or at the start).
        let (changed_pods, nodes_changed, csrs_changed, terminating) = srv.store.read(|g| {
            let changed: Option<Vec<Key>> = match g.events_after("pods", pod_cursor) {
                Ok(evs) if pod_cursor > 0 => {
                    let mut keys: Vec<Key> = evs
                        .iter()
                        .map(|e| {
                            (
                                util::namespace(&e.object).to_string(),
                                util::name(&e.object).to_string(),
                            )
                        })
                        .collect();
                    keys.sort();
                    keys.dedup();
                    Some(keys)
                }
                _ => None,
            };
            pod_cursor = g.rv().max(1);
            let nodes = g.last_change("nodes") != seen_nodes;
            seen_nodes = g.last_change("nodes");
            let csrs = g.last_change("certificatesigningrequests") != seen_csrs;
            seen_csrs = g.last_change("certificatesigningrequests");
            let terminating = g
                .list("namespaces", None)
                .iter()
                .any(|(_, n)| util::deletion_timestamp(n).is_some());
            (changed, nodes, csrs, terminating)
        });
        srv.store.write(|g| {
            let candidates: Option<Vec<Obj>> = changed_pods.as_ref().map(|keys| {
                keys.iter()
                    .filter_map(|(ns, name)| g.get("pods", ns, name))
                    .collect()
            });
            if srv.config.scheduler {
                match (&candidates, nodes_changed) {
                    (Some(c), false) if !c.is_empty() => schedule(&srv, g, Some(c)),
                    (Some(_), false) => {}
                    _ => schedule(&srv, g, None),
                }
            }
            match (&candidates, nodes_changed) {
                (Some(c), false) => pod_gc(&srv, g, Some(c)),
                _ => pod_gc(&srv, g, None),
            }
            if csrs_changed {
                process_csrs(&srv, g);
            }
            if terminating {
                process_namespaces(&srv, g);
            }
        });
        tokio::select! {
            r = sub.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
