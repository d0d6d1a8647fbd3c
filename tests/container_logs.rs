//! `/containerLogs` on the real containerd, through the authenticated kubelet API (TLS, a
//! client certificate of the client CA): the kubelet's answers for a missing pod or container
//! and bad options, each `PodLogOptions` on a container's real log (a line over containerd's
//! 16 KiB record size comes back joined, under one timestamp), `follow` across several log
//! rotations (a small `containerLogMaxSize`) until the container exits, and `previous` after a
//! restart. `tests/container_logs_inprocess.rs` covers the same on the fake runtime.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::kubeletapi::KubeletApi;
use common::*;
use serde_json::Value;

const START: Duration = Duration::from_secs(60);

fn logs(api: &KubeletApi, agent: &Agent, pod: &str, query: &str) -> (u16, String) {
    api.get(&format!(
        "/containerLogs/default/{}/main{query}",
        agent.pod_name(pod)
    ))
}

/// The ID of container `main` of the pod with `uid`, while it runs.
fn main_container(uid: &str) -> String {
    cri_containers(uid)
        .into_iter()
        .find(|c| {
            c.metadata.as_ref().is_some_and(|m| m.name == "main")
                && c.state == proto::cri::ContainerState::ContainerRunning as i32
        })
        .expect("container main running")
        .id
}

fn exec(id: &str, cmd: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        let mut c = cri_client().await.unwrap();
        c.exec_sync(proto::cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner()
    });
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn each_option_and_the_kubelets_errors() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("clogs-opts", &[]);
    let api = agent.kubelet_api(Some(&pki.client));
    agent.write_manifest(
        "talk.yaml",
        &busybox_pod(
            "talk",
            "echo two >&2; sleep 1; echo one; head -c 40000 /dev/zero | tr '\\0' x; echo; echo three; sleep 3600",
            "",
        ),
    );
    agent.wait_running("talk", START);
    let long = "x".repeat(40000);
    let all = format!("two\none\n{long}\nthree\n");
    let body = agent.wait("the whole log", START, || {
        let (code, body) = logs(&api, &agent, "talk", "");
        (code == 200 && body.ends_with("three\n")).then_some(body)
    });
    assert_eq!(
        body, all,
        "the 40000-byte line (three records) comes back whole"
    );
    for (query, want) in [
        ("?tailLines=1", "three\n".to_string()),
        ("?tailLines=2", format!("{long}\nthree\n")),
        ("?tail=all", all.clone()),
        ("?limitBytes=5", "two\no".into()),
        ("?sinceSeconds=3600", all.clone()),
        ("?sinceTime=2999-01-01T00:00:00Z", String::new()),
    ] {
        let (code, body) = logs(&api, &agent, "talk", query);
        assert_eq!((code, body.len()), (200, want.len()), "{query}");
        assert_eq!(body, want, "{query}");
    }
    // Timestamps: one per line, RFC 3339 with nine fractional digits, in order.
    let (code, body) = logs(&api, &agent, "talk", "?timestamps=true");
    assert_eq!(code, 200);
    let mut times = Vec::new();
    let mut texts = Vec::new();
    for line in body.lines() {
        let (ts, text) = line.split_once(' ').expect("a timestamp and the line");
        assert!(
            ts.len() >= 30
                && ts.as_bytes()[19] == b'.'
                && ts[20..29].bytes().all(|b| b.is_ascii_digit()),
            "{ts}"
        );
        times.push(ts.parse::<jiff::Timestamp>().unwrap());
        texts.push(text.to_string());
    }
    assert_eq!(texts, ["two", "one", long.as_str(), "three"]);
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The kubelet's answers.
    let (code, body) = api.get("/containerLogs/default/nope/main");
    assert_eq!((code, body.as_str()), (404, "pod \"nope\" does not exist"));
    let pod = agent.pod_name("talk");
    let (code, body) = api.get(&format!("/containerLogs/default/{pod}/sidecar"));
    assert_eq!(
        (code, body),
        (
            404,
            format!("container \"sidecar\" not found in pod \"{pod}\"")
        )
    );
    let (code, body) = logs(&api, &agent, "talk", "?tailLines=ten");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("tailLines"), "{body}");
    let (code, body) = logs(&api, &agent, "talk", "?tailLines=-1");
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("tailLines: Invalid value: -1: must be greater than or equal to 0"),
        "{body}"
    );
    let (code, body) = logs(&api, &agent, "talk", "?previous=true");
    assert_eq!(
        (code, body),
        (
            400,
            format!("previous terminated container \"main\" in pod \"{pod}\" not found")
        )
    );
    // Without a client certificate: the authentication filter's 401, before the handler.
    assert_eq!(
        agent
            .kubelet_api(None)
            .get(&format!("/containerLogs/default/{pod}/main"))
            .0,
        401
    );
}

/// Reads a chunked response body as it comes: the raw bytes (chunk framing included).
fn read_until(s: &mut impl Read, raw: &mut Vec<u8>, want: &[u8]) {
    let mut buf = [0u8; 64 << 10];
    while !raw.windows(want.len()).any(|w| w == want) {
        let n = s.read(&mut buf).expect("the stream goes on");
        assert!(
            n > 0,
            "the stream ended before {:?}",
            String::from_utf8_lossy(want)
        );
        raw.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn follow_goes_across_rotations_until_the_container_exits() {
    if !require_runtime() {
        return;
    }
    const LINES: usize = 40_000;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         containerLogMaxSize: 1Mi\ncontainerLogMaxFiles: 3\n",
    )
    .unwrap();
    let (agent, pki) =
        Agent::start_secure("clogs-follow", &[&format!("--config={}", config.display())]);
    let api = agent.kubelet_api(Some(&pki.client));
    // About 6 MB of log once the CRI prefixes are added: several 1 MiB rotations. The writer
    // waits for /tmp/go, so the follower is in place before the first line.
    let pad = "p".repeat(100);
    let manifest = busybox_pod(
        "writer",
        &format!(
            "echo ready; while [ ! -e /tmp/go ]; do sleep 0.1; done; \
             i=0; while [ $i -lt {LINES} ]; do echo \"line $i {pad}\"; i=$((i+1)); done; echo done"
        ),
        "",
    )
    .replace("spec:\n", "spec:\n  restartPolicy: Never\n");
    agent.write_manifest("writer.yaml", &manifest);
    let pod = agent.wait_running("writer", START);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let id = main_container(&uid);
    let log_dir = Path::new("/var/log/pods")
        .join(format!("default_{}_{uid}", agent.pod_name("writer")))
        .join("main");

    let mut s = api.connect().unwrap();
    let path = format!(
        "/containerLogs/default/{}/main?follow=true",
        agent.pod_name("writer")
    );
    s.write_all(api.head("GET", &path, &[], 0).as_bytes())
        .unwrap();
    s.flush().unwrap();
    let mut raw = Vec::new();
    read_until(&mut s, &mut raw, b"ready\n");
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    exec(&id, &["touch", "/tmp/go"]);
    // The stream ends by itself once the container has exited and its log is read.
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the followed log: {e}\n{}", agent.log_tail()),
    }
    raw.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (_, body) = text.split_once("\r\n\r\n").unwrap();
    let body = dechunk(body);
    let got: Vec<&str> = body.lines().collect();
    assert_eq!(got.first(), Some(&"ready"));
    assert_eq!(got.last(), Some(&"done"), "{}", agent.log_tail());
    let numbers: Vec<usize> = got[1..got.len() - 1]
        .iter()
        .map(|l| {
            let rest = l.strip_prefix("line ").unwrap_or_else(|| panic!("{l:?}"));
            let (n, p) = rest.split_once(' ').unwrap();
            assert_eq!(p, pad, "{l:?}");
            n.parse().unwrap()
        })
        .collect();
    let missing = (0..LINES).filter(|i| !numbers.contains(i)).count();
    assert_eq!(
        numbers,
        (0..LINES).collect::<Vec<_>>(),
        "every line once, in order ({missing} missing)"
    );
    // The log was rotated meanwhile (more than once: 1 MiB files).
    let rotated: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("0.log."))
        .collect();
    assert!(!rotated.is_empty(), "no rotation happened: {rotated:?}");
    let live = std::fs::metadata(log_dir.join("0.log")).unwrap().len();
    assert!(
        live < 6 << 20,
        "the live log holds only the last part: {live} bytes"
    );
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[test]
fn previous_reads_the_instance_before_a_restart() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("clogs-prev", &[]);
    let api = agent.kubelet_api(Some(&pki.client));
    // The first instance fails at once; the next one (after the 10 s crash-loop backoff) stays
    // (an emptyDir outlives a container restart).
    let manifest = busybox_pod(
        "flaky",
        "echo \"instance $(cat /proc/sys/kernel/random/uuid)\"; \
         if [ -e /data/once ]; then sleep 3600; else touch /data/once; sleep 1; exit 1; fi",
        "",
    )
    .replace(
        "    command:",
        "    volumeMounts:\n    - name: data\n      mountPath: /data\n    command:",
    )
    .replace(
        "spec:\n",
        "spec:\n  volumes:\n  - name: data\n    emptyDir: {}\n",
    );
    agent.write_manifest("flaky.yaml", &manifest);
    agent.wait_running("flaky", START);
    let restarted = |p: &Value| {
        let c = &p["status"]["containerStatuses"][0];
        c["restartCount"].as_i64().unwrap_or(0) >= 1
            && c["state"]["running"].is_object()
            && c["lastState"]["terminated"]["containerID"].is_string()
    };
    agent.wait("a restart", Duration::from_secs(90), || {
        agent.pod("flaky").filter(restarted)
    });
    let (code, previous) = logs(&api, &agent, "flaky", "?previous=true");
    assert_eq!(code, 200, "{previous}");
    assert!(
        previous.starts_with("instance ") && previous.lines().count() == 1,
        "{previous:?}"
    );
    let current = agent.wait("the new instance's line", START, || {
        let (code, body) = logs(&api, &agent, "flaky", "");
        (code == 200 && body.starts_with("instance ")).then_some(body)
    });
    assert_ne!(current, previous, "two instances, two logs");
}

/// `kubectl logs` through the test API server, which proxies `pods/log` to the kubelet's
/// `/containerLogs` as kube-apiserver does: `--tail`, and `-f` streaming until the container
/// exits.
#[test]
fn kubectl_logs_and_logs_follow_through_the_api_server() {
    if !require_runtime() {
        return;
    }
    let cluster = common::apiserver::Cluster::start();
    let ca = format!("--client-ca-file={}", cluster.api.ca_cert().display());
    let agent = cluster.agent(
        "clogs-kubectl",
        &[
            &ca,
            "--authorization-mode=AlwaysAllow",
            "--node-ip=127.0.0.1",
        ],
    );
    cluster.wait_node_ready(&agent.node);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: talker\n  namespace: default\nspec:\n  nodeName: {node}\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  automountServiceAccountToken: false\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [\"sh\", \"-c\", \"echo one; echo two; sleep 4; echo three; sleep 1\"]\n",
        node = agent.node,
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &pod);
    assert!(out.success(), "{}", out.stderr);
    cluster.wait("talker running", Duration::from_secs(120), || {
        let p = cluster.get_json(&["pod", "talker"])?;
        (p["status"]["phase"] == "Running").then_some(())
    });
    // Follow from the start: all three lines, the last written seconds later, then the stream
    // ends with the container.
    let out = cluster.kubectl(&["logs", "-f", "talker"]);
    assert!(out.success(), "{}\n{}", out.stderr, agent.log_tail());
    assert_eq!(out.stdout, "one\ntwo\nthree\n");
    let out = cluster.kubectl(&["logs", "--tail=1", "talker"]);
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "three\n");
    let out = cluster.kubectl(&["logs", "talker", "-c", "nope"]);
    assert!(!out.success());
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
}
