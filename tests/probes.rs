//! Probes on the real containerd: an httpGet readiness probe against busybox `httpd` turns the
//! pod Ready and unready again when its page goes; an exec liveness probe that starts failing
//! restarts the container; a startup probe holds liveness back until it passes; tcpSocket
//! probes; a failing postStart hook kills its container.
//!
//! What a probe sees is steered from the host through a hostPath directory the test owns (the
//! page httpd serves, the files exec probes test), so nothing depends on timing: every wait polls
//! the agent's `/pods` with a generous timeout.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

fn manifest(name: &str, containers: Value, volumes: Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": containers,
            "volumes": volumes,
        }
    })
    .to_string()
}

fn host_dir(dir: &Path) -> Value {
    json!([{"name": "ctl", "hostPath": {"path": dir.to_str().unwrap(), "type": "Directory"}}])
}

fn condition(pod: &Value, t: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

fn ctl_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kubelet-rs-probe-ctl-")
        .tempdir()
        .unwrap()
}

#[test]
fn http_readiness_turns_ready_then_unready_when_the_page_goes() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("readiness");
    let ctl = ctl_dir();
    std::fs::write(ctl.path().join("index.html"), "ok\n").unwrap();
    agent.write_manifest(
        "web.yaml",
        &manifest(
            "web",
            json!([{
                "name": "httpd",
                "image": BUSYBOX,
                "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "volumeMounts": [{"name": "ctl", "mountPath": "/www"}],
                "readinessProbe": {
                    "httpGet": {"path": "/index.html", "port": "http",
                                "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                    "periodSeconds": 1, "failureThreshold": 1
                }
            }]),
            host_dir(ctl.path()),
        ),
    );
    let pod = agent.wait("pod Ready", WAIT, || {
        let p = agent.pod("web")?;
        (condition(&p, "Ready") == "True").then_some(p)
    });
    assert_eq!(condition(&pod, "ContainersReady"), "True");
    assert_eq!(container(&pod, "httpd")["ready"], true);
    assert_eq!(container(&pod, "httpd")["started"], true);

    std::fs::remove_file(ctl.path().join("index.html")).unwrap();
    let pod = agent.wait("pod unready after the page went", WAIT, || {
        let p = agent.pod("web")?;
        (condition(&p, "Ready") == "False").then_some(p)
    });
    assert_eq!(container(&pod, "httpd")["ready"], false);
    assert!(
        container(&pod, "httpd")["state"]["running"].is_object(),
        "readiness never restarts: {pod}"
    );
    assert_eq!(container(&pod, "httpd")["restartCount"], 0);
    assert!(agent
        .log_text()
        .contains("Readiness probe failed: HTTP probe failed with statuscode: 404"));

    // The page comes back: Ready again.
    std::fs::write(ctl.path().join("index.html"), "ok\n").unwrap();
    agent.wait("pod Ready again", WAIT, || {
        let p = agent.pod("web")?;
        (condition(&p, "Ready") == "True").then_some(())
    });
    agent.remove_manifest("web.yaml");
    agent.wait("pod removed", WAIT, || {
        agent.pod("web").is_none().then_some(())
    });
}

#[test]
fn failing_exec_liveness_restarts_the_container() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("liveness");
    let ctl = ctl_dir();
    std::fs::write(ctl.path().join("healthy"), "").unwrap();
    agent.write_manifest(
        "live.yaml",
        &manifest(
            "live",
            json!([{
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", "exec sleep 3600"],
                "volumeMounts": [{"name": "ctl", "mountPath": "/ctl"}],
                "livenessProbe": {
                    "exec": {"command": ["cat", "/ctl/healthy"]},
                    "periodSeconds": 1, "failureThreshold": 2,
                    "terminationGracePeriodSeconds": 1
                }
            }]),
            host_dir(ctl.path()),
        ),
    );
    let pod = agent.wait_running("live", WAIT);
    let first_id = container(&pod, "app")["containerID"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(ctl.path().join("healthy")).unwrap();
    let pod = agent.wait("container restarted by liveness", WAIT, || {
        let p = agent.pod("live")?;
        (container(&p, "app")["restartCount"].as_i64()? >= 1).then_some(p)
    });
    // Healthy again so it stays up.
    std::fs::write(ctl.path().join("healthy"), "").unwrap();
    let c = container(&pod, "app");
    assert_ne!(c["containerID"].as_str(), Some(first_id.as_str()));
    assert!(c["lastState"]["terminated"].is_object(), "{c}");
    let log = agent.log_text();
    assert!(
        log.contains(
            "Liveness probe failed: cat: can't open '/ctl/healthy': No such file or directory"
        ),
        "{}",
        agent.log_tail()
    );
    assert!(log.contains("Container app failed liveness probe"));
    let pod = agent.wait_running("live", WAIT);
    assert_eq!(pod["status"]["phase"], "Running");
}

#[test]
fn startup_probe_holds_liveness_back_until_it_passes() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("startup");
    let ctl = ctl_dir();
    agent.write_manifest(
        "slow.yaml",
        &manifest(
            "slow",
            json!([{
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", "exec sleep 3600"],
                "volumeMounts": [{"name": "ctl", "mountPath": "/ctl"}],
                "startupProbe": {
                    "exec": {"command": ["sh", "-c", "echo x >> /ctl/startup-ran; test -f /ctl/started"]},
                    "periodSeconds": 1, "failureThreshold": 600
                },
                // Would fail (and restart the container) if it ran before startup passed.
                "livenessProbe": {
                    "exec": {"command": ["sh", "-c", "echo x >> /ctl/liveness-ran; test -f /ctl/started"]},
                    "periodSeconds": 1, "failureThreshold": 1
                },
                "readinessProbe": {
                    "exec": {"command": ["true"]},
                    "periodSeconds": 1
                }
            }]),
            host_dir(ctl.path()),
        ),
    );
    let ran = |f: &str| {
        std::fs::read_to_string(ctl.path().join(f))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    agent.wait("startup probe ran three times", WAIT, || {
        (ran("startup-ran") >= 3).then_some(())
    });
    let pod = agent.pod("slow").unwrap();
    let c = container(&pod, "app");
    assert_eq!(c["started"], false, "{c}");
    assert_eq!(c["ready"], false, "{c}");
    assert_eq!(condition(&pod, "Ready"), "False");
    assert_eq!(ran("liveness-ran"), 0, "liveness must wait for startup");

    std::fs::write(ctl.path().join("started"), "").unwrap();
    let pod = agent.wait("started and ready", WAIT, || {
        let p = agent.pod("slow")?;
        (container(&p, "app")["started"] == true && condition(&p, "Ready") == "True").then_some(p)
    });
    agent.wait("liveness probing after startup", WAIT, || {
        (ran("liveness-ran") >= 1).then_some(())
    });
    let startups = ran("startup-ran");
    agent.wait("liveness probed again", WAIT, || {
        (ran("liveness-ran") >= 3).then_some(())
    });
    assert_eq!(ran("startup-ran"), startups, "startup stops once passed");
    assert_eq!(container(&pod, "app")["restartCount"], 0);
}

#[test]
fn tcp_socket_probes() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("tcp");
    let ctl = ctl_dir();
    agent.write_manifest(
        "tcp.yaml",
        &manifest(
            "tcp",
            json!([{
                "name": "server",
                "image": BUSYBOX,
                "command": ["httpd", "-f", "-p", "9000", "-h", "/ctl"],
                "volumeMounts": [{"name": "ctl", "mountPath": "/ctl"}],
                "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1}
            }, {
                "name": "closed",
                "image": BUSYBOX,
                "command": ["sh", "-c", "exec sleep 3600"],
                "readinessProbe": {"tcpSocket": {"port": 9001}, "periodSeconds": 1}
            }]),
            host_dir(ctl.path()),
        ),
    );
    let pod = agent.wait("the listening container ready", WAIT, || {
        let p = agent.pod("tcp")?;
        (container(&p, "server")["ready"] == true).then_some(p)
    });
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    agent.wait("the closed port reported", WAIT, || {
        agent
            .log_text()
            .contains(&format!(
                "Readiness probe failed: dial tcp {ip}:9001: connect: connection refused"
            ))
            .then_some(())
    });
    let pod = agent.pod("tcp").unwrap();
    assert_eq!(container(&pod, "closed")["ready"], false);
    assert_eq!(condition(&pod, "Ready"), "False");
}

#[test]
fn failing_post_start_hook_kills_the_container_and_pre_stop_runs() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("hooks");
    let ctl = ctl_dir();
    agent.write_manifest(
        "hooks.yaml",
        &manifest(
            "hooks",
            json!([{
                "name": "bad",
                "image": BUSYBOX,
                "command": ["sh", "-c", "exec sleep 3600"],
                "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo nope; exit 3"]}}}
            }, {
                "name": "good",
                "image": BUSYBOX,
                "command": ["sh", "-c", "exec sleep 3600"],
                "volumeMounts": [{"name": "ctl", "mountPath": "/ctl"}],
                "lifecycle": {
                    "postStart": {"exec": {"command": ["sh", "-c", "echo started > /ctl/post-start"]}},
                    "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /ctl/pre-stop"]}}
                }
            }]),
            host_dir(ctl.path()),
        ),
    );
    agent.wait("postStart of the good container ran", WAIT, || {
        ctl.path().join("post-start").exists().then_some(())
    });
    let pod = agent.wait(
        "the bad container waits after its hook failed",
        WAIT,
        || {
            let p = agent.pod("hooks")?;
            let c = container(&p, "bad");
            let reason = c["state"]["waiting"]["reason"].as_str()?;
            (reason == "PostStartHookError" || reason == "CrashLoopBackOff").then_some(p)
        },
    );
    let log = agent.log_text();
    assert!(
        log.contains("Exec lifecycle hook ([sh -c echo nope; exit 3]) for Container \"bad\""),
        "{}",
        agent.log_tail()
    );
    assert!(log.contains("FailedPostStartHook"));
    assert!(container(&pod, "good")["state"]["running"].is_object());
    agent.remove_manifest("hooks.yaml");
    agent.wait("preStop ran on removal", WAIT, || {
        ctl.path().join("pre-stop").exists().then_some(())
    });
    agent.wait("pod removed", WAIT, || {
        agent.pod("hooks").is_none().then_some(())
    });
}
