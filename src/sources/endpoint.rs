//! The HTTP pod endpoint (`--enable-pod-endpoint`, kubelet-rs only; off by default): pods sent
//! to the authenticated kubelet API join the node's pods like static pods from a manifest file.
//!
//! - `POST /pods` with a v1 Pod in YAML or JSON: decoded, defaulted and validated as a manifest
//!   file is (static pod name `<name>-<node>`, a UID hashed over the pod, source `endpoint`,
//!   a mirror pod in API-server mode); `201 Created` with the pod, `200 OK` when it replaces the
//!   pod of the same namespace and name, `400` naming what is wrong otherwise.
//! - `DELETE /pods/{namespace}/{name}` (the name as POSTed, without the node suffix): `200` with
//!   the removed pod, `404` when there is none.
//!
//! Authorization maps these to `create`/`delete` on `nodes/pods` (then `nodes/proxy`). The set
//! is kept under `<root-dir>/pod-endpoint/` so that it survives a restart, and every change
//! sends the whole set to `podconfig` as the source's SET.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Router;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, Mutex};

use super::defaults::StaticOrigin;
use super::file::{decode_pod_value, parse_document};
use super::{PodOperation, PodUpdate, ENDPOINT_SOURCE};

/// The endpoint's pods, keyed by namespace and name as POSTed.
pub struct PodEndpoint {
    node_name: String,
    dir: PathBuf,
    pods: Mutex<BTreeMap<(String, String), Pod>>,
    tx: mpsc::Sender<PodUpdate>,
}

fn text(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

fn file_name(ns: &str, name: &str) -> String {
    format!("{ns}_{name}.json")
}

impl PodEndpoint {
    /// The endpoint with the pods kept in `dir` (files that no longer decode are reported and
    /// skipped); sends the first SET before returning.
    pub async fn start(
        node_name: String,
        dir: PathBuf,
        tx: mpsc::Sender<PodUpdate>,
    ) -> std::io::Result<Arc<PodEndpoint>> {
        std::fs::create_dir_all(&dir)?;
        let mut pods = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match load(&path, &node_name) {
                Ok((key, pod)) => {
                    pods.insert(key, pod);
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "pod endpoint: a kept pod no longer decodes; skipped")
                }
            }
        }
        let ep = Arc::new(PodEndpoint {
            node_name,
            dir,
            pods: Mutex::new(pods),
            tx,
        });
        let pods = ep.pods.lock().await;
        ep.send(&pods).await;
        drop(pods);
        Ok(ep)
    }

    async fn send(&self, pods: &BTreeMap<(String, String), Pod>) {
        let update = PodUpdate {
            source: ENDPOINT_SOURCE,
            op: PodOperation::Set,
            pods: pods.values().cloned().collect(),
        };
        if self.tx.send(update).await.is_err() {
            tracing::debug!("pod endpoint: the sync loop is gone");
        }
    }

    /// `POST /pods` and `DELETE /pods/{namespace}/{name}`.
    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/pods", post(create))
            .route("/pods/", post(create))
            .route("/pods/{namespace}/{name}", delete(remove))
            .with_state(self)
    }
}

/// The pod a POST body describes, with its key: `Err` is the 400 message.
pub fn decode_body(body: &[u8], node_name: &str) -> Result<((String, String), Pod), String> {
    let origin = Path::new("request body");
    let value = parse_document(body, origin).map_err(|e| e.to_string())?;
    if value.get("kind").and_then(|k| k.as_str()) == Some("PodList") {
        return Err("request body: expected one v1 Pod, found a PodList".into());
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    let decoded = decode_pod_value(&value, origin, StaticOrigin::Endpoint, node_name)
        .map_err(|e| e.to_string())?;
    let ns = decoded
        .pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    Ok(((ns, name), decoded.pod))
}

fn load(path: &Path, node_name: &str) -> Result<((String, String), Pod), String> {
    let body = std::fs::read(path).map_err(|e| e.to_string())?;
    decode_body(&body, node_name)
}

async fn create(State(ep): State<Arc<PodEndpoint>>, body: axum::body::Bytes) -> Response {
    let (key, pod) = match decode_body(&body, &ep.node_name) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let mut pods = ep.pods.lock().await;
    let path = ep.dir.join(file_name(&key.0, &key.1));
    let dir = ep.dir.clone();
    let raw = body.to_vec();
    let written = tokio::task::spawn_blocking(move || {
        let tmp = dir.join(format!(".{}.tmp", std::process::id()));
        std::fs::write(&tmp, raw)?;
        std::fs::rename(&tmp, &path)
    })
    .await;
    if let Err(e) = written.map_err(std::io::Error::other).and_then(|r| r) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot keep the pod under {}: {e}", ep.dir.display()),
        );
    }
    let replaced = pods.insert(key.clone(), pod.clone()).is_some();
    ep.send(&pods).await;
    drop(pods);
    tracing::info!(namespace = %key.0, name = %key.1, replaced, "pod endpoint: pod accepted");
    let code = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (code, axum::Json(pod)).into_response()
}

async fn remove(
    State(ep): State<Arc<PodEndpoint>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let mut pods = ep.pods.lock().await;
    let Some(pod) = pods.remove(&(ns.clone(), name.clone())) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{name} was not sent to the pod endpoint"),
        );
    };
    let path = ep.dir.join(file_name(&ns, &name));
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), error = %e, "pod endpoint: cannot remove the kept pod");
        }
    }
    ep.send(&pods).await;
    tracing::info!(namespace = %ns, name = %name, "pod endpoint: pod removed");
    (StatusCode::OK, axum::Json(pod)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: 127.0.0.1:5000/kubelet-rs/busybox:1.35\n";

    async fn call(app: &Router, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let code = resp.status();
        let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, String::from_utf8_lossy(&b).into())
    }

    #[tokio::test]
    async fn posted_pods_join_the_set_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let ep = PodEndpoint::start("n1".into(), dir.path().into(), tx.clone())
            .await
            .unwrap();
        assert!(rx.recv().await.unwrap().pods.is_empty(), "the first SET");
        let app = ep.routes();
        let (code, body) = call(&app, "POST", "/pods", POD).await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
        let set = rx.recv().await.unwrap();
        assert_eq!((set.source, set.op), (ENDPOINT_SOURCE, PodOperation::Set));
        assert_eq!(set.pods[0].metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(call(&app, "POST", "/pods", POD).await.0, StatusCode::OK);
        rx.recv().await.unwrap();

        // A restart finds it again.
        let (tx2, mut rx2) = mpsc::channel(8);
        let again = PodEndpoint::start("n1".into(), dir.path().into(), tx2)
            .await
            .unwrap();
        let set = rx2.recv().await.unwrap();
        assert_eq!(set.pods.len(), 1);
        let app2 = again.routes();
        assert_eq!(
            call(&app2, "DELETE", "/pods/default/web", "").await.0,
            StatusCode::OK
        );
        assert!(rx2.recv().await.unwrap().pods.is_empty());
        assert_eq!(
            call(&app2, "DELETE", "/pods/default/web", "").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn bad_pods_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let app = PodEndpoint::start("n1".into(), dir.path().into(), tx)
            .await
            .unwrap()
            .routes();
        rx.recv().await.unwrap();
        for (body, says) in [
            ("", "empty"),
            ("{not json", "request body"),
            ("apiVersion: v1\nkind: PodList\nitems: []\n", "PodList"),
            (
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: []\n",
                "spec.containers",
            ),
        ] {
            let (code, msg) = call(&app, "POST", "/pods", body).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{body:?}: {msg}");
            assert!(msg.contains(says), "{body:?}: {msg}");
        }
        assert!(rx.try_recv().is_err(), "nothing sent for a refused pod");
    }
}
