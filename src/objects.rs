//! Where ConfigMaps and Secrets come from: the API server in API-server mode, nothing in
//! standalone mode, an in-memory store in tests. Env vars (`configMapKeyRef`, `secretKeyRef`,
//! `envFrom`) and the configMap/secret volume plugins read through [`ObjectSource`].
//!
//! In API-server mode [`api::ApiObjects`] keeps one watch per object that a registered pod
//! references ([`ObjectSource::register_pod`], called by the sync loop when a pod is added or
//! updated, [`ObjectSource::unregister_pod`] when it is removed). The pod sync awaits
//! [`ObjectSource::wait_synced`] before its lookups, so that a new object's first read does not
//! block a runtime worker thread.

pub mod api;
pub mod refs;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use parking_lot::RwLock;

/// Called with the UID of each pod that uses an object that changed.
pub type ChangeHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The narrow lookup the pod workers and volume plugins need.
pub trait ObjectSource: Send + Sync {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
    /// The pod (as it is now) is on the node: the objects it references must be kept current.
    fn register_pod(&self, _pod: &Pod) {}
    /// The pod left the node: its references are released.
    fn unregister_pod(&self, _pod: &Pod) {}
    /// Waits, without blocking a thread, until every object the registered `pod` references
    /// has been read once or could not be read in time; the lookups that follow then answer
    /// from what is cached at once. Async callers await this before [`Self::config_map`] and
    /// [`Self::secret`]. Sources that never wait (the in-memory one) are ready at once.
    fn wait_synced<'a>(&'a self, _pod: &'a Pod) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }
    /// Who to tell when an object a registered pod uses changes.
    fn set_on_change(&self, _hook: ChangeHook) {}
    /// A token of `pod`'s service account for a projected `serviceAccountToken` source
    /// (TokenRequest with `audience` and `expiration_seconds`, bound to the pod).
    fn service_account_token(
        &self,
        _pod: &Pod,
        _audience: &str,
        _expiration_seconds: Option<i64>,
    ) -> Result<String, String> {
        Err(
            "needs a TokenRequest from the API server; this node runs standalone (no --kubeconfig)"
                .into(),
        )
    }
}

/// A store filled by hand (tests) or by a watch (API-server mode).
#[derive(Default, Clone)]
pub struct MemoryObjects {
    config_maps: Arc<RwLock<HashMap<(String, String), ConfigMap>>>,
    secrets: Arc<RwLock<HashMap<(String, String), Secret>>>,
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

impl MemoryObjects {
    pub fn put_config_map(&self, cm: ConfigMap) {
        let ns = cm
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = cm.metadata.name.clone().unwrap_or_default();
        self.config_maps.write().insert(key(&ns, &name), cm);
    }

    pub fn put_secret(&self, s: Secret) {
        let ns = s
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = s.metadata.name.clone().unwrap_or_default();
        self.secrets.write().insert(key(&ns, &name), s);
    }

    pub fn remove_config_map(&self, namespace: &str, name: &str) {
        self.config_maps.write().remove(&key(namespace, name));
    }

    pub fn remove_secret(&self, namespace: &str, name: &str) {
        self.secrets.write().remove(&key(namespace, name));
    }
}

impl ObjectSource for MemoryObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.config_maps.read().get(&key(namespace, name)).cloned()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets.read().get(&key(namespace, name)).cloned()
    }
}
