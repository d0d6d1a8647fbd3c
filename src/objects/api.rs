//! Secrets and ConfigMaps from the API server, as the kubelet's watch-based manager
//! (`pkg/kubelet/util/manager/watch_based_manager.go`) keeps them: one watch per referenced
//! `(namespace, name)` (a list+watch with `fieldSelector=metadata.name=<name>`, what the Node
//! authorizer lets a kubelet do), started when the first pod that references the object is
//! registered and stopped when the last one goes. An object marked `immutable` is not watched
//! after it was read once. Lookups are answered from the cache; the first one of a new object
//! waits up to [`SYNC_WAIT`] for the watch's initial list, as the kubelet's `Get` does.
//!
//! When a watched object changes (or first appears), the pods that use it are handed to the
//! change hook, which the kubelet wires to a volume refresh and a pod sync.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::de::DeserializeOwned;

use super::{ChangeHook, ObjectSource};
use crate::tokens::TokenManager;

/// How long the first lookup of an object waits for its watch's initial list.
pub const SYNC_WAIT: Duration = Duration::from_secs(1);

/// What the cache needs of a Secret or ConfigMap.
pub trait Watched:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The kubelet's name of the kind in errors and logs (`secret`, `configmap`).
    const KIND: &'static str;
    fn immutable(&self) -> bool;
}

impl Watched for Secret {
    const KIND: &'static str = "secret";
    fn immutable(&self) -> bool {
        self.immutable == Some(true)
    }
}

impl Watched for ConfigMap {
    const KIND: &'static str = "configmap";
    fn immutable(&self) -> bool {
        self.immutable == Some(true)
    }
}

type Key = (String, String);

/// One object's cached state, shared by its watch task and the readers.
struct Slot<K> {
    state: Mutex<SlotState<K>>,
    synced: Condvar,
}

struct SlotState<K> {
    /// The initial list has completed at least once.
    synced: bool,
    object: Option<K>,
    /// The last watch error before the first sync (for the log).
    error: Option<String>,
}

impl<K> Slot<K> {
    fn new() -> Self {
        Self {
            state: Mutex::new(SlotState {
                synced: false,
                object: None,
                error: None,
            }),
            synced: Condvar::new(),
        }
    }
}

struct Entry<K> {
    /// UIDs of the registered pods that reference the object.
    users: HashSet<String>,
    slot: Arc<Slot<K>>,
    task: tokio::task::JoinHandle<()>,
}

/// The cache of one kind.
pub struct Cache<K: Watched> {
    client: kube::Client,
    handle: tokio::runtime::Handle,
    hook: Arc<RwLock<Option<ChangeHook>>>,
    entries: Mutex<HashMap<Key, Entry<K>>>,
    /// What each registered pod references, for the diff on re-registration.
    by_pod: Mutex<HashMap<String, HashSet<Key>>>,
    me: Weak<Cache<K>>,
}

impl<K: Watched> Cache<K> {
    fn new(
        client: kube::Client,
        handle: tokio::runtime::Handle,
        hook: Arc<RwLock<Option<ChangeHook>>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            client,
            handle,
            hook,
            entries: Mutex::new(HashMap::new()),
            by_pod: Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    /// Makes `keys` the objects pod `uid` references (`RegisterPod`): new references start
    /// watches, dropped ones release theirs.
    fn register(&self, uid: &str, keys: HashSet<Key>) {
        let old = if keys.is_empty() {
            self.by_pod.lock().remove(uid).unwrap_or_default()
        } else {
            self.by_pod
                .lock()
                .insert(uid.to_string(), keys.clone())
                .unwrap_or_default()
        };
        let mut entries = self.entries.lock();
        for k in keys.difference(&old) {
            entries
                .entry(k.clone())
                .or_insert_with(|| self.start(k.clone()))
                .users
                .insert(uid.to_string());
        }
        for k in old.difference(&keys) {
            let gone = match entries.get_mut(k) {
                Some(e) => {
                    e.users.remove(uid);
                    e.users.is_empty()
                }
                None => false,
            };
            if gone {
                if let Some(e) = entries.remove(k) {
                    e.task.abort();
                    tracing::debug!(kind = K::KIND, namespace = %k.0, name = %k.1, "object no longer referenced; watch stopped");
                }
            }
        }
    }

    fn start(&self, key: Key) -> Entry<K> {
        let slot = Arc::new(Slot::new());
        let api: Api<K> = Api::namespaced(self.client.clone(), &key.0);
        let me = self.me.clone();
        let task = self
            .handle
            .spawn(watch_object(api, key.clone(), slot.clone(), me));
        tracing::debug!(kind = K::KIND, namespace = %key.0, name = %key.1, "watching object");
        Entry {
            users: HashSet::new(),
            slot,
            task,
        }
    }

    /// Hands the users of `key` to the change hook.
    fn changed(&self, key: &Key) {
        let users: Vec<String> = match self.entries.lock().get(key) {
            Some(e) => e.users.iter().cloned().collect(),
            None => return,
        };
        let hook = self.hook.read().clone();
        if let Some(hook) = hook {
            for uid in &users {
                hook(uid);
            }
        }
    }

    /// The object now, waiting up to [`SYNC_WAIT`] for a new watch's first list. `None`
    /// when it does not exist, is not referenced by any registered pod, or could not be read.
    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        let key = (namespace.to_string(), name.to_string());
        let slot = match self.entries.lock().get(&key) {
            Some(e) => e.slot.clone(),
            None => {
                tracing::warn!(kind = K::KIND, %namespace, %name, "object {namespace:?}/{name:?} not registered");
                return None;
            }
        };
        let mut st = slot.state.lock();
        if !st.synced {
            let _ = slot.synced.wait_for(&mut st, SYNC_WAIT);
        }
        if !st.synced {
            tracing::warn!(kind = K::KIND, %namespace, %name, error = st.error.as_deref().unwrap_or("timed out"), "failed to sync {} cache", K::KIND);
        }
        st.object.clone()
    }

    /// Objects being watched now.
    pub fn watches(&self) -> usize {
        self.entries
            .lock()
            .values()
            .filter(|e| !e.task.is_finished())
            .count()
    }

    /// Objects referenced by registered pods (watched or immutable and cached).
    pub fn referenced(&self) -> usize {
        self.entries.lock().len()
    }
}

/// Stores `object` as the slot's value; true if it differs from what was there (by
/// resourceVersion) or is the first sync.
fn store<K: Watched>(slot: &Slot<K>, object: Option<K>) -> bool {
    let mut st = slot.state.lock();
    let rv = |o: &Option<K>| {
        o.as_ref()
            .map(|o| o.meta().resource_version.clone().unwrap_or_default())
    };
    let changed = !st.synced || rv(&st.object) != rv(&object);
    st.object = object;
    st.synced = true;
    st.error = None;
    slot.synced.notify_all();
    changed
}

/// The reflector of one object: list+watch by name, restarted with backoff on errors, ended
/// once the object is immutable.
async fn watch_object<K: Watched>(
    api: Api<K>,
    key: Key,
    slot: Arc<Slot<K>>,
    cache: Weak<Cache<K>>,
) {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", key.1));
    let mut stream = watcher(api, cfg).default_backoff().boxed();
    let mut listed: Option<K> = None;
    while let Some(ev) = stream.next().await {
        let update = match ev {
            Ok(watcher::Event::Init) => {
                listed = None;
                None
            }
            Ok(watcher::Event::InitApply(o)) => {
                listed = Some(o);
                None
            }
            Ok(watcher::Event::InitDone) => Some(listed.take()),
            Ok(watcher::Event::Apply(o)) => Some(Some(o)),
            Ok(watcher::Event::Delete(_)) => Some(None),
            Err(e) => {
                tracing::warn!(kind = K::KIND, namespace = %key.0, name = %key.1, error = %e, "object watch failed; retrying");
                slot.state.lock().error = Some(e.to_string());
                None
            }
        };
        let Some(object) = update else { continue };
        let immutable = object.as_ref().is_some_and(Watched::immutable);
        if store(&slot, object) {
            tracing::debug!(kind = K::KIND, namespace = %key.0, name = %key.1, "object changed");
            match cache.upgrade() {
                Some(c) => c.changed(&key),
                None => return,
            }
        }
        if immutable {
            // Immutable objects never change: the cached copy is final.
            tracing::debug!(kind = K::KIND, namespace = %key.0, name = %key.1, "object is immutable; watch stopped");
            return;
        }
    }
}

/// Secrets and ConfigMaps from the API server.
pub struct ApiObjects {
    pub secrets: Arc<Cache<Secret>>,
    pub config_maps: Arc<Cache<ConfigMap>>,
    /// Service-account tokens for projected volumes.
    pub tokens: Arc<TokenManager>,
    hook: Arc<RwLock<Option<ChangeHook>>>,
    handle: tokio::runtime::Handle,
}

/// How long a volume setup waits for a TokenRequest.
const TOKEN_WAIT: Duration = Duration::from_secs(30);

impl ApiObjects {
    /// A source reading through `client`; watches run on the current tokio runtime.
    pub fn new(client: kube::Client) -> Self {
        let tokens = Arc::new(TokenManager::new(client.clone()));
        Self::with_tokens(client, tokens)
    }

    /// A source whose tokens come from `tokens` (a test's clock).
    pub fn with_tokens(client: kube::Client, tokens: Arc<TokenManager>) -> Self {
        let handle = tokio::runtime::Handle::current();
        let hook = Arc::new(RwLock::new(None));
        Self {
            secrets: Cache::new(client.clone(), handle.clone(), hook.clone()),
            config_maps: Cache::new(client, handle.clone(), hook.clone()),
            tokens,
            hook,
            handle,
        }
    }

    /// Watches running now, both kinds.
    pub fn watches(&self) -> usize {
        self.secrets.watches() + self.config_maps.watches()
    }
}

impl ObjectSource for ApiObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.config_maps.get(namespace, name)
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets.get(namespace, name)
    }

    fn register_pod(&self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let refs = super::refs::pod_references(pod);
        let keys = |names: HashSet<String>| -> HashSet<Key> {
            names.into_iter().map(|n| (ns.to_string(), n)).collect()
        };
        self.secrets.register(uid, keys(refs.secrets));
        self.config_maps.register(uid, keys(refs.config_maps));
    }

    fn unregister_pod(&self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        self.tokens.delete_pod(uid);
        self.secrets.register(uid, HashSet::new());
        self.config_maps.register(uid, HashSet::new());
    }

    fn set_on_change(&self, hook: ChangeHook) {
        *self.hook.write() = Some(hook);
    }

    /// Runs the TokenRequest on the agent's runtime and waits for it (volume setup runs on
    /// blocking threads).
    fn service_account_token(
        &self,
        pod: &Pod,
        audience: &str,
        expiration_seconds: Option<i64>,
    ) -> Result<String, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let tokens = self.tokens.clone();
        let (pod, audience) = (pod.clone(), audience.to_string());
        self.handle.spawn(async move {
            let _ = tx.send(tokens.pod_token(&pod, &audience, expiration_seconds).await);
        });
        rx.recv_timeout(TOKEN_WAIT)
            .unwrap_or_else(|_| Err("failed to fetch token: timed out".into()))
    }
}
