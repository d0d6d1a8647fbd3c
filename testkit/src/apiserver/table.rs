//! Server-side printing: `meta.k8s.io/v1 Table` with kube-apiserver's columns and cell
//! values for pods (READY, STATUS, RESTARTS computed as the printer does), nodes, events,
//! namespaces, secrets, configmaps, service accounts, services, endpoints, leases and CSRs;
//! other kinds get the default Name / Created At table. Columns of priority 1 are what
//! `kubectl get -o wide` adds.

use serde_json::{json, Value};

use super::registry::ResourceDef;
use super::util::{self, age};

struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    priority: u8,
    description: &'static str,
}

const fn col(name: &'static str, ty: &'static str, priority: u8, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        priority,
        description,
    }
}

const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
const AGE: Col = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn columns(r: &ResourceDef) -> Vec<Col> {
    match r.resource {
        "pods" => vec![
            NAME,
            col("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            col("IP", "string", 1, "podIP address allocated to the pod."),
            col("Node", "string", 1, "NodeName indicates in which node this pod is scheduled."),
            col("Nominated Node", "string", 1, "nominatedNodeName is set when this pod preempts other pods on the node."),
            col("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        "nodes" => vec![
            NAME,
            col("Status", "string", 0, "The status of the node"),
            col("Roles", "string", 0, "The roles of the node"),
            AGE,
            col("Version", "string", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", "string", 1, "List of addresses reachable to the node."),
            col("External-IP", "string", 1, "List of addresses reachable to the node."),
            col("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            col("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            col("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        "events" => vec![
            col("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
            col("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
            col("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            col("Object", "string", 0, "The object that this event is about."),
            col("Subobject", "string", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            col("Source", "string", 1, "The component reporting this event. Should be a short machine understandable string."),
            col("Message", "string", 0, "A human-readable description of the status of this operation."),
            col("First Seen", "string", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
            col("Count", "string", 1, "The number of times this event has occurred."),
            Col { name: "Name", ty: "string", format: "name", priority: 1, description: "Name must be unique within a namespace." },
        ],
        "namespaces" => vec![NAME, col("Status", "string", 0, "The status of the namespace"), AGE],
        "secrets" => vec![
            NAME,
            col("Type", "string", 0, "Used to facilitate programmatic handling of secret data."),
            col("Data", "string", 0, "Data contains the secret data."),
            AGE,
        ],
        "configmaps" => vec![NAME, col("Data", "string", 0, "Data contains the configuration data."), AGE],
        "serviceaccounts" => vec![NAME, col("Secrets", "string", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE],
        "services" => vec![
            NAME,
            col("Type", "string", 0, "type determines how the Service is exposed."),
            col("Cluster-IP", "string", 0, "clusterIP is the IP address of the service."),
            col("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            col("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
            AGE,
            col("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        "endpoints" => vec![NAME, col("Endpoints", "string", 0, "The set of all endpoints is the union of all subsets."), AGE],
        "leases" => vec![NAME, col("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease."), AGE],
        "certificatesigningrequests" => vec![
            NAME,
            AGE,
            col("SignerName", "string", 0, "signerName indicates the requested signer, and is a qualified name."),
            col("Requestor", "string", 0, "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block."),
            col("RequestedDuration", "string", 0, "expirationSeconds is the requested duration of validity of the issued certificate."),
            col("Condition", "string", 0, "conditions applied to the request."),
        ],
        _ => vec![
            NAME,
            Col { name: "Created At", ty: "date", format: "", priority: 0, description: "CreationTimestamp is a timestamp representing the server time when this object was created." },
        ],
    }
}

fn created(o: &Value) -> Option<&str> {
    util::value_at(o, &["metadata", "creationTimestamp"]).and_then(Value::as_str)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.to_string()
    }
}

fn format_labels(m: Option<&serde_json::Map<String, Value>>) -> String {
    match m {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", s(v)))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

fn pod_row(pod: &Value) -> (Vec<Value>, Option<Value>) {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let mut restarts = 0i64;
    let mut restartable_init_restarts = 0i64;
    let mut total = spec["containers"].as_array().map_or(0, Vec::len) as i64;
    let mut ready = 0i64;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_restartable_init: Option<jiff::Timestamp> = None;
    let phase = s(&status["phase"]).to_string();
    let mut reason = phase.clone();
    if !s(&status["reason"]).is_empty() {
        reason = s(&status["reason"]).to_string();
    }
    for c in status["conditions"].as_array().into_iter().flatten() {
        if s(&c["type"]) == "PodScheduled" && s(&c["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".into();
        }
    }
    let inits: Vec<&Value> = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let restartable = |name: &str| {
        inits
            .iter()
            .any(|c| s(&c["name"]) == name && s(&c["restartPolicy"]) == "Always")
    };
    total += inits
        .iter()
        .filter(|c| s(&c["restartPolicy"]) == "Always")
        .count() as i64;
    let later = |cur: &mut Option<jiff::Timestamp>, t: Option<jiff::Timestamp>| {
        if let Some(t) = t {
            if cur.is_none_or(|c| c < t) {
                *cur = Some(t);
            }
        }
    };
    let mut initializing = false;
    let init_statuses: Vec<&Value> = status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    for (i, c) in init_statuses.iter().enumerate() {
        let rc = c["restartCount"].as_i64().unwrap_or(0);
        restarts += rc;
        let finished = util::parse_time(s(&c["lastState"]["terminated"]["finishedAt"]));
        later(&mut last_restart, finished);
        let name = s(&c["name"]);
        if restartable(name) {
            restartable_init_restarts += rc;
            later(&mut last_restartable_init, finished);
        }
        let term = &c["state"]["terminated"];
        let wait = &c["state"]["waiting"];
        if term.is_object() && term["exitCode"].as_i64() == Some(0) {
            continue;
        }
        if restartable(name) && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if term.is_object() {
            reason = if s(&term["reason"]).is_empty() {
                match term["signal"].as_i64().unwrap_or(0) {
                    0 => format!("Init:ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
                    sig => format!("Init:Signal:{sig}"),
                }
            } else {
                format!("Init:{}", s(&term["reason"]))
            };
        } else if wait.is_object()
            && !s(&wait["reason"]).is_empty()
            && s(&wait["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", s(&wait["reason"]));
        } else {
            reason = format!("Init:{i}/{}", inits.len());
        }
        initializing = true;
        break;
    }
    let initialized = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| s(&c["type"]) == "Initialized" && s(&c["status"]) == "True");
    if !initializing || initialized {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init;
        let mut has_running = false;
        let statuses: Vec<&Value> = status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            later(
                &mut last_restart,
                util::parse_time(s(&c["lastState"]["terminated"]["finishedAt"])),
            );
            let wait = &c["state"]["waiting"];
            let term = &c["state"]["terminated"];
            if wait.is_object() && !s(&wait["reason"]).is_empty() {
                reason = s(&wait["reason"]).to_string();
            } else if term.is_object() && !s(&term["reason"]).is_empty() {
                reason = s(&term["reason"]).to_string();
            } else if term.is_object() {
                reason = match term["signal"].as_i64().unwrap_or(0) {
                    0 => format!("ExitCode:{}", term["exitCode"].as_i64().unwrap_or(0)),
                    sig => format!("Signal:{sig}"),
                };
            } else if c["ready"].as_bool() == Some(true) && c["state"]["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| s(&c["type"]) == "Ready" && s(&c["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }
    let deleting = util::deletion_timestamp(pod).is_some();
    if deleting && s(&status["reason"]) == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".into();
    }
    let restarts_str = match (restarts, last_restart) {
        (0, _) | (_, None) => restarts.to_string(),
        (n, Some(t)) => format!(
            "{n} ({} ago)",
            util::human_duration(util::now().as_second() - t.as_second())
        ),
    };
    let ip = status["podIPs"][0]["ip"].as_str().unwrap_or("");
    let gates = spec["readinessGates"].as_array().filter(|g| !g.is_empty());
    let gates_str = match gates {
        None => "<none>".to_string(),
        Some(g) => {
            let t = g
                .iter()
                .filter(|gate| {
                    status["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| {
                            s(&c["type"]) == s(&gate["conditionType"]) && s(&c["status"]) == "True"
                        })
                })
                .count();
            format!("{t}/{}", g.len())
        }
    };
    let cells = vec![
        json!(util::name(pod)),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(age(created(pod))),
        json!(or_none(ip)),
        json!(or_none(s(&spec["nodeName"]))),
        json!(or_none(s(&status["nominatedNodeName"]))),
        json!(gates_str),
    ];
    let conditions = match phase.as_str() {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };
    (cells, conditions)
}

fn node_row(n: &Value) -> Vec<Value> {
    let mut status: Vec<String> = Vec::new();
    for c in n["status"]["conditions"].as_array().into_iter().flatten() {
        if s(&c["type"]) == "Ready" {
            status.push(if s(&c["status"]) == "True" {
                "Ready".into()
            } else {
                "NotReady".into()
            });
        }
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if n["spec"]["unschedulable"].as_bool() == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    for (k, v) in util::labels(n).into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.push(role.to_string());
            }
        } else if k == "kubernetes.io/role" && !s(v).is_empty() {
            roles.push(s(v).to_string());
        }
    }
    roles.sort();
    roles.dedup();
    let addr = |t: &str| {
        n["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| s(&a["type"]) == t)
            .map(|a| s(&a["address"]).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = &n["status"]["nodeInfo"];
    let unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(util::name(n)),
        json!(status.join(",")),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age(created(n))),
        json!(s(&info["kubeletVersion"])),
        json!(addr("InternalIP")),
        json!(addr("ExternalIP")),
        json!(unknown(s(&info["osImage"]))),
        json!(unknown(s(&info["kernelVersion"]))),
        json!(unknown(s(&info["containerRuntimeVersion"]))),
    ]
}

fn event_row(e: &Value) -> Vec<Value> {
    let first = if s(&e["firstTimestamp"]).is_empty() {
        age(e["eventTime"].as_str())
    } else {
        age(e["firstTimestamp"].as_str())
    };
    let mut last = if s(&e["lastTimestamp"]).is_empty() {
        first.clone()
    } else {
        age(e["lastTimestamp"].as_str())
    };
    let mut count = e["count"].as_i64().unwrap_or(0);
    if e["series"].is_object() {
        last = age(e["series"]["lastObservedTime"].as_str());
        count = e["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let io = &e["involvedObject"];
    let target = if s(&io["name"]).is_empty() {
        s(&io["kind"]).to_lowercase()
    } else {
        format!("{}/{}", s(&io["kind"]).to_lowercase(), s(&io["name"]))
    };
    let component = if s(&e["source"]["component"]).is_empty() {
        s(&e["reportingComponent"])
    } else {
        s(&e["source"]["component"])
    };
    let host = if s(&e["source"]["host"]).is_empty() {
        s(&e["reportingInstance"])
    } else {
        s(&e["source"]["host"])
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        json!(last),
        json!(s(&e["type"])),
        json!(s(&e["reason"])),
        json!(target),
        json!(s(&io["fieldPath"])),
        json!(source),
        json!(s(&e["message"]).trim()),
        json!(first),
        json!(count),
        json!(util::name(e)),
    ]
}

fn csr_row(c: &Value) -> Vec<Value> {
    let (mut approved, mut denied, mut failed) = (false, false, false);
    for cond in c["status"]["conditions"].as_array().into_iter().flatten() {
        match s(&cond["type"]) {
            "Approved" => approved = true,
            "Denied" => denied = true,
            "Failed" => failed = true,
            _ => {}
        }
    }
    let mut status = if denied {
        "Denied".to_string()
    } else if approved {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if failed {
        status.push_str(",Failed");
    }
    if !s(&c["status"]["certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    let duration = match c["spec"]["expirationSeconds"].as_i64() {
        Some(secs) => util::human_duration(secs),
        None => "<none>".into(),
    };
    vec![
        json!(util::name(c)),
        json!(age(created(c))),
        json!(or_none(s(&c["spec"]["signerName"]))),
        json!(s(&c["spec"]["username"])),
        json!(duration),
        json!(status),
    ]
}

fn service_row(svc: &Value) -> Vec<Value> {
    let spec = &svc["spec"];
    let ty = s(&spec["type"]);
    let ext_ips: Vec<&str> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let lb: Vec<&str> = svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            if s(&i["ip"]).is_empty() {
                s(&i["hostname"])
            } else {
                s(&i["ip"])
            }
        })
        .collect();
    let external = match ty {
        "ClusterIP" | "NodePort" | "" => {
            if ext_ips.is_empty() {
                "<none>".to_string()
            } else {
                ext_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut all: Vec<&str> = lb.clone();
            all.extend(&ext_ips);
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(&spec["externalName"]).to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p["port"].as_i64().unwrap_or(0);
            let proto = s(&p["protocol"]);
            match p["nodePort"].as_i64().unwrap_or(0) {
                0 => format!("{port}/{proto}"),
                np => format!("{port}:{np}/{proto}"),
            }
        })
        .collect();
    vec![
        json!(util::name(svc)),
        json!(ty),
        json!(or_none(s(&spec["clusterIP"]))),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        json!(age(created(svc))),
        json!(format_labels(spec["selector"].as_object())),
    ]
}

fn endpoints_row(ep: &Value) -> Vec<Value> {
    let mut list = Vec::new();
    for ss in ep["subsets"].as_array().into_iter().flatten() {
        for a in ss["addresses"].as_array().into_iter().flatten() {
            let ports: Vec<i64> = ss["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["port"].as_i64())
                .collect();
            if ports.is_empty() {
                list.push(s(&a["ip"]).to_string());
            }
            for p in ports {
                list.push(format!("{}:{p}", s(&a["ip"])));
            }
        }
    }
    let shown = if list.is_empty() {
        "<none>".to_string()
    } else if list.len() > 3 {
        format!("{} + {} more...", list[..3].join(","), list.len() - 3)
    } else {
        list.join(",")
    };
    vec![json!(util::name(ep)), json!(shown), json!(age(created(ep)))]
}

fn row_cells(r: &ResourceDef, o: &Value) -> (Vec<Value>, Option<Value>) {
    let created = created(o);
    let cells = match r.resource {
        "pods" => return pod_row(o),
        "nodes" => node_row(o),
        "events" => event_row(o),
        "namespaces" => vec![
            json!(util::name(o)),
            json!(s(&o["status"]["phase"])),
            json!(age(created)),
        ],
        "secrets" => vec![
            json!(util::name(o)),
            json!(s(&o["type"])),
            json!(o["data"].as_object().map_or(0, |d| d.len())),
            json!(age(created)),
        ],
        "configmaps" => vec![
            json!(util::name(o)),
            json!(
                o["data"].as_object().map_or(0, |d| d.len())
                    + o["binaryData"].as_object().map_or(0, |d| d.len())
            ),
            json!(age(created)),
        ],
        "serviceaccounts" => vec![
            json!(util::name(o)),
            json!(o["secrets"].as_array().map_or(0, Vec::len)),
            json!(age(created)),
        ],
        "services" => service_row(o),
        "endpoints" => endpoints_row(o),
        "leases" => vec![
            json!(util::name(o)),
            json!(s(&o["spec"]["holderIdentity"])),
            json!(age(created)),
        ],
        "certificatesigningrequests" => csr_row(o),
        _ => vec![json!(util::name(o)), json!(created.unwrap_or(""))],
    };
    (cells, None)
}

/// A Table of `objs`. `headers` false leaves out the column definitions (watch events after
/// the first).
pub fn to_table(
    r: &ResourceDef,
    objs: &[Value],
    rv: &str,
    cont: Option<&str>,
    include_object: Option<&str>,
    v1beta1: bool,
    headers: bool,
) -> Value {
    let cols: Vec<Value> = if headers {
        columns(r)
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.ty, "format": c.format,
                       "description": c.description, "priority": c.priority})
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let (cells, conditions) = row_cells(r, o);
            let mut row = json!({"cells": cells});
            match include_object.unwrap_or("Metadata") {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = super::rest::partial(o),
            }
            if let Some(c) = conditions {
                row["conditions"] = c;
            }
            row
        })
        .collect();
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": if v1beta1 { "meta.k8s.io/v1beta1" } else { "meta.k8s.io/v1" },
        "metadata": meta,
        "columnDefinitions": cols,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry;

    #[test]
    fn pod_status_column() {
        let pods = registry::lookup("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "web", "creationTimestamp": util::now_string()},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 2,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"finishedAt": util::now_string(), "exitCode": 1}}}]}});
        let t = to_table(
            pods,
            std::slice::from_ref(&pod),
            "5",
            None,
            None,
            false,
            true,
        );
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert!(
            cells[3].as_str().unwrap().starts_with("2 ("),
            "{}",
            cells[3]
        );
        assert_eq!(cells[5], "10.0.0.5");
        assert_eq!(cells[6], "n1");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        let mut term = pod;
        term["metadata"]["deletionTimestamp"] = json!(util::now_string());
        let t = to_table(pods, &[term], "5", None, None, false, false);
        assert_eq!(t["rows"][0]["cells"][2], "Terminating");
        assert!(t["columnDefinitions"].as_array().unwrap().is_empty());
    }

    #[test]
    fn node_status_column() {
        let nodes = registry::lookup("", "v1", "nodes").unwrap();
        let n = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/worker": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
        let t = to_table(nodes, &[n], "1", None, None, false, true);
        let c = &t["rows"][0]["cells"];
        assert_eq!(c[1], "Ready,SchedulingDisabled");
        assert_eq!(c[2], "worker");
        assert_eq!(c[5], "10.1.1.1");
        assert_eq!(c[6], "<none>");
        assert_eq!(c[7], "<unknown>");
    }
}
