//! The streaming endpoints of the kubelet API (`/exec`, `/attach`, `/portForward`, `/run`)
//! against the real containerd, through the authenticated port with a client certificate:
//! exec over websocket `v5.channel.k8s.io` (translated by the kubelet to SPDY, with stdin ended
//! by the v5 CLOSE signal) and `v4.channel.k8s.io` (passed through to containerd), exec over
//! SPDY/3.1, a port forward over SPDY and over the websocket tunnel
//! (`SPDY/3.1+portforward.k8s.io`), `/run`, and the kubelet's error answers.
//!
//! The clients here speak the wire formats with the kubelet's own framing code
//! (`server::streaming::{websocket, spdy}`); containerd (Go) is the peer that checks them on
//! every pass-through test, and kubectl the one on the API-server tests.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bytes::BytesMut;
use common::apiserver::Cluster;
use common::streaming::{
    fill, rest, upgrade, ws_headers, ws_read_all, ws_send, Session, SpdyClient,
};
use common::{busybox_pod, require_runtime, Agent};
use kubelet_rs::server::streaming::spdy::{self, Frame};
use kubelet_rs::server::streaming::websocket::{self, Message};
use serde_json::Value;

fn exec_path(pod: &str, cmd: &[&str], streams: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for c in cmd {
        q.append_pair("command", c);
    }
    format!("/exec/default/{pod}/main?{}&{streams}", q.finish())
}

/// Exits with `code` after writing to stdout and stderr.
const SCRIPT: &[&str] = &["sh", "-c", "echo out; echo err >&2; exit 3"];

fn assert_exit_3(s: &Session) {
    assert_eq!(s.text(1), "out\n");
    assert_eq!(s.text(2), "err\n");
    let st = s.status();
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["reason"], "ExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["message"], "3", "{st}");
}

#[test]
fn exec_over_websockets_v5_and_v4() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("kexec-ws", &[]);
    agent.write_manifest("app.yaml", &busybox_pod("app", "sleep 3600", ""));
    let pod = agent.wait_running("app", Duration::from_secs(90))["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let api = agent.kubelet_api(Some(&pki.client));

    for protocol in ["v5.channel.k8s.io", "v4.channel.k8s.io"] {
        let path = exec_path(&pod, SCRIPT, "output=1&error=1");
        // Websocket handshakes are GETs (containerd's server refuses anything else).
        let (code, head, mut s) = upgrade(&api, "GET", &path, &ws_headers(protocol));
        assert_eq!(code, 101, "{protocol}: {head}{}", rest(&mut s));
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("sec-websocket-protocol: {protocol}")),
            "{head}"
        );
        assert!(
            lower.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        let session = ws_read_all(&mut s);
        assert_exit_3(&session);
        // A command that succeeds: a Success status.
        let path = exec_path(&pod, &["echo", "hi"], "output=1");
        let (code, _, mut s) = upgrade(&api, "GET", &path, &ws_headers(protocol));
        assert_eq!(code, 101);
        let session = ws_read_all(&mut s);
        assert_eq!(session.text(1), "hi\n", "{protocol}");
        assert_eq!(session.status()["status"], "Success", "{protocol}");
    }

    // v5 only: stdin ends with the CLOSE signal, so `cat` sees EOF and exits.
    let path = exec_path(&pod, &["cat"], "input=1&output=1");
    let (code, _, mut s) = upgrade(&api, "GET", &path, &ws_headers("v5.channel.k8s.io"));
    assert_eq!(code, 101);
    ws_send(&mut s, b"\x00hello ");
    ws_send(&mut s, b"\x00world\n");
    ws_send(&mut s, &[255, 0]);
    let session = ws_read_all(&mut s);
    assert_eq!(session.text(1), "hello world\n");
    assert_eq!(session.status()["status"], "Success");
    assert_eq!(session.close, Some(Some((1000, String::new()))));

    // The client's first choice decides: v4 listed before v5 is passed through as v4.
    let path = exec_path(&pod, &["echo", "x"], "output=1");
    let (code, head, mut s) = upgrade(
        &api,
        "GET",
        &path,
        &ws_headers("v4.channel.k8s.io, v5.channel.k8s.io"),
    );
    assert_eq!(code, 101);
    assert!(head.contains("v4.channel.k8s.io"), "{head}");
    assert_eq!(ws_read_all(&mut s).text(1), "x\n");

    // attach over v5 to a container without stdin: its output from now on.
    agent.write_manifest(
        "talker.yaml",
        &busybox_pod("talker", "while true; do echo tick; sleep 0.2; done", ""),
    );
    let talker = agent.wait_running("talker", Duration::from_secs(90))["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/attach/default/{talker}/main?output=1&error=1");
    let (code, head, mut s) = upgrade(&api, "GET", &path, &ws_headers("v5.channel.k8s.io"));
    assert_eq!(code, 101, "{head}{}", rest(&mut s));
    let mut dec = websocket::Decoder::new(false, 1 << 20);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("tick\n") {
        match dec.decode(&mut buf).unwrap() {
            Some(Message::Binary(m)) if m.first() == Some(&1) => out.extend_from_slice(&m[1..]),
            Some(_) => {}
            None => assert!(fill(&mut s, &mut buf), "attach ended early: {out:?}"),
        }
    }
}

#[test]
fn exec_over_spdy_and_run() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("kexec-spdy", &[]);
    agent.write_manifest("app.yaml", &busybox_pod("app", "sleep 3600", ""));
    let pod = agent.wait_running("app", Duration::from_secs(90))["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let api = agent.kubelet_api(Some(&pki.client));

    let path = exec_path(&pod, SCRIPT, "output=1&error=1");
    let (code, head, s) = upgrade(
        &api,
        "POST",
        &path,
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    );
    assert_eq!(code, 101, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    let mut c = SpdyClient::new(s, false);
    c.open(1, &[("streamtype", "error")]);
    c.open(3, &[("streamtype", "stdout")]);
    c.open(5, &[("streamtype", "stderr")]);
    let mut data: [Vec<u8>; 6] = Default::default();
    let mut replies = 0;
    while let Some(f) = c.next() {
        match f {
            Frame::Data {
                stream, data: d, ..
            } => data[stream as usize].extend_from_slice(&d),
            Frame::SynReply { .. } => replies += 1,
            _ => {}
        }
    }
    assert_eq!(replies, 3);
    assert_eq!(String::from_utf8_lossy(&data[3]), "out\n");
    assert_eq!(String::from_utf8_lossy(&data[5]), "err\n");
    let st: Value = serde_json::from_slice(&data[1]).unwrap();
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["message"], "3", "{st}");

    // /run: ExecSync, the output as the body; a failing command is a 500 naming its exit.
    let r = api
        .request(
            "POST",
            &format!("/run/default/{pod}/main?cmd=echo%20ran%20here"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ran here\n"));
    let r = api
        .request(
            "POST",
            &format!("/run/default/{pod}/main?cmd=false"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "command 'false' exited with 1: ")
    );
    let r = api
        .request(
            "GET",
            &format!("/run/default/{pod}/main?cmd=true"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 405, "/run is POST only");

    // The kubelet's refusals.
    let r = api
        .request("POST", "/run/default/nosuchpod/main?cmd=true", &[], b"")
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (404, "pod does not exist"));
    let r = api
        .request(
            "GET",
            &format!("/exec/default/{pod}/main?command=true"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "you must specify at least 1 of stdin, stdout, stderr")
    );
    let r = api
        .request(
            "GET",
            &format!("/exec/default/{pod}/nosuch?command=true&output=1"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "container not found (\"nosuch\")")
    );
    let r = api
        .request(
            "GET",
            &format!("/exec/default/{pod}/main?command=true&output=1"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "upgrade request required\n")
    );
    let r = api
        .request(
            "GET",
            &format!("/exec/default/{pod}/wrong-uid/main?command=true&output=1"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 500, "a UID that is not the pod's: {}", r.text());
    let r = api
        .request(
            "GET",
            &format!("/portForward/default/{pod}/wrong-uid"),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (404, "pod not found"));
    let (code, _, mut s) = upgrade(
        &api,
        "GET",
        &format!("/portForward/default/{pod}"),
        &ws_headers("v4.channel.k8s.io"),
    );
    assert_eq!(
        (code, rest(&mut s).as_str()),
        (400, "query parameter \"port\" is required")
    );
}

/// Opens one port-forward pair (error and data streams) to `port` and sends `request` on the
/// data stream; returns what comes back on it.
fn forward_once(c: &mut SpdyClient, port: &str, request: &[u8]) -> String {
    c.open(
        1,
        &[("streamtype", "error"), ("port", port), ("requestid", "0")],
    );
    c.open(
        3,
        &[("streamtype", "data"), ("port", port), ("requestid", "0")],
    );
    let mut replies = 0;
    let mut sent = false;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    while let Some(f) = c.next() {
        match f {
            Frame::SynReply { .. } => {
                replies += 1;
                if replies == 2 && !sent {
                    sent = true;
                    c.send(&Frame::Data {
                        stream: 3,
                        flags: 0,
                        data: request.to_vec(),
                    });
                }
            }
            Frame::Data {
                stream: 3,
                data,
                flags,
            } => {
                out.extend_from_slice(&data);
                if flags & spdy::FLAG_FIN != 0 {
                    break;
                }
            }
            Frame::Data {
                stream: 1, data, ..
            } => errors.extend_from_slice(&data),
            Frame::RstStream { stream: 3, .. } => break,
            _ => {}
        }
    }
    assert!(
        errors.is_empty(),
        "port-forward error: {}",
        String::from_utf8_lossy(&errors)
    );
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn port_forward_over_spdy_and_the_websocket_tunnel() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("kexec-pf", &[]);
    agent.write_manifest(
        "web.yaml",
        &busybox_pod(
            "web",
            "mkdir -p /www && echo hello-from-the-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
            "",
        ),
    );
    let pod = agent.wait_running("web", Duration::from_secs(90))["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let api = agent.kubelet_api(Some(&pki.client));
    let request = b"GET /index.html HTTP/1.0\r\n\r\n";

    let (code, head, s) = upgrade(
        &api,
        "POST",
        &format!("/portForward/default/{pod}"),
        &[
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "portforward.k8s.io"),
        ],
    );
    assert_eq!(code, 101, "{head}");
    let got = forward_once(&mut SpdyClient::new(s, false), "8080", request);
    assert!(
        got.starts_with("HTTP/1.") && got.ends_with("hello-from-the-pod\n"),
        "{got:?}"
    );

    let (code, head, s) = upgrade(
        &api,
        "GET",
        &format!("/portForward/default/{pod}"),
        &ws_headers("SPDY/3.1+portforward.k8s.io"),
    );
    assert_eq!(code, 101, "{head}");
    assert!(head.contains("SPDY/3.1+portforward.k8s.io"), "{head}");
    let got = forward_once(&mut SpdyClient::new(s, true), "8080", request);
    assert!(got.ends_with("hello-from-the-pod\n"), "{got:?}");
}

/// kubectl v1.32 through the test API server, which passes each upgrade through to the
/// kubelet as kube-apiserver does: `exec` (websocket v5, the exit code), `exec -i` (stdin
/// ended by v5 CLOSE), `exec -it` under a pseudo-terminal, `cp` both ways (tar over exec),
/// `attach`, and `port-forward` (the websocket tunnel; the agent's log shows kubectl did not
/// fall back to SPDY).
#[test]
fn kubectl_exec_cp_and_port_forward() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let ca = format!("--client-ca-file={}", cluster.api.ca_cert().display());
    // The test agents serve on 127.0.0.1: the node's InternalIP says so, for the API server.
    let agent = cluster.agent(
        "kexec-kubectl",
        &[
            &ca,
            "--authorization-mode=AlwaysAllow",
            "--node-ip=127.0.0.1",
        ],
    );
    cluster.wait_node_ready(&agent.node);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: shell\n  namespace: default\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sh\", \"-c\", \"mkdir -p /www && echo hello-through-kubectl > /www/index.html && httpd -p 8080 -h /www && while true; do echo tick; sleep 0.5; done\"]\n",
        node = agent.node,
        image = common::BUSYBOX,
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &pod);
    assert!(out.success(), "{}", out.stderr);
    cluster.wait("pod shell running", Duration::from_secs(120), || {
        let p = cluster.get_json(&["pod", "shell"])?;
        (p["status"]["phase"] == "Running").then_some(())
    });

    let out = cluster.kubectl(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        out.status,
        Some(3),
        "stdout {:?} stderr {:?}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err\n"), "{}", out.stderr);
    assert!(
        out.stderr.contains("command terminated with exit code 3"),
        "{}",
        out.stderr
    );

    let out = cluster.kubectl_stdin(&["exec", "-i", "shell", "--", "cat"], "piped through\n");
    assert!(out.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "piped through\n");

    // exec -it under a pseudo-terminal (script(1)): a TTY in the container, the resize
    // stream open, typed input answered.
    let cmd = format!(
        "{} --kubeconfig {} exec -it shell -- sh",
        testkit::harness::kubectl_path().display(),
        cluster.api.admin_kubeconfig().display()
    );
    let mut script = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    {
        let mut stdin = script.stdin.take().unwrap();
        stdin
            .write_all(b"tty; echo answer=$((6*7)); exit 0\n")
            .unwrap();
        // script(1) ends the session at its stdin's EOF: keep it open until sh exits.
        let out = wait_output(&mut script, &mut stdin);
        assert!(out.contains("answer=42"), "{out}");
        assert!(
            out.contains("/dev/pts/"),
            "a terminal in the container: {out}"
        );
    }

    // cp in (tar xf in the container, stdin ended by CLOSE), then out, and compare.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("payload.txt");
    // About 1.2 MB: well past a SPDY stream window of 64 KiB each way.
    let content: String = (0..120_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &content).unwrap();
    let out = cluster.kubectl(&["cp", local.to_str().unwrap(), "shell:/tmp/payload.txt"]);
    assert!(out.success(), "cp in: {}", out.stderr);
    let out = cluster.kubectl(&["exec", "shell", "--", "wc", "-c", "/tmp/payload.txt"]);
    assert_eq!(
        out.stdout.split_whitespace().next(),
        Some(content.len().to_string().as_str())
    );
    let back = dir.path().join("back.txt");
    let out = cluster.kubectl(&["cp", "shell:/tmp/payload.txt", back.to_str().unwrap()]);
    assert!(out.success(), "cp out: {}", out.stderr);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), content);

    // attach: the main process's output, from now on (v5 too).
    let mut attach = cluster
        .api
        .kubectl_command()
        .args(["attach", "shell"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = attach.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("tick\ntick\n") {
        match stdout.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(
        String::from_utf8_lossy(&seen).contains("tick\ntick\n"),
        "kubectl attach: {:?}",
        String::from_utf8_lossy(&seen)
    );

    // port-forward: a local port to the pod's httpd.
    let port = common::free_port();
    let mut pf = cluster
        .api
        .kubectl_command()
        .args(["port-forward", "pod/shell", &format!("{port}:8080")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let got = cluster.wait("port-forward answers", Duration::from_secs(60), || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.contains("hello-through-kubectl").then_some(body)
    });
    assert!(got.starts_with("HTTP/1."), "{got}");
    let _ = pf.kill();
    let _ = pf.wait();
    // kubectl 1.32 took the websocket paths, not its SPDY fallback.
    let log = agent.log_text();
    assert!(
        log.contains("streaming: port-forward websocket tunnel"),
        "{}",
        agent.log_tail()
    );
    assert!(log.contains("streaming: websocket v5 translated to SPDY"));
    let out = cluster.kubectl(&["delete", "pod", "shell", "--wait=false"]);
    assert!(out.success(), "{}", out.stderr);
}

/// Reads `child`'s stdout until it exits (at most 60 s), holding `stdin` open meanwhile.
fn wait_output(child: &mut std::process::Child, _stdin: &mut std::process::ChildStdin) -> String {
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
    reader.join().unwrap()
}
