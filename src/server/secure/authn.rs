//! Who sent a request to the kubelet API, as the kubelet's delegating authenticator decides it:
//! an x509 client certificate that chains to `authentication.x509.clientCAFile` (user = CN,
//! groups = O), else a bearer token the API server accepts in a TokenReview
//! (`authentication.webhook`, answers cached for `cacheTTL` by a hash of the token), else — only
//! when `authentication.anonymous.enabled` and no credential was offered — `system:anonymous`.
//! A credential that is offered and fails is a 401 even with anonymous requests allowed, as in
//! the kubelet (its union authenticator fails on error before the anonymous one).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

/// An authenticated user, as the authorizer and a SubjectAccessReview see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    fn anonymous() -> Self {
        UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// Adds `system:authenticated`, as the kubelet's authenticated-group adder does.
    fn authenticated(mut self) -> Self {
        if !self.groups.iter().any(|g| g == "system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// Why a request is not authenticated (logged; the client only sees `Unauthorized`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthnError {
    #[error("no credentials: neither a client certificate nor a bearer token")]
    NoCredentials,
    #[error("client certificate: {0}")]
    Certificate(String),
    #[error("bearer token: {0}")]
    Token(String),
    #[error("bearer token: token webhook authentication is not available without --kubeconfig")]
    NoWebhook,
}

/// Sends one TokenReview; a trait so that tests count calls without an API server.
pub trait TokenReviewer: Send + Sync {
    /// `Ok(Some(user))` authenticated, `Ok(None)` rejected by the API server, `Err` no answer.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, String>>;
}

/// TokenReview through the API server.
pub struct ApiTokenReviewer(pub kube::Client);

impl TokenReviewer for ApiTokenReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
        Box::pin(self.send(token))
    }
}

impl ApiTokenReviewer {
    async fn send(&self, token: &str) -> Result<Option<UserInfo>, String> {
        let api: kube::Api<TokenReview> = kube::Api::all(self.0.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.into()),
                audiences: None,
            },
            ..Default::default()
        };
        let out = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| format!("TokenReview failed: {e}"))?;
        let Some(status) = out.status else {
            return Err("TokenReview came back without a status".into());
        };
        if let Some(err) = status.error.filter(|e| !e.is_empty()) {
            if status.authenticated != Some(true) {
                return Err(format!("TokenReview error: {err}"));
            }
        }
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let u = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            name: u.username.unwrap_or_default(),
            uid: u.uid.unwrap_or_default(),
            groups: u.groups.unwrap_or_default(),
            extra: u.extra.unwrap_or_default(),
        }))
    }
}

/// Answers by SHA-256 of the token: when asked, and the user (`None`: rejected).
type TokenCache = HashMap<[u8; 32], (Instant, Option<UserInfo>)>;

/// The token webhook with its cache.
pub struct TokenWebhook {
    reviewer: Arc<dyn TokenReviewer>,
    ttl: Duration,
    cache: Mutex<TokenCache>,
}

/// Cache entries kept at most; expired entries are dropped first when it fills.
const TOKEN_CACHE_MAX: usize = 4096;

impl TokenWebhook {
    pub fn new(reviewer: Arc<dyn TokenReviewer>, ttl: Duration) -> Self {
        TokenWebhook {
            reviewer,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn authenticate(&self, token: &str) -> Result<UserInfo, AuthnError> {
        let mut key = [0u8; 32];
        key.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
        let now = Instant::now();
        let cached = self
            .cache
            .lock()
            .get(&key)
            .filter(|(at, _)| now.duration_since(*at) < self.ttl)
            .map(|(_, u)| u.clone());
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let answer = self
                    .reviewer
                    .review(token)
                    .await
                    .map_err(AuthnError::Token)?;
                let mut cache = self.cache.lock();
                if cache.len() >= TOKEN_CACHE_MAX {
                    let ttl = self.ttl;
                    cache.retain(|_, (at, _)| now.duration_since(*at) < ttl);
                    if cache.len() >= TOKEN_CACHE_MAX {
                        cache.clear();
                    }
                }
                cache.insert(key, (now, answer.clone()));
                answer
            }
        };
        answer.ok_or_else(|| AuthnError::Token("rejected by the API server".into()))
    }
}

/// The kubelet API's authenticator.
pub struct Authenticator {
    /// Chains of client certificates are checked against the client CA.
    pub x509: Option<Arc<dyn ClientCertVerifier>>,
    /// `None` with webhook authentication configured but no API server to ask.
    pub webhook: Option<TokenWebhook>,
    pub webhook_enabled: bool,
    pub anonymous: bool,
}

/// The bearer token of an `Authorization` header, if it has one.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Authenticator {
    /// The user behind a request with these headers over a connection that presented `certs`.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<UserInfo, AuthnError> {
        let mut first_error = None;
        if let (Some(verifier), Some([leaf, intermediates @ ..])) = (&self.x509, certs) {
            match verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
                Ok(_) => return cert_user(leaf).map(UserInfo::authenticated),
                Err(e) => first_error = Some(AuthnError::Certificate(e.to_string())),
            }
        }
        if let Some(token) = bearer(headers) {
            let result = match &self.webhook {
                Some(w) => w.authenticate(token).await,
                None if self.webhook_enabled => Err(AuthnError::NoWebhook),
                None => Err(AuthnError::Token(
                    "token authentication is disabled (authentication.webhook.enabled: false)"
                        .into(),
                )),
            };
            match result {
                Ok(u) => return Ok(u.authenticated()),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if self.anonymous => Ok(UserInfo::anonymous()),
            None => Err(AuthnError::NoCredentials),
        }
    }
}

/// User and groups of a verified client certificate: CN and O, as the kubelet's x509
/// authenticator reads them.
fn cert_user(leaf: &CertificateDer<'_>) -> Result<UserInfo, AuthnError> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf)
        .map_err(|e| AuthnError::Certificate(format!("unparsable certificate: {e}")))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(AuthnError::Certificate(
            "the certificate's subject has no common name".into(),
        ));
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Ok(UserInfo {
        name,
        uid: String::new(),
        groups,
        extra: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Reviewer(AtomicUsize);

    impl TokenReviewer for Reviewer {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::ready(match token {
                "good" => Ok(Some(UserInfo {
                    name: "alice".into(),
                    uid: "1".into(),
                    groups: vec!["devs".into()],
                    extra: BTreeMap::new(),
                })),
                "down" => Err("TokenReview failed: connection refused".into()),
                _ => Ok(None),
            }))
        }
    }

    fn headers(auth: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn tokens_are_reviewed_once_per_ttl_and_anonymous_only_without_credentials() {
        let reviewer = Arc::new(Reviewer(AtomicUsize::new(0)));
        let a = Authenticator {
            x509: None,
            webhook: Some(TokenWebhook::new(
                reviewer.clone(),
                Duration::from_secs(120),
            )),
            webhook_enabled: true,
            anonymous: true,
        };
        for _ in 0..3 {
            let u = a.authenticate(&headers("Bearer good"), None).await.unwrap();
            assert_eq!(u.name, "alice");
            assert_eq!(u.groups, ["devs", "system:authenticated"]);
        }
        assert_eq!(reviewer.0.load(Ordering::SeqCst), 1, "cached");
        // A rejected token is a 401 even though anonymous requests are allowed.
        assert!(matches!(
            a.authenticate(&headers("Bearer bad"), None).await,
            Err(AuthnError::Token(_))
        ));
        // Errors are not cached.
        for _ in 0..2 {
            assert!(a.authenticate(&headers("Bearer down"), None).await.is_err());
        }
        assert_eq!(reviewer.0.load(Ordering::SeqCst), 4);
        let anon = a.authenticate(&http::HeaderMap::new(), None).await.unwrap();
        assert_eq!(anon.name, "system:anonymous");
        assert_eq!(anon.groups, ["system:unauthenticated"]);
        // "Basic" is not a bearer token: no credential, so anonymous.
        let u = a.authenticate(&headers("Basic Zm9vOmJhcg=="), None).await;
        assert_eq!(u.unwrap().name, "system:anonymous");
    }

    #[tokio::test]
    async fn without_anonymous_or_webhook_requests_are_refused() {
        let a = Authenticator {
            x509: None,
            webhook: None,
            webhook_enabled: true,
            anonymous: false,
        };
        assert_eq!(
            a.authenticate(&http::HeaderMap::new(), None).await,
            Err(AuthnError::NoCredentials)
        );
        assert_eq!(
            a.authenticate(&headers("Bearer x"), None).await,
            Err(AuthnError::NoWebhook)
        );
    }

    #[tokio::test]
    async fn client_certificates_chain_to_the_ca_or_are_refused() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let mk_ca = |cn: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::default();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = p.self_signed(&key).unwrap();
            (cert.pem(), rcgen::Issuer::new(p, key))
        };
        let (ca_pem, ca) = mk_ca("client-ca");
        let (_, other) = mk_ca("other-ca");
        std::fs::write(dir.path().join("ca.crt"), ca_pem).unwrap();
        let client = |issuer: &rcgen::Issuer<'_, KeyPair>| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::default();
            p.distinguished_name
                .push(DnType::CommonName, "system:node:n1");
            p.distinguished_name
                .push(DnType::OrganizationName, "system:nodes");
            let cert = p.signed_by(&key, issuer).unwrap();
            vec![cert.der().clone()]
        };
        let a = Authenticator {
            x509: Some(super::super::tls::client_verifier(&dir.path().join("ca.crt")).unwrap()),
            webhook: None,
            webhook_enabled: false,
            anonymous: true,
        };
        let u = a
            .authenticate(&http::HeaderMap::new(), Some(&client(&ca)))
            .await
            .unwrap();
        assert_eq!(u.name, "system:node:n1");
        assert_eq!(u.groups, ["system:nodes", "system:authenticated"]);
        let err = a
            .authenticate(&http::HeaderMap::new(), Some(&client(&other)))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthnError::Certificate(_)), "{err}");
    }
}
