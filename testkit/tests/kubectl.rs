//! The test API server driven by the real kubectl of this machine image: every test starts its
//! own server and checks what kubectl prints and what the server stored.

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{eventually, node_json, server};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: c
    image: 127.0.0.1:5000/kubelet-rs/busybox:1.35
    command: ["sleep", "3600"]
    resources:
      limits: {cpu: 100m, memory: 64Mi}
"#;

#[test]
fn version_and_api_resources() {
    let s = server();
    let out = s.kubectl(&["version"]);
    assert!(
        out.ok().contains("Server Version: v1.33.0+testkit"),
        "{}",
        out.stdout
    );
    let res = s.kubectl(&["api-resources"]);
    let text = res.ok();
    for line in [
        "pods ",
        "nodes ",
        "namespaces ",
        "configmaps ",
        "secrets ",
        "serviceaccounts ",
        "events ",
        "leases ",
        "certificatesigningrequests ",
        "tokenreviews ",
        "subjectaccessreviews ",
    ] {
        assert!(text.contains(line), "api-resources lacks {line:?}:\n{text}");
    }
    assert!(text.contains("csr "), "{text}");
    assert!(text.contains("coordination.k8s.io/v1"), "{text}");
}

#[test]
fn namespaces_have_default_service_account_and_root_ca() {
    let s = server();
    let out = s.kubectl(&["get", "ns"]);
    let text = out.ok();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(text.contains(ns), "{text}");
    }
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("Active"), "{text}");
    s.kubectl(&["create", "ns", "team-a"]).ok();
    let sa = s.kubectl(&["-n", "team-a", "get", "sa", "default", "-o", "json"]);
    assert_eq!(json(sa.ok())["metadata"]["name"], "default");
    let cm = s.kubectl(&[
        "-n",
        "team-a",
        "get",
        "cm",
        "kube-root-ca.crt",
        "-o",
        "json",
    ]);
    let ca = std::fs::read_to_string(s.ca_cert()).unwrap();
    assert_eq!(json(cm.ok())["data"]["ca.crt"], ca.as_str());
    let dup = s.kubectl(&["create", "ns", "team-a"]);
    assert!(!dup.success());
    assert!(
        dup.stderr
            .contains("Error from server (AlreadyExists): namespaces \"team-a\" already exists"),
        "{}",
        dup.stderr
    );
}

#[test]
fn apply_twice_then_patches_the_pod() {
    let s = server();
    let out = s.kubectl_with_stdin(&["apply", "-f", "-"], Some(POD));
    assert_eq!(out.ok().trim(), "pod/web created");
    let again = s.kubectl_with_stdin(&["apply", "-f", "-"], Some(POD));
    assert_eq!(again.ok().trim(), "pod/web unchanged");
    let changed = POD.replace("busybox:1.35", "busybox:1.36");
    let out = s.kubectl_with_stdin(&["apply", "-f", "-"], Some(&changed));
    assert_eq!(out.ok().trim(), "pod/web configured");
    let pod = json(s.kubectl(&["get", "pod", "web", "-o", "json"]).ok());
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "127.0.0.1:5000/kubelet-rs/busybox:1.36"
    );
    let last = pod["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(last.contains("busybox:1.36"), "{last}");
    // A spec change a pod may not take is refused with the apiserver's message.
    let bad = POD.replace("sleep", "true");
    let out = s.kubectl_with_stdin(&["apply", "-f", "-"], Some(&bad));
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("pod updates may not change fields other than"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_new_pod_is_defaulted_and_admitted_like_kube_apiserver() {
    let s = server();
    s.kubectl_with_stdin(&["create", "-f", "-"], Some(POD)).ok();
    let pod = json(s.kubectl(&["get", "pod", "web", "-o", "json"]).ok());
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["serviceAccountName"], "default");
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["resources"]["requests"]["cpu"], "100m");
    let vol = &spec["volumes"][0];
    let vname = vol["name"].as_str().unwrap();
    assert!(
        vname.starts_with("kube-api-access-") && vname.len() == 21,
        "{vname}"
    );
    let sources = vol["projected"]["sources"].as_array().unwrap();
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(
        sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        c["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    let tols: Vec<&str> = spec["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        tols,
        [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable"
        ]
    );
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let yaml = s.kubectl(&["get", "pod", "web", "-o", "yaml"]);
    assert!(
        yaml.ok().contains("qosClass: Guaranteed"),
        "{}",
        yaml.stdout
    );
}

#[test]
fn configmaps_and_secrets_from_typed_clients() {
    let s = server();
    s.kubectl(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=1",
        "--from-literal=empty=",
    ])
    .ok();
    s.kubectl(&[
        "create",
        "secret",
        "generic",
        "pw",
        "--from-literal=password=s3cret",
    ])
    .ok();
    let cm = json(s.kubectl(&["get", "cm", "cfg", "-o", "json"]).ok());
    assert_eq!(cm["data"]["a"], "1");
    assert_eq!(cm["data"]["empty"], "");
    let secret = json(s.kubectl(&["get", "secret", "pw", "-o", "json"]).ok());
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(secret["data"]["password"], "czNjcmV0");
    let table = s.kubectl(&["get", "cm,secret"]);
    let text = table.ok();
    assert!(
        text.contains("configmap/cfg") && text.contains("secret/pw"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("secret/pw") && l.contains("Opaque") && l.contains(" 1 ")),
        "{text}"
    );
}

fn ready_node_and_running_pod(s: &testkit::TestApiServer) {
    s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(&node_json(
            "node-1",
            "10.1.2.3",
            10250,
            r#","node-role.kubernetes.io/worker":"""#,
        )),
    )
    .ok();
    let pod = POD.replace("spec:\n", "spec:\n  nodeName: node-1\n");
    s.kubectl_with_stdin(&["create", "-f", "-"], Some(&pod))
        .ok();
    let status = r#"{"status":{"phase":"Running","podIP":"10.88.0.7","podIPs":[{"ip":"10.88.0.7"}],
        "hostIP":"10.1.2.3","hostIPs":[{"ip":"10.1.2.3"}],
        "conditions":[{"type":"Ready","status":"True"}],
        "containerStatuses":[{"name":"c","ready":true,"restartCount":2,"image":"busybox","imageID":"","started":true,
          "state":{"running":{"startedAt":"2026-01-01T00:00:00Z"}},
          "lastState":{"terminated":{"exitCode":1,"finishedAt":"2026-01-01T00:00:00Z","reason":"Error"}}}]}}"#;
    s.kubectl(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ])
    .ok();
}

#[test]
fn get_wide_yaml_and_json() {
    let s = server();
    ready_node_and_running_pod(&s);
    let wide = s.kubectl(&["get", "pods", "-o", "wide"]);
    let text = wide.ok();
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["web", "1/1", "Running"]);
    assert_eq!(row[3], "2");
    assert!(
        row[4].starts_with('(') && row[5] == "ago)",
        "restarts with the last restart age: {row:?}"
    );
    assert_eq!(&row[7..11], ["10.88.0.7", "node-1", "<none>", "<none>"]);
    let nodes = s.kubectl(&["get", "nodes", "-o", "wide"]);
    let text = nodes.ok();
    assert!(text.starts_with("NAME     STATUS   ROLES    AGE"), "{text}");
    for col in [
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ] {
        assert!(text.contains(col), "{text}");
    }
    let row = text.lines().nth(1).unwrap();
    for cell in [
        "node-1",
        "Ready",
        "worker",
        "v1.33.0",
        "10.1.2.3",
        "<none>",
        "6.1.0-test",
        "containerd://1.6.20",
    ] {
        assert!(row.contains(cell), "{cell} missing from {row}");
    }
    let yaml = s.kubectl(&["get", "pod", "web", "-o", "yaml"]);
    assert!(yaml.ok().contains("podIP: 10.88.0.7"), "{}", yaml.stdout);
    let list = json(s.kubectl(&["get", "pods", "-o", "json"]).ok());
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["kind"], "Pod");
    assert_eq!(list["items"][0]["status"]["phase"], "Running");
}

#[test]
fn watch_sees_a_change_made_by_another_client() {
    let s = server();
    s.kubectl_with_stdin(&["create", "-f", "-"], Some(POD)).ok();
    let mut child = s
        .kubectl_command()
        .args([
            "get",
            "pod",
            "web",
            "-w",
            "-o",
            "custom-columns=NAME:.metadata.name,TIER:.metadata.labels.tier",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("header");
    assert!(first.starts_with("NAME"), "{first}");
    let row = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("current state");
    assert!(row.contains("<none>"), "{row}");
    s.kubectl(&["label", "pod", "web", "tier=front"]).ok();
    let changed = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a watch event");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        changed.starts_with("web") && changed.contains("front"),
        "{changed}"
    );
}

#[test]
fn label_annotate_and_the_three_patch_types() {
    let s = server();
    ready_node_and_running_pod(&s);
    s.kubectl(&["label", "pod", "web", "tier=front"]).ok();
    s.kubectl(&["annotate", "pod", "web", "owner=team-a"]).ok();
    s.kubectl(&["label", "node", "node-1", "disk=ssd"]).ok();
    s.kubectl(&[
        "patch",
        "pod",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
    ])
    .ok();
    s.kubectl(&[
        "patch",
        "pod",
        "web",
        "-p",
        r#"{"spec":{"containers":[{"name":"c","image":"img:strategic"}]}}"#,
    ])
    .ok();
    s.kubectl(&[
        "patch", "pod", "web", "--type=json", "-p",
        r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"},{"op":"remove","path":"/metadata/labels/tier"}]"#,
    ])
    .ok();
    // Strategic merge keeps the node's other conditions (merged by type).
    s.kubectl(&[
        "patch", "node", "node-1", "--subresource=status", "-p",
        r#"{"status":{"conditions":[{"type":"MemoryPressure","status":"False","reason":"KubeletHasSufficientMemory"}]}}"#,
    ])
    .ok();
    let pod = json(s.kubectl(&["get", "pod", "web", "-o", "json"]).ok());
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["merged"], "yes");
    assert_eq!(labels["json"], "yes");
    assert!(labels.get("tier").is_none());
    assert_eq!(pod["metadata"]["annotations"]["owner"], "team-a");
    assert_eq!(pod["spec"]["containers"][0]["image"], "img:strategic");
    assert_eq!(pod["spec"]["containers"][0]["name"], "c");
    assert_eq!(
        pod["status"]["phase"], "Running",
        "patches of the pod keep its status"
    );
    let node = json(s.kubectl(&["get", "node", "node-1", "-o", "json"]).ok());
    let types: Vec<&str> = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Ready", "MemoryPressure"]);
    assert_eq!(node["metadata"]["labels"]["disk"], "ssd");
    let bad = s.kubectl(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/nope"}]"#,
    ]);
    assert!(!bad.success());
}

#[test]
fn delete_is_graceful_for_a_bound_pod_and_immediate_otherwise() {
    let mut s = server();
    s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(&node_json("node-1", "10.1.2.3", 10250, "")),
    )
    .ok();
    s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(
            &POD.replace("name: web", "name: unbound")
                .replace("spec:\n", "spec:\n  schedulerName: none\n"),
        ),
    )
    .ok();
    let out = s.kubectl(&["delete", "pod", "unbound", "--wait=false"]);
    assert_eq!(out.ok().trim(), "pod \"unbound\" deleted");
    assert!(s
        .kubectl(&["get", "pod", "unbound"])
        .stderr
        .contains("NotFound"));

    s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(&POD.replace("spec:\n", "spec:\n  nodeName: node-1\n")),
    )
    .ok();
    s.kubectl(&["delete", "pod", "web", "--wait=false"]).ok();
    let pod = json(s.kubectl(&["get", "pod", "web", "-o", "json"]).ok());
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(pod["metadata"]["deletionTimestamp"].is_string());
    let table = s.kubectl(&["get", "pod", "web"]);
    assert!(table.ok().contains("Terminating"), "{}", table.stdout);
    // A second delete with a longer grace period changes nothing; the node's final delete
    // (grace 0, with the pod's UID as precondition) removes it.
    let (code, _) = s
        .request(
            "DELETE",
            "/api/v1/namespaces/default/pods/web",
            "application/json",
            format!(
                r#"{{"gracePeriodSeconds":0,"preconditions":{{"uid":"{}"}}}}"#,
                pod["metadata"]["uid"].as_str().unwrap()
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(code, 200);
    assert!(s
        .kubectl(&["get", "pod", "web"])
        .stderr
        .contains("NotFound"));

    s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(&POD.replace("spec:\n", "spec:\n  nodeName: node-1\n")),
    )
    .ok();
    let out = s.kubectl(&["delete", "pod", "web", "--grace-period=0", "--force"]);
    assert!(out.ok().contains("force deleted"), "{}", out.stdout);
    assert!(s
        .kubectl(&["get", "pod", "web"])
        .stderr
        .contains("NotFound"));

    // No node owns a pod bound to a node that does not exist: its graceful deletion completes.
    s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(&POD.replace("spec:\n", "spec:\n  nodeName: ghost\n")),
    )
    .ok();
    s.kubectl(&["delete", "pod", "web", "--wait=false"]).ok();
    let gone = eventually(20, || {
        s.kubectl(&["get", "pod", "web"])
            .stderr
            .contains("NotFound")
            .then_some(())
    });
    assert!(gone.is_some(), "the pod of a missing node is removed");
}

#[test]
fn describe_pod_and_node() {
    let s = server();
    ready_node_and_running_pod(&s);
    let d = s.kubectl(&["describe", "pod", "web"]);
    let text = d.ok();
    for want in [
        "Name:             web",
        "Node:             node-1/10.1.2.3",
        "Status:           Running",
        "IP:               10.88.0.7",
        "QoS Class:                   Guaranteed",
        "kube-api-access-",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    let d = s.kubectl(&["describe", "node", "node-1"]);
    let text = d.ok();
    for want in [
        "Name:               node-1",
        "Roles:              worker",
        "InternalIP:  10.1.2.3",
        "Kubelet Version:            v1.33.0",
        "Non-terminated Pods:          (1 in total)",
        "default                     web",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
}

#[test]
fn run_schedules_onto_a_ready_node_with_an_event() {
    let s = server();
    s.kubectl(&["run", "early", "--image=busybox", "--", "sleep", "1"])
        .ok();
    s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(&node_json("node-1", "10.1.2.3", 10250, r#","disk":"ssd""#)),
    )
    .ok();
    let node = eventually(20, || {
        let p = json(s.kubectl(&["get", "pod", "early", "-o", "json"]).ok());
        let n = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        (!n.is_empty()).then_some(n)
    });
    assert_eq!(
        node.as_deref(),
        Some("node-1"),
        "a pending pod is bound once a node is Ready"
    );
    s.kubectl(&[
        "run",
        "picky",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"disk":"hdd"}}}"#,
    ])
    .ok();
    s.kubectl(&[
        "run",
        "fits",
        "--image=busybox",
        "--overrides",
        r#"{"spec":{"nodeSelector":{"disk":"ssd"}}}"#,
    ])
    .ok();
    let bound = eventually(20, || {
        let p = json(s.kubectl(&["get", "pod", "fits", "-o", "json"]).ok());
        (p["spec"]["nodeName"] == "node-1").then_some(())
    });
    assert!(bound.is_some());
    let picky = eventually(20, || {
        let p = json(s.kubectl(&["get", "pod", "picky", "-o", "json"]).ok());
        let c = p["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled")?
            .clone();
        Some(c)
    })
    .unwrap();
    assert_eq!(picky["status"], "False");
    assert_eq!(picky["reason"], "Unschedulable");
    assert!(
        picky["message"]
            .as_str()
            .unwrap()
            .contains("1 node(s) didn't match Pod's node affinity/selector"),
        "{picky}"
    );
    let events = s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=fits",
    ]);
    let text = events.ok();
    assert!(
        text.contains("Scheduled") && text.contains("Successfully assigned default/fits to node-1"),
        "{text}"
    );
    let d = s.kubectl(&["describe", "pod", "picky"]);
    assert!(d.ok().contains("FailedScheduling"), "{}", d.stdout);
}

#[test]
fn create_token_is_verified_by_token_review() {
    let s = server();
    s.kubectl(&["create", "serviceaccount", "robot"]).ok();
    let token = s.kubectl(&[
        "create",
        "token",
        "robot",
        "--audience",
        "vault",
        "--duration",
        "20m",
    ]);
    let token = token.ok().trim().to_string();
    assert_eq!(token.matches('.').count(), 2, "a JWT: {token}");
    let review = |aud: &str| {
        let body = format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}","audiences":["{aud}"]}}}}"#
        );
        json(
            s.kubectl_with_stdin(&["create", "-o", "json", "-f", "-"], Some(&body))
                .ok(),
        )["status"]
            .clone()
    };
    let st = review("vault");
    assert_eq!(st["authenticated"], true);
    assert_eq!(
        st["user"]["username"],
        "system:serviceaccount:default:robot"
    );
    assert_eq!(st["audiences"][0], "vault");
    let st = review("other");
    assert_eq!(st["authenticated"], false);
    assert!(st["error"].as_str().unwrap().contains("audiences"), "{st}");
    s.kubectl(&["delete", "sa", "robot"]).ok();
    assert_eq!(
        review("vault")["authenticated"],
        false,
        "a deleted account's tokens stop working"
    );
}

#[test]
fn certificate_approve_issues_a_certificate() {
    let s = server();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "devs");
    let pem = p.serialize_request(&key).unwrap().pem().unwrap();
    use base64::Engine;
    let csr = format!(
        r#"{{"apiVersion":"certificates.k8s.io/v1","kind":"CertificateSigningRequest","metadata":{{"name":"alice"}},
            "spec":{{"request":"{}","signerName":"kubernetes.io/kube-apiserver-client","usages":["client auth"],"expirationSeconds":3600}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(pem)
    );
    s.kubectl_with_stdin(&["create", "-f", "-"], Some(&csr))
        .ok();
    let before = s.kubectl(&["get", "csr", "alice"]);
    assert!(before.ok().contains("Pending"), "{}", before.stdout);
    assert!(
        before.stdout.contains("kubernetes-admin") && before.stdout.contains("60m"),
        "{}",
        before.stdout
    );
    assert_eq!(
        s.kubectl(&["certificate", "approve", "alice"]).ok().trim(),
        "certificatesigningrequest.certificates.k8s.io/alice approved"
    );
    let issued = eventually(20, || {
        let o = s.kubectl(&["get", "csr", "alice"]);
        o.stdout.contains("Approved,Issued").then_some(())
    });
    assert!(
        issued.is_some(),
        "{}",
        s.kubectl(&["get", "csr", "alice", "-o", "yaml"]).stdout
    );
    let obj = json(s.kubectl(&["get", "csr", "alice", "-o", "json"]).ok());
    let cond = &obj["status"]["conditions"][0];
    assert_eq!(cond["type"], "Approved");
    assert_eq!(cond["reason"], "KubectlApprove");
    let cert = base64::engine::general_purpose::STANDARD
        .decode(obj["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let cert = String::from_utf8(cert).unwrap();
    let der = rustls::pki_types::CertificateDer::from(
        base64::engine::general_purpose::STANDARD
            .decode(
                cert.lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<String>(),
            )
            .unwrap(),
    );
    let (user, groups) = testkit::apiserver::pki::user_from_cert(der.as_ref()).unwrap();
    assert_eq!((user.as_str(), groups), ("alice", vec!["devs".to_string()]));
}

#[test]
fn explain_reads_the_generated_openapi() {
    let s = server();
    let out = s.kubectl(&["explain", "pod.spec"]);
    let text = out.ok();
    assert!(text.contains("KIND:       Pod"), "{text}");
    assert!(text.contains("containers\t<[]Container>"), "{text}");
    assert!(text.contains("nodeName\t<string>"), "{text}");
}

#[test]
fn errors_have_the_apiserver_shape() {
    let s = server();
    let out = s.kubectl(&["get", "pod", "nope"]);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (NotFound): pods \"nope\" not found"
    );
    let strict = s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbogus: 1\n"),
    );
    assert!(!strict.success());
    assert!(
        strict
            .stderr
            .contains("strict decoding error: unknown field \"bogus\""),
        "{}",
        strict.stderr
    );
    // A replace with a stale resourceVersion is a 409 Conflict.
    s.kubectl(&["create", "configmap", "c1", "--from-literal=a=1"])
        .ok();
    let old = s
        .kubectl(&["get", "cm", "c1", "-o", "json"])
        .ok()
        .to_string();
    s.kubectl(&["label", "cm", "c1", "x=y"]).ok();
    let out = s.kubectl_with_stdin(&["replace", "-f", "-"], Some(&old));
    assert!(!out.success());
    assert!(
        out.stderr.contains(
            "Operation cannot be fulfilled on configmaps \"c1\": the object has been modified"
        ),
        "{}",
        out.stderr
    );
    let invalid = s.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad}\nspec:\n  containers: [{name: c}]\n",
        ),
    );
    assert!(
        invalid.stderr.contains("Pod \"Bad\" is invalid"),
        "{}",
        invalid.stderr
    );
    assert!(
        invalid
            .stderr
            .contains("spec.containers[0].image: Required value"),
        "{}",
        invalid.stderr
    );
}

#[test]
fn authentication_and_authorization_answers() {
    let mut s = server();
    // The bootstrap token may only work with CSRs.
    let boot = s.bootstrap_kubeconfig();
    let as_boot = |args: &[&str]| {
        let mut c = std::process::Command::new(testkit::harness::kubectl_path());
        c.arg("--kubeconfig").arg(&boot).args(args);
        let o = c.output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, _, err) = as_boot(&["get", "pods"]);
    assert!(!ok);
    assert!(
        err.contains("pods is forbidden: User \"system:bootstrap:"),
        "{err}"
    );
    let (ok, out, _) = as_boot(&["auth", "can-i", "create", "certificatesigningrequests"]);
    assert!(ok && out.trim() == "yes", "{out}");
    // A token nobody issued is 401.
    let (ok, _, err) = as_boot(&["--token", "abcdef.0123456789abcdef", "get", "pods"]);
    assert!(!ok);
    assert!(err.contains("Unauthorized"), "{err}");
    let (code, _) = s.get("/api/v1/pods").unwrap();
    assert_eq!(code, 200, "the admin certificate is system:masters");
}
