//! The agent's OOM watcher (`pkg/kubelet/oom`): every OOM kill the kernel reports in
//! `/dev/kmsg` ([`managers::oom::OomWatcher`]) that concerns this node becomes an event.
//!
//! - `SystemOOM` (Warning, on the node; "System OOM encountered, victim process: sh, pid: 42")
//!   when the memory that ran out is the node's: a system-wide OOM, or the limit of the node's
//!   pods cgroup or of one of its ancestors (the cgroup bounding the node's memory, see
//!   `managers::eviction::stats`).
//! - `OOMKilling` (Warning, on the pod) when the killed process belongs to one of this node's
//!   pods: which process, which container, and whose limit was hit.
//!
//! OOMs of cgroups that are neither (another node's pods on a shared machine) are ignored here;
//! the cAdvisor API reports every container's `oom`/`oomKill` events and
//! `container_oom_events_total` from its own reading of the kernel log.

use std::sync::Arc;
use std::time::SystemTime;

use collectors::ContainerNamer;
use managers::events::{reason, EventSink, EventType, ObjectRef};
use managers::oom::{OomEvent, OomSink};

use crate::kuberuntime::labels;

/// Looks up a pod by UID, and the name of its container with a runtime ID: the kubelet's
/// status knows a container as soon as it started, before the next relist names its cgroup.
pub type PodLookup = Arc<dyn Fn(&str, &str) -> Option<(ObjectRef, Option<String>)> + Send + Sync>;

/// Turns OOM kills into events.
pub struct OomEvents {
    events: Arc<dyn EventSink>,
    node: ObjectRef,
    /// The pods' cgroup (`<cgroup-root>/kubepods`).
    kubepods: String,
    names: Arc<dyn ContainerNamer>,
    pods: PodLookup,
}

impl OomEvents {
    /// Events for node `node`, whose pods live under the cgroup `kubepods`.
    pub fn new(
        node: &str,
        kubepods: &str,
        events: Arc<dyn EventSink>,
        names: Arc<dyn ContainerNamer>,
        pods: PodLookup,
    ) -> Self {
        OomEvents {
            events,
            node: ObjectRef::node(node),
            kubepods: kubepods.trim_end_matches('/').to_string(),
            names,
            pods,
        }
    }

    /// Whether `cgroup` is the pods' cgroup or below it.
    fn is_ours(&self, cgroup: &str) -> bool {
        cgroup == self.kubepods || cgroup.starts_with(&format!("{}/", self.kubepods))
    }

    /// Whether the memory that ran out is the node's: `/`, the pods' cgroup or an ancestor.
    fn is_node_memory(&self, victim: &str) -> bool {
        victim == "/"
            || victim == self.kubepods
            || self
                .kubepods
                .starts_with(&format!("{}/", victim.trim_end_matches('/')))
    }

    /// The pod (and container name) of a cgroup under the pods' cgroup.
    fn pod_of(&self, cgroup: &str) -> Option<(ObjectRef, Option<String>)> {
        let container_id = cgroup.rsplit('/').next().unwrap_or_default();
        if let Some(id) = self.names.identify(cgroup) {
            let l = &id.labels;
            let uid = l.get(labels::POD_UID_LABEL).cloned().unwrap_or_default();
            let container = l.get(labels::CONTAINER_NAME_LABEL).cloned();
            let pod = (self.pods)(&uid, container_id)
                .map(|(p, _)| p)
                .unwrap_or_else(|| {
                    ObjectRef::pod(
                        l.get(labels::POD_NAMESPACE_LABEL)
                            .map_or("default", |s| s.as_str()),
                        l.get(labels::POD_NAME_LABEL).map_or("", |s| s.as_str()),
                        &uid,
                    )
                });
            return Some((pod, container.or_else(|| Some("POD".into()))));
        }
        // Not relisted yet, or forgotten: the pod cgroup (`pod<uid>`) names the pod, its status
        // the container.
        let uid = cgroup
            .split('/')
            .find_map(|p| p.strip_prefix("pod"))
            .filter(|u| !u.is_empty())?;
        (self.pods)(uid, container_id)
    }
}

impl OomSink for OomEvents {
    fn oom(&self, ev: &OomEvent, _at: SystemTime) {
        let task_ours = self.is_ours(&ev.container);
        if !task_ours && !self.is_ours(&ev.victim_container) && !ev.is_system() {
            return;
        }
        if self.is_node_memory(&ev.victim_container) {
            let mut msg = "System OOM encountered".to_string();
            if !ev.process_name.is_empty() && ev.pid != 0 {
                msg.push_str(&format!(
                    ", victim process: {}, pid: {}",
                    ev.process_name, ev.pid
                ));
            }
            self.events
                .event(&self.node, EventType::Warning, reason::SYSTEM_OOM, &msg);
        }
        if task_ours {
            if let Some((pod, container)) = self.pod_of(&ev.container) {
                let within = match &container {
                    Some(c) if c != "POD" => format!(" in container {c}"),
                    Some(_) => " in the pod sandbox".to_string(),
                    None => String::new(),
                };
                let whose = if ev.is_system() {
                    "the node ran out of memory".to_string()
                } else {
                    format!("memory cgroup {} reached its limit", ev.victim_container)
                };
                let msg = format!(
                    "OOM killer killed process {} ({}){within}: {whose}",
                    ev.pid, ev.process_name
                );
                self.events
                    .event(&pod, EventType::Warning, reason::OOM_KILLING, &msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collectors::{ContainerIdentity, NameRegistry};
    use managers::clock::FakeClock;
    use managers::EventRecorder;
    use std::collections::BTreeMap;

    fn kill(task: &str, victim: &str) -> OomEvent {
        OomEvent {
            pid: 42,
            process_name: "hog".into(),
            timestamp_us: 1,
            container: task.into(),
            victim_container: victim.into(),
            constraint: "CONSTRAINT_MEMCG".into(),
        }
    }

    fn setup() -> (Arc<EventRecorder>, OomEvents) {
        let rec = EventRecorder::new("n1", 100, FakeClock::new());
        let names = NameRegistry::new();
        names.set(
            "/n1/kubepods/besteffort/podu1/c1",
            ContainerIdentity {
                labels: BTreeMap::from([
                    (labels::POD_UID_LABEL.to_string(), "u1".to_string()),
                    (labels::POD_NAME_LABEL.to_string(), "hog-n1".to_string()),
                    (
                        labels::POD_NAMESPACE_LABEL.to_string(),
                        "default".to_string(),
                    ),
                    (labels::CONTAINER_NAME_LABEL.to_string(), "hog".to_string()),
                ]),
                ..Default::default()
            },
        );
        let o = OomEvents::new(
            "n1",
            "/n1/kubepods",
            rec.clone(),
            Arc::new(names),
            Arc::new(|uid: &str, cid: &str| {
                (uid == "u2").then(|| {
                    (
                        ObjectRef::pod("ns", "other-n1", "u2"),
                        (cid == "new").then(|| "fresh".to_string()),
                    )
                })
            }),
        );
        (rec, o)
    }

    #[test]
    fn a_container_over_its_own_limit_is_an_event_on_its_pod_only() {
        let (rec, o) = setup();
        o.oom(
            &kill(
                "/n1/kubepods/besteffort/podu1/c1",
                "/n1/kubepods/besteffort/podu1",
            ),
            SystemTime::now(),
        );
        let evs = rec.list();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].reason, "OOMKilling");
        assert_eq!(evs[0].object.name, "hog-n1");
        assert_eq!(
            evs[0].message,
            "OOM killer killed process 42 (hog) in container hog: memory cgroup /n1/kubepods/besteffort/podu1 reached its limit"
        );
    }

    #[test]
    fn the_nodes_memory_running_out_is_a_system_oom() {
        let (rec, o) = setup();
        // The cgroup bounding the node (an ancestor of kubepods) hit its limit.
        o.oom(
            &kill("/n1/kubepods/besteffort/podu1/c1", "/n1"),
            SystemTime::now(),
        );
        let reasons: Vec<String> = rec.list().iter().map(|e| e.reason.clone()).collect();
        assert_eq!(reasons, vec!["SystemOOM", "OOMKilling"]);
        assert_eq!(
            rec.list()[0].message,
            "System OOM encountered, victim process: hog, pid: 42"
        );
        // A global OOM killing a process that is not ours: only the node event (the same
        // text, so the stored SystemOOM counts it).
        o.oom(&kill("/user.slice", "/"), SystemTime::now());
        let evs = rec.list();
        assert_eq!(evs.len(), 2);
        let sys = evs.iter().find(|e| e.reason == "SystemOOM").unwrap();
        assert_eq!(sys.count, 2);
    }

    #[test]
    fn other_nodes_and_forgotten_containers() {
        let (rec, o) = setup();
        o.oom(
            &kill("/n2/kubepods/podx/c", "/n2/kubepods/podx"),
            SystemTime::now(),
        );
        assert!(rec.list().is_empty(), "another node's pod");
        // The runtime no longer knows the container: the pod cgroup still names the pod.
        o.oom(
            &kill("/n1/kubepods/podu2/gone", "/n1/kubepods/podu2"),
            SystemTime::now(),
        );
        let e = &rec.list()[0];
        assert_eq!(e.object.name, "other-n1");
        assert_eq!(
            e.message,
            "OOM killer killed process 42 (hog): memory cgroup /n1/kubepods/podu2 reached its limit"
        );
        // Started since the last relist: the pod's status names the container.
        o.oom(
            &kill("/n1/kubepods/podu2/new", "/n1/kubepods/podu2"),
            SystemTime::now(),
        );
        assert!(rec
            .list()
            .iter()
            .any(|e| e.message.contains("(hog) in container fresh:")));
    }
}
