//! API-server mode for the runtime tests: a `test-apiserver` (testkit) per test and
//! kubelet-rs agents joined to it with `--kubeconfig` (a node client certificate, as a kubelet
//! that already joined the cluster has). `kubectl` drives the cluster through
//! [`Cluster::kubectl`]. Dropping the cluster stops the server and removes its data directory;
//! each agent cleans up its own pods as in standalone tests.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::{KubectlOutput, Options, TestApiServer};

use super::Agent;

/// A test API server for one test.
pub struct Cluster {
    pub api: TestApiServer,
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// A server started with extra `test-apiserver` flags.
    pub fn start_with(args: &[&str]) -> Cluster {
        let kubectl = testkit::harness::kubectl_path();
        assert!(
            kubectl.exists(),
            "API-server tests drive the real kubectl at {}, which is missing",
            kubectl.display()
        );
        let api = TestApiServer::start_with(Options {
            binary: None,
            args: args.iter().map(|s| s.to_string()).collect(),
        })
        .expect("test-apiserver starts");
        Cluster { api }
    }

    /// A kubelet-rs agent joined to this cluster with a node kubeconfig for its node name.
    pub fn agent(&self, test: &str, extra: &[&str]) -> Agent {
        let mut a = self.prepare_agent(test, extra);
        a.spawn();
        a
    }

    /// [`Cluster::agent`] without starting it.
    pub fn prepare_agent(&self, test: &str, extra: &[&str]) -> Agent {
        let mut a = Agent::prepare(test, extra);
        let kubeconfig = self.api.node_kubeconfig(&a.node).expect("node kubeconfig");
        a.extra_args
            .push(format!("--kubeconfig={}", kubeconfig.display()));
        a
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        self.api.kubectl(args)
    }

    /// `kubectl` with `stdin` (for `apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> KubectlOutput {
        self.api.kubectl_with_stdin(args, Some(stdin))
    }

    /// `kubectl get <what> -o json`, or None when it fails (not found, say).
    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&a);
        if !out.success() {
            return None;
        }
        serde_json::from_str(&out.stdout).ok()
    }

    /// Requests user `system:node:<node>` made with `verb` on `resource` (subresources
    /// included), from the test API server's `/metrics`.
    pub fn node_requests(&mut self, node: &str, verb: &str, resource: &str) -> u64 {
        let (code, body) = self.api.get("/metrics").expect("GET /metrics");
        assert_eq!(code, 200, "{body}");
        let want = [
            format!("user=\"system:node:{node}\""),
            format!("verb=\"{verb}\""),
            format!("resource=\"{resource}\""),
        ];
        body.lines()
            .filter_map(|l| l.strip_prefix("testkit_apiserver_requests_total{"))
            .filter_map(|l| l.split_once("} "))
            .filter(|(labels, _)| want.iter().all(|w| labels.split(',').any(|kv| kv == w)))
            .map(|(_, n)| n.trim().parse::<u64>().unwrap_or(0))
            .sum()
    }

    /// Waits until the agent of `node` has registered its Node and reports it Ready; returns it.
    pub fn wait_node_ready(&self, node: &str) -> Value {
        self.wait(
            &format!("node {node} registered and Ready"),
            Duration::from_secs(90),
            || {
                let n = self.get_json(&["node", node])?;
                let ready = n["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                ready.then_some(n)
            },
        )
    }

    /// Polls `check` every 200 ms until it returns Some; panics after `timeout` naming `what`,
    /// with the server's log tail.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() >= deadline {
                let log = self.api.log();
                let lines: Vec<&str> = log.lines().collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- test-apiserver log ---\n{}",
                    lines[lines.len().saturating_sub(40)..].join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
