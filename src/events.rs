//! The agent's event recorder: the managers' [`managers::EventRecorder`] (bounded, aggregating
//! identical events, with the kubelet's reasons) fed by the eviction manager, the GC managers,
//! the OOM watcher and the node conditions, plus every pod event of the pod workers, prober,
//! hooks and volume manager (through [`PodEvents`], plugged into [`crate::lifecycle::Events`]).
//!
//! In standalone mode the events are served read-only as a `v1` `EventList` at `/events` on the
//! read-only port ([`router`]); the API-server mode will publish them from
//! [`managers::EventRecorder::list_since`].

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use managers::events::{Event as Recorded, EventRecorder, EventSink, EventType, ObjectRef};
use serde_json::Value;

/// The source component of the agent's events, as the kubelet's.
pub const COMPONENT: &str = "kubelet";

/// Pod events of the kubelet proper (prober, hooks, volumes, workers) into the recorder.
pub struct PodEvents(pub Arc<EventRecorder>);

/// The reference to a pod object.
pub fn pod_ref(pod: &Pod) -> ObjectRef {
    ObjectRef::pod(
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or(""),
    )
}

impl crate::lifecycle::EventRecorder for PodEvents {
    fn event(&self, pod: &Pod, kind: crate::lifecycle::EventType, reason: &str, message: &str) {
        let kind = match kind {
            crate::lifecycle::EventType::Normal => EventType::Normal,
            crate::lifecycle::EventType::Warning => EventType::Warning,
        };
        self.0.event(&pod_ref(pod), kind, reason, message);
    }
}

/// An API time from a wall time.
pub fn api_time(t: SystemTime) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::try_from(t).ok().map(Time)
}

/// One recorded event as a `v1.Event`, named like the kubelet's (`<object>.<hex nanos>`).
pub fn to_api(e: &Recorded, host: &str) -> Event {
    let nanos = e
        .first_timestamp
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let namespace = e
        .object
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{nanos:x}", e.object.name)),
            namespace: Some(namespace),
            resource_version: Some(e.resource_version.to_string()),
            creation_timestamp: api_time(e.first_timestamp),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some(e.object.kind.clone()),
            name: Some(e.object.name.clone()),
            namespace: e.object.namespace.clone(),
            uid: Some(e.object.uid.clone()),
            ..Default::default()
        },
        reason: Some(e.reason.clone()),
        message: Some(e.message.clone()),
        type_: Some(e.kind.as_str().into()),
        count: Some(e.count as i32),
        first_timestamp: api_time(e.first_timestamp),
        last_timestamp: api_time(e.last_timestamp),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: Some(host.into()),
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: Some(host.into()),
        ..Default::default()
    }
}

/// The `EventList` of every stored event, oldest first; items without their own
/// kind/apiVersion, as list responses write them.
pub fn event_list_body(rec: &EventRecorder) -> String {
    let items: Vec<Value> = rec
        .list()
        .iter()
        .filter_map(|e| {
            let mut v = serde_json::to_value(to_api(e, rec.host())).ok()?;
            if let Some(m) = v.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            Some(v)
        })
        .collect();
    let list = serde_json::json!({
        "kind": "EventList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rec.resource_version().to_string()},
        "items": items,
    });
    list.to_string()
}

async fn events(State(rec): State<Arc<EventRecorder>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        event_list_body(&rec),
    )
        .into_response()
}

/// `/events` for the read-only port.
pub fn router(rec: Arc<EventRecorder>) -> Router {
    Router::new().route("/events", get(events)).with_state(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use managers::clock::FakeClock;

    #[test]
    fn events_are_listed_in_the_api_shape() {
        let rec = EventRecorder::new("node-a", 10, FakeClock::new());
        rec.event(
            &ObjectRef::node("node-a"),
            EventType::Normal,
            "NodeHasSufficientMemory",
            "Node node-a status is now: NodeHasSufficientMemory",
        );
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "hog-node-a", "namespace": "default", "uid": "u1"}
        }))
        .unwrap();
        let pe = PodEvents(rec.clone());
        crate::lifecycle::EventRecorder::event(
            &pe,
            &pod,
            crate::lifecycle::EventType::Warning,
            "Evicted",
            "The node was low on resource: memory. ",
        );
        crate::lifecycle::EventRecorder::event(
            &pe,
            &pod,
            crate::lifecycle::EventType::Warning,
            "Evicted",
            "The node was low on resource: memory. ",
        );
        let body = event_list_body(&rec);
        assert!(
            body.starts_with(r#"{"apiVersion":"v1","#) || body.starts_with(r#"{"kind":"#),
            "{body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["kind"], "EventList");
        assert_eq!(v["metadata"]["resourceVersion"], "3");
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 2);
        let node = &items[0];
        assert_eq!(node["involvedObject"]["kind"], "Node");
        assert_eq!(node["metadata"]["namespace"], "default");
        assert!(node["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("node-a."));
        assert_eq!(node["source"]["component"], "kubelet");
        assert_eq!(node["source"]["host"], "node-a");
        assert_eq!(node["type"], "Normal");
        assert!(node.get("kind").is_none());
        let ev = &items[1];
        assert_eq!(ev["reason"], "Evicted");
        assert_eq!(ev["count"], 2);
        assert_eq!(ev["involvedObject"]["uid"], "u1");
        assert_eq!(ev["involvedObject"]["namespace"], "default");
        assert!(ev["firstTimestamp"].is_string());
    }
}
