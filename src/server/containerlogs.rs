//! `GET /containerLogs/{namespace}/{pod}/{container}` on the kubelet API (the kubelet's
//! `getContainerLogs` and `GetKubeletContainerLogs`): a container's log with every
//! `PodLogOptions` ([`crate::logs::options`]), read from the file the runtime writes
//! ([`crate::logs::reader`]) and streamed as it is read, one chunk per read; with `follow`,
//! until the container stops or the client goes.
//!
//! The answers are the kubelet's: options that do not decode → 400 and out-of-range ones →
//! 422 (with the parameter named, where the kubelet says only `Unable to decode query.` /
//! `Invalid request.`); no such pod → 404 `pod "<name>" does not exist`; a container not in
//! the pod's spec → 404 `container "<c>" not found in pod "<name>"`; a container without logs
//! yet or without a previous instance → 400 with `validateContainerLogStatus`'s message; a
//! runtime that does not know the container → 400 `unable to retrieve container logs for
//! <id>`. The pod and its container statuses come from the status manager; the container's
//! log path from CRI `ContainerStatus`. Where the kubelet answers 200 and then writes an error
//! into the body (a log file it cannot open), this handler answers 400 with that error.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodStatus};
use proto::cri;

use super::ApiState;
use crate::logs::cri::LogWriter;
use crate::logs::options::{self, PodLogOptions};
use crate::logs::reader::{LogReader, ReadOptions, Running};

/// The `/containerLogs` route, for the authenticated kubelet API.
pub fn routes(api: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .with_state(api)
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The pod named `namespace/name` with its latest status (the status manager's, else the
/// pod's own, as the kubelet falls back to the API's).
fn find_pod(api: &ApiState, namespace: &str, name: &str) -> Option<(Arc<Pod>, Option<PodStatus>)> {
    api.status.uids().into_iter().find_map(|uid| {
        let pod = api.status.pod(&uid)?;
        let m = &pod.metadata;
        if m.name.as_deref() != Some(name)
            || m.namespace.as_deref().unwrap_or("default") != namespace
        {
            return None;
        }
        let status = api.status.status(&uid).or_else(|| pod.status.clone());
        Some((pod, status))
    })
}

/// Whether the pod's spec has a container (app, init or ephemeral) named `name`.
pub fn has_container(pod: &Pod, name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.containers.iter().any(|c| c.name == name)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| c.name == name)
}

/// The ID (`<runtime>://<id>`, as the status has it) of the container instance whose log to read (the kubelet's
/// `validateContainerLogStatus`): with `previous`, the last terminated one; otherwise the
/// running one, else the one that terminated, else the last terminated one. The error is the
/// kubelet's message.
pub fn log_container_id(
    pod_name: &str,
    status: Option<&PodStatus>,
    container: &str,
    previous: bool,
) -> Result<String, String> {
    let find = |list: Option<&Vec<ContainerStatus>>| {
        list.into_iter()
            .flatten()
            .find(|c| c.name == container)
            .cloned()
    };
    let cs = status.and_then(|s| {
        find(s.container_statuses.as_ref())
            .or_else(|| find(s.init_container_statuses.as_ref()))
            .or_else(|| find(s.ephemeral_container_statuses.as_ref()))
    });
    let Some(cs) = cs else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        ));
    };
    let state = cs.state.unwrap_or_default();
    let last = cs
        .last_state
        .and_then(|s| s.terminated)
        .and_then(|t| t.container_id)
        .filter(|id| !id.is_empty());
    let terminated = || format!("container {container:?} in pod {pod_name:?} is terminated");
    let id = if previous {
        last.ok_or_else(|| {
            format!("previous terminated container {container:?} in pod {pod_name:?} not found")
        })?
    } else if state.running.is_some() {
        cs.container_id.unwrap_or_default()
    } else if let Some(t) = state.terminated {
        match t.container_id.filter(|id| !id.is_empty()) {
            Some(id) => id,
            // The next instance did not start: the last one's logs.
            None => last.ok_or_else(terminated)?,
        }
    } else if last.is_some() {
        last.unwrap_or_default()
    } else if let Some(w) = state.waiting {
        let reason = w.reason.unwrap_or_default();
        let why = match reason.as_str() {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            _ => reason,
        };
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: {why}"
        ));
    } else {
        return Err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
        ));
    };
    Ok(id)
}

/// `containerd://<id>` → `<id>`.
fn runtime_container_id(full: &str) -> &str {
    full.split_once("://").map_or(full, |(_, id)| id)
}

async fn container_logs(
    State(api): State<Arc<ApiState>>,
    Path((namespace, pod_name, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let opts = match PodLogOptions::from_query(query.as_deref().unwrap_or("")) {
        Ok(o) => o,
        Err(e) => {
            let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return text(code, e.body());
        }
    };
    let Some((pod, status)) = find_pod(&api, &namespace, &pod_name) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {pod_name:?} does not exist"),
        );
    };
    if !has_container(&pod, &container) {
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod_name:?}"),
        );
    }
    let full_id = match log_container_id(&pod_name, status.as_ref(), &container, opts.previous) {
        Ok(id) => id,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let id = runtime_container_id(&full_id).to_string();
    let runtime = api.kubelet.runtime.clone();
    let log_path = match runtime.container_status(&id).await {
        Ok(s) if !s.log_path.is_empty() => s.log_path,
        Ok(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container {id}: the runtime reports no log path"),
            )
        }
        Err(e) => {
            tracing::debug!("container logs: container status of {id}: {e}");
            return text(
                StatusCode::BAD_REQUEST,
                format!("unable to retrieve container logs for {full_id}"),
            );
        }
    };
    let read = ReadOptions {
        follow: opts.follow,
        tail: opts.tail(),
        writer: LogWriter::new(opts.since(options::now()), opts.timestamps, opts.limit()),
    };
    let reader = match LogReader::open(std::path::Path::new(&log_path), read).await {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let running: Running = {
        let id = id.clone();
        Box::new(move || {
            let (runtime, id) = (runtime.clone(), id.clone());
            Box::pin(async move {
                matches!(runtime.container_status(&id).await,
                    Ok(s) if s.state == cri::ContainerState::ContainerRunning as i32)
            })
        })
    };
    // A few chunks in flight: the reader stays ahead of a slow client by that much only.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let target = format!("{namespace}/{pod_name}/{container}");
    tokio::spawn(async move {
        if let Err(e) = reader.run(tx, running).await {
            tracing::warn!("container logs of {target}: {e}");
        }
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> PodStatus {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_log_container_is_chosen_as_the_kubelet_does() {
        let running = status(serde_json::json!({"containerStatuses": [{
            "name": "main", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
            "containerID": "containerd://new",
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://old"}},
        }]}));
        assert_eq!(
            log_container_id("p", Some(&running), "main", false),
            Ok("containerd://new".into())
        );
        assert_eq!(
            log_container_id("p", Some(&running), "main", true),
            Ok("containerd://old".into())
        );
        assert_eq!(
            log_container_id("p", Some(&running), "other", false),
            Err("container \"other\" in pod \"p\" is not available".into())
        );
        assert_eq!(
            log_container_id("p", None, "main", false),
            Err("container \"main\" in pod \"p\" is not available".into())
        );

        let first = status(serde_json::json!({"initContainerStatuses": [{
            "name": "init", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "containerID": "containerd://a", "state": {"running": {}},
        }]}));
        assert_eq!(
            log_container_id("p", Some(&first), "init", false),
            Ok("containerd://a".into())
        );
        assert_eq!(
            log_container_id("p", Some(&first), "init", true),
            Err("previous terminated container \"init\" in pod \"p\" not found".into())
        );

        let done = status(serde_json::json!({"containerStatuses": [{
            "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "containerID": "containerd://t"}},
        }]}));
        assert_eq!(
            log_container_id("p", Some(&done), "main", false),
            Ok("containerd://t".into())
        );
        let gone = status(serde_json::json!({"containerStatuses": [{
            "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137}},
        }]}));
        assert_eq!(
            log_container_id("p", Some(&gone), "main", false),
            Err("container \"main\" in pod \"p\" is terminated".into())
        );

        let backoff = status(serde_json::json!({"containerStatuses": [{
            "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://prev"}},
        }]}));
        assert_eq!(
            log_container_id("p", Some(&backoff), "main", false),
            Ok("containerd://prev".into())
        );
        for (reason, msg) in [
            ("ErrImagePull", "image can't be pulled"),
            ("ImagePullBackOff", "trying and failing to pull image"),
            ("ContainerCreating", "ContainerCreating"),
        ] {
            let waiting = status(serde_json::json!({"containerStatuses": [{
                "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason}},
            }]}));
            assert_eq!(
                log_container_id("p", Some(&waiting), "main", false),
                Err(format!(
                    "container \"main\" in pod \"p\" is waiting to start: {msg}"
                ))
            );
        }
        let blank = status(serde_json::json!({"containerStatuses": [{
            "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        }]}));
        assert_eq!(
            log_container_id("p", Some(&blank), "main", false),
            Err("container \"main\" in pod \"p\" is waiting to start - no logs yet".into())
        );
    }

    #[test]
    fn containers_of_every_kind_are_found_in_the_spec() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "a"}],
                "initContainers": [{"name": "i"}],
                "ephemeralContainers": [{"name": "debug"}],
            },
        }))
        .unwrap();
        for c in ["a", "i", "debug"] {
            assert!(has_container(&pod, c), "{c}");
        }
        assert!(!has_container(&pod, "b"));
        assert_eq!(runtime_container_id("containerd://abc"), "abc");
        assert_eq!(runtime_container_id("abc"), "abc");
    }
}
