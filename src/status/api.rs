//! The status manager's API side (`pkg/kubelet/status/status_manager.go`): publishes the
//! statuses in the local cache ([`StatusManager`], which `/pods` also serves) to the API server.
//!
//! - A pod's status is patched (`PATCH pods/<name>/status`, strategic merge, with the pod's UID
//!   in the patch as a precondition, as `statusutil.PatchPodStatus`) when it differs from the
//!   last one the API accepted; every [`RESYNC_PERIOD`] all pods are checked again, so a status
//!   the API missed while it was down catches up (a failed patch is not recorded as accepted).
//!   Unlike the kubelet, the resync does not compare with the API's current copy of the pod
//!   (the pod source does not pass status-only changes on), so a status someone else overwrote
//!   is corrected at the pod's next status change, not at the next resync.
//! - A terminal phase in the API is never replaced by a non-terminal one.
//! - 409: the pod is fetched again; a pod deleted (or replaced under the same name) meanwhile
//!   is dropped, otherwise the patch is retried. 404: the pod is gone; dropped.
//! - A pod being deleted (deletionTimestamp) whose containers and sandboxes no longer run, whose
//!   volumes are torn down and whose latest status the API has, is deleted for good with grace
//!   period 0 and a UID precondition (`canBeDeleted`).
//! - Static pods publish their status on their mirror pod (see `crate::mirror`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::Api;
use proto::cri;

use super::StatusManager;
use crate::kuberuntime::RuntimeService;
use crate::sources::api::MirrorPods;
use crate::sources::{API_SOURCE, CONFIG_SOURCE_ANNOTATION};

/// How often every status is checked against what the API has (`syncPeriod`).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(10);

/// Where a pod's status goes in the API.
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The status the API holds now (from the pod source's latest copy).
    pub api_status: Option<PodStatus>,
    /// Whether the target is a mirror pod (the status of a static pod).
    pub mirror: bool,
}

/// The status patch the kubelet sends: the new status, the UID as precondition, and `null` for
/// every top-level status field the API has that the new status no longer has.
pub fn status_patch(uid: &str, old: Option<&PodStatus>, new: &PodStatus) -> serde_json::Value {
    let mut status = serde_json::to_value(new).unwrap_or_default();
    if let (Some(old), serde_json::Value::Object(map)) = (old, &mut status) {
        if let Ok(serde_json::Value::Object(old)) = serde_json::to_value(old) {
            for k in old.keys() {
                if !map.contains_key(k) {
                    map.insert(k.clone(), serde_json::Value::Null);
                }
            }
        }
    }
    serde_json::json!({"metadata": {"uid": uid}, "status": status})
}

fn is_terminal(s: Option<&PodStatus>) -> bool {
    matches!(
        s.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether the new status may replace the API's: never a terminal phase by a running one.
pub fn may_replace(api: Option<&PodStatus>, new: &PodStatus) -> bool {
    !is_terminal(api) || is_terminal(Some(new))
}

/// Publishes the local status cache to the API server; see the module doc.
pub struct StatusSync {
    client: kube::Client,
    status: StatusManager,
    runtime: RuntimeService,
    mirrors: MirrorPods,
    /// Last status the API accepted, by local pod UID, with the UID of the API pod it went to
    /// (a recreated mirror pod gets it again).
    sent: HashMap<String, (String, PodStatus)>,
    /// Pods given up on (deleted meanwhile), by local pod UID.
    dropped: HashSet<String>,
    /// Pods whose final DELETE was sent.
    deleted: HashSet<String>,
    /// Whether the last API call failed (the first failure of a run is a warning).
    failing: bool,
}

impl StatusSync {
    pub fn new(
        client: kube::Client,
        status: StatusManager,
        runtime: RuntimeService,
        mirrors: MirrorPods,
    ) -> Self {
        Self {
            client,
            status,
            runtime,
            mirrors,
            sent: HashMap::new(),
            dropped: HashSet::new(),
            deleted: HashSet::new(),
            failing: false,
        }
    }

    /// Runs forever: on every change of the cache, and every [`RESYNC_PERIOD`].
    pub async fn run(mut self) {
        let mut changed = self.status.subscribe();
        let mut tick = tokio::time::interval(RESYNC_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut mirrors = self.mirrors.subscribe();
        loop {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                // A resync retries what did not reach the API (a failed patch is not recorded
                // as sent); a status the API already has is not sent again, so a node whose
                // pods do not change makes no status requests.
                _ = tick.tick() => {}
                _ = mirrors.changed() => {}
            }
            self.sync_all().await;
        }
    }

    /// Where a local pod's status goes, if anywhere.
    fn target(&self, pod: &Pod) -> Option<Target> {
        let source = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_SOURCE_ANNOTATION))
            .map(String::as_str);
        if source == Some(API_SOURCE) {
            return Some(Target {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
                api_status: pod.status.clone(),
                mirror: false,
            });
        }
        // A static pod: its mirror pod, once it exists.
        let mirror = self.mirrors.get(&crate::sources::api::key_of(pod))?;
        Some(Target {
            namespace: mirror.metadata.namespace.clone().unwrap_or_default(),
            name: mirror.metadata.name.clone().unwrap_or_default(),
            uid: mirror.metadata.uid.clone().unwrap_or_default(),
            api_status: mirror.status.clone(),
            mirror: true,
        })
    }

    async fn sync_all(&mut self) {
        let uids = self.status.uids();
        self.sent.retain(|k, _| uids.contains(k));
        self.dropped.retain(|k| uids.contains(k));
        self.deleted.retain(|k| uids.contains(k));
        for uid in uids {
            let Some(pod) = self.status.pod(&uid) else {
                continue;
            };
            let Some(status) = self.status.status(&uid) else {
                continue;
            };
            if self.dropped.contains(&uid) {
                continue;
            }
            let Some(target) = self.target(&pod) else {
                continue;
            };
            if self.sent.get(&uid) != Some(&(target.uid.clone(), status.clone())) {
                self.publish(&uid, &target, &status).await;
            }
            // The final delete, as the kubelet's canBeDeleted: the pod's resources are
            // reclaimed (nothing runs, volumes torn down) and the API has its latest status.
            if !target.mirror
                && pod.metadata.deletion_timestamp.is_some()
                && !self.deleted.contains(&uid)
                && self.status.reclaimed(&uid)
                && self.sent.get(&uid) == Some(&(target.uid.clone(), status.clone()))
            {
                self.delete_if_stopped(&uid, &pod, &target).await;
            }
        }
    }

    fn api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Stops sending a pod's status: for good for an API pod; until its mirror pod is
    /// recreated for a static pod.
    fn drop_target(&mut self, uid: &str, target: &Target) {
        if target.mirror {
            self.sent.remove(uid);
        } else {
            self.dropped.insert(uid.to_string());
        }
    }

    fn failed(&mut self, what: &str, target: &Target, e: &kube::Error) {
        if self.failing {
            tracing::debug!(pod = %format!("{}/{}", target.namespace, target.name), error = %e, "{what} failed; will retry");
        } else {
            tracing::warn!(pod = %format!("{}/{}", target.namespace, target.name), error = %e, "{what} failed; will retry");
        }
        self.failing = true;
    }

    async fn publish(&mut self, uid: &str, target: &Target, status: &PodStatus) {
        if !may_replace(target.api_status.as_ref(), status) {
            tracing::debug!(pod = %target.name, "not replacing the API's terminal phase");
            self.sent
                .insert(uid.to_string(), (target.uid.clone(), status.clone()));
            return;
        }
        let patch = status_patch(&target.uid, target.api_status.as_ref(), status);
        let api = self.api(&target.namespace);
        match api
            .patch_status(
                &target.name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
        {
            Ok(_) => {
                if self.failing {
                    tracing::info!("pod status updates reach the API server again");
                }
                self.failing = false;
                tracing::debug!(pod = %format!("{}/{}", target.namespace, target.name), phase = ?status.phase, "status patched");
                self.sent
                    .insert(uid.to_string(), (target.uid.clone(), status.clone()));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::info!(pod = %format!("{}/{}", target.namespace, target.name), "pod was deleted from the API: its status is no longer sent");
                self.drop_target(uid, target);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // Fetch it again: the same pod is retried, a deleted or replaced one dropped.
                match api.get_opt(&target.name).await {
                    Ok(Some(p)) if p.metadata.uid.as_deref() == Some(target.uid.as_str()) => {
                        tracing::warn!(pod = %format!("{}/{}", target.namespace, target.name), message = %s.message, "status patch conflicted (409); retrying with the pod fetched again");
                        let fresh = Target {
                            api_status: p.status,
                            ..target.clone()
                        };
                        if let Err(e) = api
                            .patch_status(
                                &target.name,
                                &PatchParams::default(),
                                &Patch::Strategic(&status_patch(
                                    &fresh.uid,
                                    fresh.api_status.as_ref(),
                                    status,
                                )),
                            )
                            .await
                        {
                            self.failed("pod status patch", target, &e);
                        } else {
                            self.sent
                                .insert(uid.to_string(), (target.uid.clone(), status.clone()));
                        }
                    }
                    Ok(_) => {
                        tracing::info!(pod = %format!("{}/{}", target.namespace, target.name), message = %s.message, "status patch conflicted (409): the pod was deleted or replaced meanwhile; dropped");
                        self.drop_target(uid, target);
                    }
                    Err(e) => self.failed("pod fetch after a status conflict", target, &e),
                }
            }
            Err(e) => self.failed("pod status patch", target, &e),
        }
    }

    /// The kubelet's `canBeDeleted` + final delete: nothing of the pod runs any more.
    async fn delete_if_stopped(&mut self, uid: &str, pod: &Pod, target: &Target) {
        let rt = match self
            .runtime
            .get_pod_status(uid, &target.name, &target.namespace)
            .await
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::debug!(pod = %target.name, error = %e, "cannot read the runtime before the final delete");
                return;
            }
        };
        let running = rt
            .containers
            .iter()
            .any(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            || rt
                .sandboxes
                .iter()
                .any(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
        if running {
            return;
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self
            .api(&target.namespace)
            .delete(&target.name, &params)
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %format!("{}/{}", target.namespace, target.name), "Pod fully terminated and removed from etcd");
                self.deleted.insert(uid.to_string());
            }
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                tracing::info!(pod = %format!("{}/{}", target.namespace, target.name), message = %s.message, "pod already gone from the API");
                self.deleted.insert(uid.to_string());
            }
            Err(e) => self.failed("final pod delete", target, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: &str, message: Option<&str>) -> PodStatus {
        PodStatus {
            phase: Some(phase.into()),
            message: message.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn the_patch_carries_the_uid_precondition_and_clears_dropped_fields() {
        let old = status("Pending", Some("waiting"));
        let new = status("Running", None);
        let p = status_patch("u1", Some(&old), &new);
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(p["status"]["phase"], "Running");
        assert!(p["status"]["message"].is_null());
        assert!(p["status"].as_object().unwrap().contains_key("message"));
    }

    /// A fake API server: each PATCH of pods/status answers the next of `patches` (a status
    /// code), each GET the pod with UID `server_uid`.
    fn fake_api(patches: Vec<u16>, server_uid: &'static str) -> kube::Client {
        use axum::http::{Request, Response};
        let patches = std::sync::Arc::new(parking_lot::Mutex::new(patches));
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let patches = patches.clone();
            async move {
                let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "web", "namespace": "default", "uid": server_uid}});
                let (code, body) = if req.method() == "PATCH" {
                    let code = patches.lock().remove(0);
                    let body = if code == 200 {
                        pod
                    } else {
                        serde_json::json!({"kind": "Status", "apiVersion": "v1",
                            "status": "Failure",
                            "reason": if code == 404 { "NotFound" } else { "Conflict" }, "code": code,
                            "message": "Operation cannot be fulfilled on pods \"web\": the object has been modified"})
                    };
                    (code, body)
                } else {
                    (200, pod)
                };
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(body.to_string().into_bytes()))
                        .unwrap(),
                )
            }
        });
        kube::Client::new(svc, "default")
    }

    fn sync(client: kube::Client) -> StatusSync {
        let channel = proto::cri::lazy_channel(std::path::Path::new("/nonexistent.sock"));
        let runtime = RuntimeService::new(
            channel,
            Duration::from_secs(1),
            crate::metrics::Metrics::new("n1"),
            "n1",
        );
        StatusSync::new(client, StatusManager::new(), runtime, MirrorPods::default())
    }

    fn target(uid: &str) -> Target {
        Target {
            namespace: "default".into(),
            name: "web".into(),
            uid: uid.into(),
            api_status: None,
            mirror: false,
        }
    }

    #[tokio::test]
    async fn a_conflict_refetches_the_pod_then_retries_or_drops_it() {
        // The same pod: the patch is retried and lands.
        let mut s = sync(fake_api(vec![409, 200], "u1"));
        let st = status("Running", None);
        s.publish("u1", &target("u1"), &st).await;
        assert_eq!(s.sent.get("u1"), Some(&("u1".to_string(), st.clone())));
        assert!(!s.dropped.contains("u1"));
        // Deleted and created again under the same name: dropped, never retried.
        let mut s = sync(fake_api(vec![409], "u2"));
        s.publish("u1", &target("u1"), &st).await;
        assert!(s.dropped.contains("u1"));
        assert!(!s.sent.contains_key("u1"));
        // Gone: dropped.
        let mut s = sync(fake_api(vec![404], "u1"));
        s.publish("u1", &target("u1"), &st).await;
        assert!(s.dropped.contains("u1"));
    }

    #[test]
    fn a_terminal_phase_is_never_replaced_by_a_running_one() {
        let failed = status("Failed", None);
        assert!(!may_replace(Some(&failed), &status("Running", None)));
        assert!(may_replace(Some(&failed), &status("Failed", Some("x"))));
        assert!(may_replace(Some(&status("Running", None)), &failed));
        assert!(may_replace(None, &status("Pending", None)));
    }
}
