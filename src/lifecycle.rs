//! Container lifecycle hooks (`pkg/kubelet/lifecycle/handlers.go`) and the events the pod
//! lifecycle emits.
//!
//! [`HookRunner`] runs a `postStart` or `preStop` handler: `exec` through CRI ExecSync, `httpGet`
//! through the probes' HTTP client (host defaulting to the pod IP, `User-Agent:
//! kube-lifecycle/<major>.<minor>`; only a transport error or a response head that never comes
//! fails the hook, as in the kubelet: a status or an unreadable body does not), and `sleep`. Its errors read as the kubelet's
//! (`Exec lifecycle hook ([sh -c exit 1]) for Container "app" in Pod "web_default(uid)" failed -
//! error: command 'sh -c exit 1' exited with 1: , message: ""`). The pod worker decides what a
//! failure means: a failed postStart kills the container (`FailedPostStartHook`), a failed
//! preStop is reported (`FailedPreStopHook`) and the container is stopped anyway.
//!
//! [`Events`] is where the prober, the volume manager and the pod worker report events
//! (`Unhealthy`, `FailedMount`, `FailedPostStartHook`, ...). Until the event recorder exists they
//! are logged at info; a recorder plugs in with [`Events::set_recorder`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use parking_lot::RwLock;

use crate::kuberuntime::RuntimeService;
use crate::prober::http::{HttpClient, Scheme, Url, HOOK_USER_AGENT};
use crate::prober::probe::{expand_static, resolve_port};

/// `Normal` or `Warning`, as on an API event: the same type as the node-level managers' events.
pub use managers::events::EventType;

/// Where events about a pod go (the event recorder implements this).
pub trait EventRecorder: Send + Sync {
    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str);
}

/// The shared event sink: logs every event, and forwards it to a recorder once one is set.
#[derive(Clone, Default)]
pub struct Events(Arc<RwLock<Option<Arc<dyn EventRecorder>>>>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("recorder", &self.0.read().is_some())
            .finish()
    }
}

impl Events {
    pub fn set_recorder(&self, r: Arc<dyn EventRecorder>) {
        *self.0.write() = Some(r);
    }

    pub fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        tracing::info!(
            pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or("")),
            r#type = kind.as_str(),
            reason,
            "event: {message}"
        );
        if let Some(r) = self.0.read().as_ref() {
            r.event(pod, kind, reason, message);
        }
    }

    pub fn normal(&self, pod: &Pod, reason: &str, message: &str) {
        self.event(pod, EventType::Normal, reason, message);
    }

    pub fn warning(&self, pod: &Pod, reason: &str, message: &str) {
        self.event(pod, EventType::Warning, reason, message);
    }
}

/// A hook that failed; the text is the event message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("Exec lifecycle hook ({command}) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {output:?}")]
    Exec {
        command: String,
        container: String,
        pod: String,
        error: String,
        output: String,
    },
    #[error("HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {error}")]
    Http {
        path: String,
        container: String,
        pod: String,
        error: String,
    },
    #[error("lifecycle hook for Container {container:?} in Pod {pod:?} did not finish within {timeout:?}")]
    Timeout {
        container: String,
        pod: String,
        timeout: Duration,
    },
    #[error("invalid handler for Container {container:?} in Pod {pod:?}: {reason}")]
    Invalid {
        container: String,
        pod: String,
        reason: String,
    },
}

/// `name_namespace(uid)`, the kubelet's `format.Pod`.
fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Runs lifecycle handlers.
#[derive(Clone)]
pub struct HookRunner {
    pub runtime: Option<RuntimeService>,
    pub http: HttpClient,
}

impl HookRunner {
    /// Runs `handler` for the container `container_id`, giving up after `timeout`.
    pub async fn run(
        &self,
        pod: &Pod,
        container: &Container,
        container_id: &str,
        handler: &LifecycleHandler,
        pod_ip: &str,
        timeout: Duration,
    ) -> Result<(), HookError> {
        let timeout = timeout.max(Duration::from_secs(1));
        match tokio::time::timeout(
            timeout,
            self.run_inner(pod, container, container_id, handler, pod_ip, timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(HookError::Timeout {
                container: container.name.clone(),
                pod: format_pod(pod),
                timeout,
            }),
        }
    }

    async fn run_inner(
        &self,
        pod: &Pod,
        container: &Container,
        container_id: &str,
        handler: &LifecycleHandler,
        pod_ip: &str,
        timeout: Duration,
    ) -> Result<(), HookError> {
        if let Some(exec) = &handler.exec {
            let cmd = expand_static(exec.command.as_deref().unwrap_or(&[]), container);
            let exec_err = |error: String, output: String| HookError::Exec {
                command: format!("[{}]", cmd.join(" ")),
                container: container.name.clone(),
                pod: format_pod(pod),
                error,
                output,
            };
            let Some(rt) = &self.runtime else {
                return Err(exec_err("no container runtime".into(), String::new()));
            };
            return match rt.exec_sync(container_id, cmd.clone(), timeout).await {
                Ok(r) if r.exit_code == 0 => Ok(()),
                Ok(r) => {
                    let mut out = r.stdout;
                    out.extend_from_slice(&r.stderr);
                    out.truncate(crate::prober::probe::MAX_EXEC_OUTPUT);
                    let output = String::from_utf8_lossy(&out).into_owned();
                    Err(exec_err(
                        format!(
                            "command '{}' exited with {}: {output}",
                            cmd.join(" "),
                            r.exit_code
                        ),
                        output,
                    ))
                }
                Err(e) => Err(exec_err(e.to_string(), String::new())),
            };
        }
        if let Some(h) = &handler.http_get {
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let http_err = |error: String| HookError::Http {
                path: path.clone(),
                container: container.name.clone(),
                pod: format_pod(pod),
                error,
            };
            let port = resolve_port(&h.port, container).map_err(|e| http_err(e.to_string()))?;
            let host = h
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or(pod_ip);
            if host.is_empty() {
                return Err(http_err("the pod has no IP to send the request to".into()));
            }
            let url = Url::new(Scheme::parse(h.scheme.as_deref()), host, port, &path);
            let headers = crate::prober::http::spec_headers(h);
            return self
                .http
                .get(&url, &headers, HOOK_USER_AGENT, timeout)
                .await
                // As the kubelet: any answer will do, whatever its status or body.
                .map(|_| ())
                .map_err(|e| http_err(e.to_string()));
        }
        if let Some(s) = &handler.sleep {
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
            return Ok(());
        }
        Err(HookError::Invalid {
            container: container.name.clone(),
            pod: format_pod(pod),
            reason: if handler.tcp_socket.is_some() {
                "tcpSocket is not supported in lifecycle hooks".into()
            } else {
                "no handler set".into()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pod() -> (Pod, Container) {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "i", "ports": [{"name": "http", "containerPort": 1}]}]}
        }))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        (pod, c)
    }

    fn runner() -> HookRunner {
        HookRunner {
            runtime: None,
            http: HttpClient::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_sleep_and_are_cut_by_the_timeout() {
        let (pod, c) = pod();
        let h: LifecycleHandler = serde_json::from_value(json!({"sleep": {"seconds": 5}})).unwrap();
        let start = tokio::time::Instant::now();
        runner()
            .run(&pod, &c, "id", &h, "", Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(start.elapsed().as_secs(), 5);
        let e = runner()
            .run(&pod, &c, "id", &h, "", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn http_hooks_fail_only_on_transport_errors() {
        let (pod, c) = pod();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let hits2 = hits.clone();
        let heads = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let heads2 = heads.clone();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            // A 500, then a body cut short: neither fails a hook.
            let answers: [&[u8]; 2] = [
                b"HTTP/1.1 500 No\r\nContent-Length: 0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc",
            ];
            for answer in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                heads2
                    .lock()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                hits2.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(answer).await;
            }
        });
        let h: LifecycleHandler = serde_json::from_value(
            json!({"httpGet": {"path": "/hook", "port": port, "host": "127.0.0.1"}}),
        )
        .unwrap();
        for _ in 0..2 {
            runner()
                .run(&pod, &c, "id", &h, "", Duration::from_secs(5))
                .await
                .unwrap();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert!(
            heads.lock()[0].contains("\r\nUser-Agent: kube-lifecycle/1.33\r\n"),
            "{:?}",
            heads.lock()
        );
        server.abort();
        let bad: LifecycleHandler =
            serde_json::from_value(json!({"httpGet": {"path": "/hook", "port": "http"}})).unwrap();
        let e = runner()
            .run(&pod, &c, "id", &bad, "127.0.0.1", Duration::from_secs(5))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("HTTP lifecycle hook (/hook) for Container \"app\" in Pod \"web_ns(u1)\" failed - error: Get \"http://127.0.0.1:1/hook\": dial tcp 127.0.0.1:1: connect: connection refused"),
            "{text}"
        );
    }

    #[test]
    fn events_reach_the_recorder() {
        struct Rec(parking_lot::Mutex<Vec<String>>);
        impl EventRecorder for Rec {
            fn event(&self, _pod: &Pod, kind: EventType, reason: &str, message: &str) {
                self.0
                    .lock()
                    .push(format!("{} {reason} {message}", kind.as_str()));
            }
        }
        let rec = Arc::new(Rec(Default::default()));
        let events = Events::default();
        let (pod, _) = pod();
        events.warning(&pod, "Before", "dropped");
        events.set_recorder(rec.clone());
        events.warning(&pod, "Unhealthy", "Liveness probe failed: x");
        assert_eq!(
            *rec.0.lock(),
            vec!["Warning Unhealthy Liveness probe failed: x".to_string()]
        );
    }
}
