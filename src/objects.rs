//! Where ConfigMaps and Secrets come from: the API server in API-server mode, nothing in
//! standalone mode, an in-memory store in tests. Env vars (`configMapKeyRef`, `secretKeyRef`,
//! `envFrom`) and the configMap/secret volume plugins read through [`ObjectSource`].

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use parking_lot::RwLock;

/// The narrow lookup the pod workers and volume plugins need.
pub trait ObjectSource: Send + Sync {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
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
