//! The node Lease (`kube-node-lease/<node>`), as the kubelet's lease controller
//! (`component-helpers/apimachinery/lease`): holderIdentity = the node, leaseDurationSeconds =
//! `nodeLeaseDurationSeconds`, renewTime renewed every quarter of the duration; created when
//! missing with an owner reference to the Node (added later when the Node did not exist yet);
//! an update that conflicts (409) reads the Lease again and retries.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};

use crate::apiclient::reachability::{backoff, Reachability};

/// The namespace of node Leases.
pub const NAMESPACE: &str = "kube-node-lease";
/// Update attempts per renewal (`maxUpdateRetries`).
const MAX_UPDATE_RETRIES: usize = 5;

/// The renew interval for a lease duration (the kubelet's 25 %).
pub fn renew_interval(duration_seconds: u32) -> Duration {
    Duration::from_millis(u64::from(duration_seconds) * 250)
}

/// The owner reference to the Node.
pub fn owner_ref(node: &Node) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone()?,
        uid: node.metadata.uid.clone()?,
        ..Default::default()
    })
}

/// The Lease as it should be at `now`, from the current one (or none).
pub fn renewed(
    current: Option<&Lease>,
    node: &str,
    duration_seconds: u32,
    owner: Option<OwnerReference>,
    now: MicroTime,
) -> Lease {
    let mut l = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            ..Default::default()
        },
        spec: None,
    });
    let spec = l.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = Some(node.to_string());
    spec.lease_duration_seconds = Some(duration_seconds as i32);
    spec.renew_time = Some(now);
    let has_owner = l
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| !o.is_empty());
    if !has_owner {
        if let Some(o) = owner {
            l.metadata.owner_references = Some(vec![o]);
        }
    }
    l
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The renew loop.
pub struct LeaseLoop {
    pub client: kube::Client,
    pub node: String,
    pub duration_seconds: u32,
    pub reach: Reachability,
}

impl LeaseLoop {
    async fn node_owner(&self) -> Option<OwnerReference> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let r = nodes.get_opt(&self.node).await;
        self.reach.observe(&r);
        r.ok().flatten().as_ref().and_then(owner_ref)
    }

    /// One renewal: an update of the Lease the server last returned (as the kubelet's
    /// controller, which keeps `latestLease`), or get (create when missing) then update, with
    /// up to 5 tries on conflicts.
    async fn renew(&self, latest: &mut Option<Lease>) -> Result<(), String> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), NAMESPACE);
        for _ in 0..MAX_UPDATE_RETRIES {
            let current = match latest.take() {
                Some(l) => Some(l),
                None => {
                    let got = leases.get_opt(&self.node).await;
                    self.reach.observe(&got);
                    got.map_err(|e| format!("failed to get node lease: {e}"))?
                }
            };
            let needs_owner = current.as_ref().is_none_or(|l| {
                l.metadata
                    .owner_references
                    .as_ref()
                    .is_none_or(|o| o.is_empty())
            });
            let owner = if needs_owner {
                self.node_owner().await
            } else {
                None
            };
            let want = renewed(
                current.as_ref(),
                &self.node,
                self.duration_seconds,
                owner,
                micro_now(),
            );
            let r = match current {
                None => leases.create(&PostParams::default(), &want).await,
                Some(_) => {
                    leases
                        .replace(&self.node, &PostParams::default(), &want)
                        .await
                }
            };
            self.reach.observe(&r);
            match r {
                Ok(l) => {
                    *latest = Some(l);
                    return Ok(());
                }
                // A conflict, or a Lease deleted behind our back: read it again.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue,
                Err(e) => return Err(format!("failed to update lease: {e}")),
            }
        }
        Err(format!(
            "failed {MAX_UPDATE_RETRIES} attempts to update lease"
        ))
    }

    /// Renews until aborted; failures back off (200 ms doubling up to the renew interval).
    pub async fn run(self) {
        let interval = renew_interval(self.duration_seconds);
        let mut failures = 0u32;
        let mut latest = None;
        loop {
            match self.renew(&mut latest).await {
                Ok(()) => {
                    failures = 0;
                    tokio::time::sleep(interval).await;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, "node lease not renewed; retrying");
                    tokio::time::sleep(backoff(failures, interval)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn a_new_lease_is_held_by_the_node_and_owned_by_it() {
        assert_eq!(renew_interval(40), Duration::from_secs(10));
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: "n1".into(),
            uid: "u1".into(),
            ..Default::default()
        };
        let l = renewed(None, "n1", 40, Some(owner.clone()), t(5));
        assert_eq!(l.metadata.namespace.as_deref(), Some(NAMESPACE));
        let spec = l.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time, Some(t(5)));
        assert_eq!(l.metadata.owner_references, Some(vec![owner]));
        // Renewing keeps the owner and moves renewTime.
        let l2 = renewed(Some(&l), "n1", 40, None, t(15));
        assert_eq!(l2.spec.unwrap().renew_time, Some(t(15)));
        assert_eq!(l2.metadata.owner_references.unwrap().len(), 1);
    }
}
