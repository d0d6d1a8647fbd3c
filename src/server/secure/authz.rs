//! What an authenticated user may do on the kubelet API, as the kubelet decides it: every
//! request maps to attributes on the node object (resource `nodes`, name = the node, API
//! version `v1`), the verb from the method and the subresource from the path (`stats`,
//! `metrics`, `log`, `checkpoint`, and with fine-grained authorization `pods`, `healthz`,
//! `configz` — each of those falling back to `proxy`, everything else `proxy`). `AlwaysAllow`
//! allows them; `Webhook` asks the API server with a SubjectAccessReview and caches allowed
//! answers for `cacheAuthorizedTTL` (5 min) and denied ones for `cacheUnauthorizedTTL` (30 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use parking_lot::Mutex;

use super::authn::UserInfo;

/// The attributes of one authorization check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: String,
    pub extra: Vec<(String, Vec<String>)>,
    pub verb: &'static str,
    pub subresource: &'static str,
    pub node: String,
}

/// The API verb of an HTTP method, as the kubelet maps it (others map to an empty verb, which
/// no policy allows).
pub fn verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::GET | http::Method::HEAD => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    }
}

fn is_subpath(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// `path.Clean` of a request path: `.` and `..` resolved, repeated slashes folded, rooted.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The subresources a request is checked against, in order; the first allowed wins.
pub fn subresources(path: &str) -> &'static [&'static str] {
    let path = clean_path(path);
    if is_subpath(&path, "/stats") {
        &["stats"]
    } else if is_subpath(&path, "/metrics") {
        &["metrics"]
    } else if is_subpath(&path, "/logs") {
        &["log"]
    } else if is_subpath(&path, "/checkpoint") {
        &["checkpoint"]
    } else if is_subpath(&path, "/pods") || is_subpath(&path, "/runningpods") {
        &["pods", "proxy"]
    } else if is_subpath(&path, "/healthz") {
        &["healthz", "proxy"]
    } else if is_subpath(&path, "/configz") {
        &["configz", "proxy"]
    } else {
        &["proxy"]
    }
}

/// The attribute sets of a request by `user` on `node`.
pub fn request_attributes(
    user: &UserInfo,
    method: &http::Method,
    path: &str,
    node: &str,
) -> Vec<Attributes> {
    subresources(path)
        .iter()
        .map(|sub| Attributes {
            user: user.name.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            verb: verb(method),
            subresource: sub,
            node: node.into(),
        })
        .collect()
}

/// Sends one SubjectAccessReview; a trait so that tests count calls without an API server.
pub trait AccessReviewer: Send + Sync {
    /// `Ok(true)` allowed, `Ok(false)` denied (or no opinion), `Err` no answer.
    fn review<'a>(&'a self, attrs: &'a Attributes) -> BoxFuture<'a, Result<bool, String>>;
}

/// SubjectAccessReview through the API server.
pub struct ApiAccessReviewer(pub kube::Client);

impl AccessReviewer for ApiAccessReviewer {
    fn review<'a>(&'a self, attrs: &'a Attributes) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let api: kube::Api<SubjectAccessReview> = kube::Api::all(self.0.clone());
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(attrs.user.clone()),
                    groups: Some(attrs.groups.clone()),
                    uid: (!attrs.uid.is_empty()).then(|| attrs.uid.clone()),
                    extra: (!attrs.extra.is_empty()).then(|| attrs.extra.iter().cloned().collect()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(attrs.verb.into()),
                        version: Some("v1".into()),
                        resource: Some("nodes".into()),
                        subresource: Some(attrs.subresource.into()),
                        name: Some(attrs.node.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let out = api
                .create(&kube::api::PostParams::default(), &review)
                .await
                .map_err(|e| format!("SubjectAccessReview failed: {e}"))?;
            let status = out
                .status
                .ok_or("SubjectAccessReview came back without a status")?;
            if !status.allowed {
                if let Some(e) = status.evaluation_error.filter(|e| !e.is_empty()) {
                    tracing::debug!(error = %e, "SubjectAccessReview evaluation error");
                }
            }
            Ok(status.allowed && status.denied != Some(true))
        })
    }
}

/// The decision on one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Denied; the attributes of the last check, for the 403 message.
    Deny(Attributes),
    /// The authorizer could not decide (500).
    Error(Attributes, String),
}

/// Cache entries kept at most.
const CACHE_MAX: usize = 8192;

/// `authorization.mode`.
pub enum Authorizer {
    AlwaysAllow,
    Webhook {
        /// `None` without an API server: everything is denied.
        reviewer: Option<Arc<dyn AccessReviewer>>,
        allowed_ttl: Duration,
        denied_ttl: Duration,
        cache: Mutex<HashMap<Attributes, (Instant, bool)>>,
    },
}

impl Authorizer {
    pub fn webhook(
        reviewer: Option<Arc<dyn AccessReviewer>>,
        allowed_ttl: Duration,
        denied_ttl: Duration,
    ) -> Self {
        Authorizer::Webhook {
            reviewer,
            allowed_ttl,
            denied_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Allowed when any of `attrs` (in order) is allowed.
    pub async fn authorize(&self, attrs: Vec<Attributes>) -> Decision {
        let Authorizer::Webhook {
            reviewer,
            allowed_ttl,
            denied_ttl,
            cache,
        } = self
        else {
            return Decision::Allow;
        };
        let mut last = None;
        for a in attrs {
            let now = Instant::now();
            let cached = cache.lock().get(&a).and_then(|(at, allowed)| {
                let ttl = if *allowed { allowed_ttl } else { denied_ttl };
                (now.duration_since(*at) < *ttl).then_some(*allowed)
            });
            let allowed = match cached {
                Some(allowed) => allowed,
                None => {
                    let Some(reviewer) = reviewer else {
                        last = Some(a);
                        continue;
                    };
                    match reviewer.review(&a).await {
                        Ok(allowed) => {
                            let mut c = cache.lock();
                            if c.len() >= CACHE_MAX {
                                c.clear();
                            }
                            c.insert(a.clone(), (now, allowed));
                            allowed
                        }
                        Err(e) => return Decision::Error(a, e),
                    }
                }
            };
            if allowed {
                return Decision::Allow;
            }
            last = Some(a);
        }
        match last {
            Some(a) => Decision::Deny(a),
            None => Decision::Allow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn paths_map_to_the_kubelets_subresources() {
        for (path, subs) in [
            ("/stats/summary", &["stats"][..]),
            ("/stats", &["stats"]),
            ("/statsx", &["proxy"]),
            ("/metrics", &["metrics"]),
            ("/metrics/cadvisor", &["metrics"]),
            ("/logs/", &["log"]),
            ("/logs/syslog", &["log"]),
            ("/pods", &["pods", "proxy"]),
            ("/runningpods/", &["pods", "proxy"]),
            ("/healthz/ping", &["healthz", "proxy"]),
            ("/configz", &["configz", "proxy"]),
            ("/containerLogs/ns/p/c", &["proxy"]),
            ("/exec/ns/p/c", &["proxy"]),
            // Cleaned before matching: a dot-dot cannot turn a proxy request into a stats one.
            ("/stats/../exec/ns/p/c", &["proxy"]),
            ("//metrics", &["metrics"]),
        ] {
            assert_eq!(subresources(path), subs, "{path}");
        }
        assert_eq!(verb(&http::Method::POST), "create");
        assert_eq!(verb(&http::Method::HEAD), "get");
        assert_eq!(verb(&http::Method::OPTIONS), "");
    }

    struct Policy(AtomicUsize);

    impl AccessReviewer for Policy {
        fn review<'a>(&'a self, a: &'a Attributes) -> BoxFuture<'a, Result<bool, String>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(match a.user.as_str() {
                "admin" => Ok(true),
                "proxy-only" => Ok(a.subresource == "proxy"),
                "broken" => Err("SubjectAccessReview failed: timeout".into()),
                _ => Ok(false),
            }))
        }
    }

    #[tokio::test]
    async fn webhook_decisions_are_cached_and_fall_back_to_proxy() {
        let policy = Arc::new(Policy(AtomicUsize::new(0)));
        let authz = Authorizer::webhook(
            Some(policy.clone()),
            Duration::from_secs(300),
            Duration::from_secs(30),
        );
        let attrs = |u: &str, p: &str| request_attributes(&user(u), &http::Method::GET, p, "n1");
        for _ in 0..3 {
            assert_eq!(
                authz.authorize(attrs("admin", "/pods")).await,
                Decision::Allow
            );
        }
        assert_eq!(policy.0.load(Ordering::SeqCst), 1);
        // nodes/pods denied, nodes/proxy allowed: allowed, as the kubelet's fallback does.
        assert_eq!(
            authz.authorize(attrs("proxy-only", "/pods")).await,
            Decision::Allow
        );
        match authz.authorize(attrs("eve", "/stats/summary")).await {
            Decision::Deny(a) => {
                assert_eq!(
                    (a.user.as_str(), a.verb, a.subresource),
                    ("eve", "get", "stats")
                )
            }
            d => panic!("{d:?}"),
        }
        let before = policy.0.load(Ordering::SeqCst);
        authz.authorize(attrs("eve", "/stats/summary")).await;
        assert_eq!(
            policy.0.load(Ordering::SeqCst),
            before,
            "denials cached too"
        );
        assert!(matches!(
            authz.authorize(attrs("broken", "/metrics")).await,
            Decision::Error(_, _)
        ));
        let always = Authorizer::AlwaysAllow;
        assert_eq!(
            always.authorize(attrs("eve", "/exec/a/b/c")).await,
            Decision::Allow
        );
        let nobody = Authorizer::webhook(None, Duration::ZERO, Duration::ZERO);
        assert!(matches!(
            nobody.authorize(attrs("admin", "/pods")).await,
            Decision::Deny(_)
        ));
    }
}
