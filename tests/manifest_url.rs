//! The manifest URL source (`--manifest-url`) on the real containerd: a URL serving a pod list
//! runs its pods with the `http` source identity and the configured headers; an error status
//! and then a malformed document keep the last good set running (and are logged naming the URL);
//! a changed list adds and removes pods; an empty body empties the set.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const START: Duration = Duration::from_secs(60);

/// What the test server answers next: (status line, body); the request heads it saw.
#[derive(Default)]
struct Served {
    reply: (String, String),
    heads: Vec<String>,
}

/// A one-thread HTTP/1.1 server answering every request with the current reply.
fn serve(state: Arc<Mutex<Served>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let (status, body) = {
                let mut s = state.lock().unwrap();
                s.heads.push(head);
                s.reply.clone()
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn list(pods: &[&str]) -> String {
    let items: Vec<String> = pods
        .iter()
        .map(|name| {
            format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"terminationGracePeriodSeconds":2,"containers":[{{"name":"main","image":"{BUSYBOX}","command":["sh","-c","exec sleep 3600"]}}]}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"apiVersion":"v1","kind":"PodList","items":[{}]}}"#,
        items.join(",")
    )
}

fn set(state: &Arc<Mutex<Served>>, status: &str, body: String) {
    state.lock().unwrap().reply = (status.to_string(), body);
}

#[test]
fn a_manifest_url_list_runs_survives_errors_and_follows_changes() {
    if !require_runtime() {
        return;
    }
    let state = Arc::new(Mutex::new(Served::default()));
    set(&state, "200 OK", list(&["alpha", "beta"]));
    let port = serve(state.clone());
    let url = format!("http://127.0.0.1:{port}/pods");
    let agent = Agent::start_with(
        "url",
        &[
            "--manifest-url",
            &url,
            "--manifest-url-header",
            "X-Token:abc,X-Other:1",
            "--http-check-frequency",
            "1s",
        ],
    );
    let alpha = agent.wait_running("alpha", START);
    agent.wait_running("beta", START);
    assert_eq!(
        alpha["metadata"]["annotations"]["kubernetes.io/config.source"],
        "http"
    );
    let alpha_uid = alpha["metadata"]["uid"].as_str().unwrap().to_string();
    {
        let s = state.lock().unwrap();
        let head = s.heads.last().unwrap().to_lowercase();
        assert!(head.starts_with("get /pods http/1.1"), "{head}");
        assert!(head.contains("x-token: abc"), "{head}");
        assert!(head.contains("x-other: 1"), "{head}");
    }

    // An error status, then a malformed document: the pods keep running, the reason is logged.
    set(&state, "500 Internal Server Error", "boom".into());
    agent.wait("the 500 logged", Duration::from_secs(20), || {
        agent
            .log_text()
            .contains(&format!("{url}: 500 Internal Server Error"))
            .then_some(())
    });
    set(&state, "200 OK", "{\"apiVersion\":\"v1\",\"kind\":\"PodList\",\"items\":[{\"metadata\":{\"name\":\"x\"},\"spec\":{\"containers\":[{\"name\":\"Bad_Name\",\"image\":\"i\"}]}}]}".into());
    agent.wait("the invalid list logged", Duration::from_secs(20), || {
        agent
            .log_text()
            .contains(&format!("{url} items[0]: invalid pod"))
            .then_some(())
    });
    let still = agent.wait_running("alpha", Duration::from_secs(5));
    assert_eq!(still["metadata"]["uid"], alpha_uid.as_str());
    assert!(agent.pod("beta").is_some());
    assert_eq!(
        cri_sandboxes(&alpha_uid).len(),
        1,
        "no restart of the sandbox"
    );

    // A changed list: beta goes, gamma comes, alpha is untouched.
    set(&state, "200 OK", list(&["alpha", "gamma"]));
    agent.wait_running("gamma", START);
    agent.wait("beta removed", START, || {
        agent.pod("beta").is_none().then_some(())
    });
    let alpha_now = agent.pod("alpha").unwrap();
    assert_eq!(alpha_now["metadata"]["uid"], alpha_uid.as_str());
    assert_eq!(
        alpha_now["status"]["containerStatuses"][0]["restartCount"],
        0
    );

    // An empty body is an empty set: every pod of the source goes.
    set(&state, "200 OK", String::new());
    agent.wait("all URL pods removed", START, || {
        (agent.pod("alpha").is_none() && agent.pod("gamma").is_none()).then_some(())
    });
    agent.wait("alpha's sandbox gone", START, || {
        cri_sandboxes(&alpha_uid).is_empty().then_some(())
    });
    assert!(agent
        .log_text()
        .contains(&format!("zero-length data received from {url}")));
}

#[test]
fn a_manifest_url_that_is_not_http_fails_at_start_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
        .args([
            "--manifest-url",
            "ftp://example/pods",
            "--root-dir",
            "/nonexistent-kubelet-rs-test",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "flag --manifest-url: invalid value \"ftp://example/pods\": must be an http:// or https:// URL"
        ),
        "{err}"
    );
}
