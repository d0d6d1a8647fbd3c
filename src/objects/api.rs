//! Secrets and ConfigMaps from the API server, as the kubelet's watch-based manager
//! (`pkg/kubelet/util/manager/watch_based_manager.go`) keeps them: one watch per referenced
//! `(namespace, name)` (a list+watch with `fieldSelector=metadata.name=<name>`, what the Node
//! authorizer lets a kubelet do), started when the first pod that references the object is
//! registered and stopped when the last one goes. An object marked `immutable` is not watched
//! after it was read once. Lookups are answered from the cache; a new object is waited for up
//! to [`SYNC_WAIT`] after its watch started, for the watch's initial list, as the kubelet's
//! `Get` does. The pod sync does that waiting asynchronously ([`ObjectSource::wait_synced`])
//! before its lookups, so a lookup on a runtime worker never blocks; only a lookup that did not
//! wait first (a blocking thread's) blocks, and never past that deadline.
//!
//! When a watched object changes (or first appears), the pods that use it are handed to the
//! change hook, which the kubelet wires to a volume refresh and a pod sync.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::{ChangeHook, ObjectSource};
use crate::tokens::TokenManager;

/// How long after its watch started a new object is waited for (its watch's initial list).
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
    /// Signalled at each store, for blocking readers.
    synced: Condvar,
    /// True once the first list completed, for async readers.
    synced_tx: watch::Sender<bool>,
    /// When readers stop waiting for the first list: [`SYNC_WAIT`] after the watch started.
    deadline: Instant,
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
            synced_tx: watch::Sender::new(false),
            deadline: Instant::now() + SYNC_WAIT,
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

    /// Waits until each of `keys` (those registered) has had its first list, or until
    /// [`SYNC_WAIT`] after its watch started; never blocks a thread.
    pub async fn wait_synced(&self, keys: &HashSet<Key>) {
        let waits: Vec<(watch::Receiver<bool>, Instant)> = {
            let entries = self.entries.lock();
            keys.iter()
                .filter_map(|k| entries.get(k))
                .map(|e| (e.slot.synced_tx.subscribe(), e.slot.deadline))
                .collect()
        };
        for (mut rx, deadline) in waits {
            let deadline = tokio::time::Instant::from_std(deadline);
            let _ = tokio::time::timeout_at(deadline, rx.wait_for(|synced| *synced)).await;
        }
    }

    /// The object now. `None` when it does not exist, is not referenced by any registered pod,
    /// or could not be read. Answers at once after [`Self::wait_synced`] (or once the watch is
    /// [`SYNC_WAIT`] old); otherwise blocks until the watch's first list or that deadline, so
    /// async code awaits [`Self::wait_synced`] first.
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
        while !st.synced && Instant::now() < slot.deadline {
            if slot.synced.wait_until(&mut st, slot.deadline).timed_out() {
                break;
            }
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
    slot.synced_tx.send_replace(true);
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

/// The `(namespace, name)` keys of the Secrets and of the ConfigMaps `pod` references.
fn pod_keys(pod: &Pod) -> (HashSet<Key>, HashSet<Key>) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let refs = super::refs::pod_references(pod);
    let keys = |names: HashSet<String>| -> HashSet<Key> {
        names.into_iter().map(|n| (ns.to_string(), n)).collect()
    };
    (keys(refs.secrets), keys(refs.config_maps))
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
        let (secrets, config_maps) = pod_keys(pod);
        self.secrets.register(uid, secrets);
        self.config_maps.register(uid, config_maps);
    }

    fn wait_synced<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, ()> {
        let (secrets, config_maps) = pod_keys(pod);
        Box::pin(async move {
            self.secrets.wait_synced(&secrets).await;
            self.config_maps.wait_synced(&config_maps).await;
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A client whose API server never answers: watches never list.
    fn silent_client() -> kube::Client {
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            std::future::pending::<
                Result<http::Response<kube::client::Body>, std::convert::Infallible>,
            >()
            .await
        });
        kube::Client::new(svc, "default")
    }

    fn pod(uid: &str, spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": spec,
        }))
        .unwrap()
    }

    fn slot<K: Watched>(cache: &Cache<K>, name: &str) -> Arc<Slot<K>> {
        cache.entries.lock()[&("default".to_string(), name.to_string())]
            .slot
            .clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookups_are_waited_for_asynchronously_and_never_past_the_deadline() {
        let objects = ApiObjects::new(silent_client());
        let p = pod(
            "u1",
            json!({"volumes": [{"name": "v", "configMap": {"name": "app"}}],
            "containers": [{"name": "c", "image": "x", "env": [
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "never", "key": "k"}}}
            ]}]}),
        );
        let start = Instant::now();
        objects.register_pod(&p);

        // The ConfigMap's first list arrives: its waiters are woken at once.
        let cm_slot = slot(&objects.config_maps, "app");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let cm: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": "app", "namespace": "default", "resourceVersion": "1"},
                "data": {"k": "v"}
            }))
            .unwrap();
            store(&cm_slot, Some(cm));
        });
        let (_, config_maps) = pod_keys(&p);
        objects.config_maps.wait_synced(&config_maps).await;
        assert!(start.elapsed() < Duration::from_millis(900));
        assert!(objects.config_map("default", "app").is_some());

        // The Secret's watch never lists: the wait ends SYNC_WAIT after it started...
        objects.wait_synced(&p).await;
        let waited = start.elapsed();
        assert!(
            waited >= SYNC_WAIT - Duration::from_millis(50),
            "{waited:?}"
        );
        assert!(waited < SYNC_WAIT * 3, "{waited:?}");
        // ...and lookups after it answer from the cache at once (a worker thread is never
        // blocked).
        let t = Instant::now();
        assert!(objects.secret("default", "never").is_none());
        assert!(objects.config_map("default", "app").is_some());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert!(objects.secret("default", "unregistered").is_none());

        // A lookup that did not wait first (a blocking thread's) waits for the first list.
        let p2 = pod(
            "u2",
            json!({"containers": [{"name": "c", "image": "x",
                    "envFrom": [{"secretRef": {"name": "late"}}]}]}),
        );
        objects.register_pod(&p2);
        let late = slot(&objects.secrets, "late");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let s: Secret = serde_json::from_value(json!({
                "metadata": {"name": "late", "namespace": "default", "resourceVersion": "1"}
            }))
            .unwrap();
            store(&late, Some(s));
        });
        let secrets = objects.secrets.clone();
        let t = Instant::now();
        let got = tokio::task::spawn_blocking(move || secrets.get("default", "late"))
            .await
            .unwrap();
        assert!(got.is_some());
        assert!(
            t.elapsed() < Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn the_in_memory_source_is_ready_at_once() {
        let objects = crate::objects::MemoryObjects::default();
        objects
            .wait_synced(&pod("u", json!({"containers": []})))
            .await;
    }
}
