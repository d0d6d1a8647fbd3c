//! Service-account tokens for projected `serviceAccountToken` volume sources, as the kubelet's
//! token manager (`pkg/kubelet/token/token_manager.go`) gets them: a TokenRequest
//! (`serviceaccounts/<sa>/token`) with the source's audience and `expirationSeconds`, bound to
//! the pod, cached per (service account, namespace, audiences, expiration, bound pod) and asked
//! again once 80 % of its life has passed or it is 24 h old (each less a jitter of up to 10 s).
//! The volume manager's periodic refresh rewrites the file when the token changed. A pod's
//! tokens are dropped when it leaves the node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, PostParams};
use parking_lot::Mutex;

/// A token is refreshed when it is this old, whatever its expiration.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// Refreshes start up to this much earlier, spread over pods.
pub const MAX_JITTER: Duration = Duration::from_secs(10);
/// The API's default `expirationSeconds` of a projected token.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The clock the manager reads (a test moves it).
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    service_account: String,
    audiences: Vec<String>,
    expiration_seconds: i64,
    pod_uid: String,
}

#[derive(Clone)]
struct Cached {
    token: String,
    expires: SystemTime,
    expiration_seconds: i64,
}

/// The node's token cache.
pub struct TokenManager {
    client: kube::Client,
    clock: Clock,
    cache: Mutex<HashMap<Key, Cached>>,
}

impl TokenManager {
    pub fn new(client: kube::Client) -> Self {
        Self::with_clock(client, Arc::new(SystemTime::now))
    }

    pub fn with_clock(client: kube::Client, clock: Clock) -> Self {
        Self {
            client,
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The token for `pod`'s service account with `audience` (empty: the API server's) and
    /// `expiration_seconds`, from the cache unless it needs a refresh. A failed refresh keeps
    /// serving the cached token while it is still valid, as the kubelet does.
    pub async fn pod_token(
        &self,
        pod: &Pod,
        audience: &str,
        expiration_seconds: Option<i64>,
    ) -> Result<String, String> {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let service_account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let audiences: Vec<String> = if audience.is_empty() {
            Vec::new()
        } else {
            vec![audience.to_string()]
        };
        let expiration_seconds = expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        let key = Key {
            namespace,
            service_account,
            audiences,
            expiration_seconds,
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let now = (self.clock)();
        let cached = self.cache.lock().get(&key).cloned();
        if let Some(c) = &cached {
            if !requires_refresh(c, now, jitter(&key)) {
                return Ok(c.token.clone());
            }
        }
        match self.request(&key, pod).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                self.cache.lock().insert(key, fresh);
                Ok(token)
            }
            Err(e) => match cached {
                Some(c) if c.expires > now => {
                    tracing::warn!(namespace = %key.namespace, service_account = %key.service_account, error = %e, "cannot refresh service account token; using the cached one");
                    Ok(c.token)
                }
                _ => Err(e),
            },
        }
    }

    async fn request(&self, key: &Key, pod: &Pod) -> Result<Cached, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &key.namespace);
        let req = TokenRequest {
            spec: TokenRequestSpec {
                audiences: key.audiences.clone(),
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let tr = api
            .create_token_request(&key.service_account, &PostParams::default(), &req)
            .await
            .map_err(|e| {
                format!(
                    "failed to fetch token: {}",
                    match e {
                        kube::Error::Api(s) => s.message,
                        other => other.to_string(),
                    }
                )
            })?;
        let status = tr
            .status
            .ok_or_else(|| "failed to fetch token: the TokenRequest has no status".to_string())?;
        let expires = SystemTime::UNIX_EPOCH
            + Duration::from_secs(status.expiration_timestamp.0.as_second().max(0) as u64);
        Ok(Cached {
            token: status.token,
            expires,
            expiration_seconds: tr.spec.expiration_seconds.unwrap_or(key.expiration_seconds),
        })
    }

    /// Drops every token bound to pod `uid` (`DeleteServiceAccountToken`).
    pub fn delete_pod(&self, uid: &str) {
        self.cache.lock().retain(|k, _| k.pod_uid != uid);
    }

    /// Tokens cached now.
    pub fn cached(&self) -> usize {
        self.cache.lock().len()
    }
}

/// A stable per-token jitter below [`MAX_JITTER`], so refreshes of many pods spread out.
fn jitter(key: &Key) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    Duration::from_millis(h.finish() % MAX_JITTER.as_millis() as u64)
}

/// Whether a token must be requested again (`requiresRefresh`): 24 h after it was issued, or
/// within the last 20 % of its life, each less `jitter`.
fn requires_refresh(c: &Cached, now: SystemTime, jitter: Duration) -> bool {
    let life = Duration::from_secs(c.expiration_seconds.max(0) as u64);
    let issued = c.expires.checked_sub(life).unwrap_or(c.expires);
    if now > issued + MAX_TTL.saturating_sub(jitter) {
        return true;
    }
    let refresh_at = c
        .expires
        .checked_sub(life / 5 + jitter)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    now > refresh_at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(issued: SystemTime, secs: i64) -> Cached {
        Cached {
            token: "t".into(),
            expires: issued + Duration::from_secs(secs as u64),
            expiration_seconds: secs,
        }
    }

    #[test]
    fn refresh_at_eighty_percent_of_life_or_after_a_day() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let c = cached(t0, 3600);
        let j = Duration::ZERO;
        assert!(!requires_refresh(&c, t0, j));
        assert!(!requires_refresh(&c, t0 + Duration::from_secs(2879), j));
        assert!(requires_refresh(&c, t0 + Duration::from_secs(2881), j));
        // The jitter starts it earlier.
        assert!(requires_refresh(
            &c,
            t0 + Duration::from_secs(2875),
            Duration::from_secs(10)
        ));
        // A week-long token is refreshed after 24 h.
        let week = cached(t0, 7 * 24 * 3600);
        assert!(!requires_refresh(
            &week,
            t0 + MAX_TTL - Duration::from_secs(1),
            j
        ));
        assert!(requires_refresh(
            &week,
            t0 + MAX_TTL + Duration::from_secs(1),
            j
        ));
    }
}
