//! The manifest URL source (`--manifest-url`, `pkg/kubelet/config/http.go`): every
//! `httpCheckFrequency` (20 s) GET the URL with the `--manifest-url-header` headers and read a
//! v1 `Pod` or a v1 `PodList`, in YAML or JSON. Each pod gets the static pod identity (name
//! `<name>-<node>`, a UID hashed over the URL, `kubernetes.io/config.source: http`) and the
//! same defaulting and validation as a manifest file, and the whole set goes to `podconfig` as
//! one SET.
//!
//! As in the kubelet: a body that did not change sends nothing (a bad one is reported once); an
//! empty body sends an empty set (the source has spoken, with no pods) and is reported; an
//! unreachable URL, a status other than 200 or a document that is not a valid pod or pod list
//! keeps the last good set and logs why — the first three failures in a row at warning level, later ones at debug, and the
//! recovery once.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::defaults::StaticOrigin;
use super::file::{decode_pod_value, json_type_name, parse_document, ManifestError};
use super::{PodOperation, PodUpdate, HTTP_SOURCE};

/// The kubelet's HTTP source client timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read (the kubelet reads without a limit; a pod list this large is
/// not a manifest).
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Failures in a row logged at warning level before the message drops to debug.
const LOUD_FAILURES: u32 = 3;
/// The shortest period accepted (a zero period would spin).
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// Why one read of the manifest URL produced no pod set.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{url}: {detail}")]
    Fetch { url: String, detail: String },
    #[error("{url}: {status}")]
    Status { url: String, status: String },
    #[error("zero-length data received from {url}")]
    Empty { url: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{url}: expected a v1 Pod or PodList, found {found}")]
    NotAPodOrList { url: String, found: String },
}

/// Decodes a manifest URL's body: one v1 Pod, or a v1 PodList whose every item is a valid pod
/// (one bad item refuses the whole list, as in the kubelet). Returns the static pods.
pub fn decode_url_document(data: &[u8], url: &str, node_name: &str) -> Result<Vec<Pod>, UrlError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(UrlError::Empty { url: url.into() });
    }
    let origin_path = PathBuf::from(url);
    let value = parse_document(data, &origin_path)?;
    let origin = StaticOrigin::Url(url);
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "PodList" {
        if kind != "Pod" && !value.is_object() {
            return Err(UrlError::NotAPodOrList {
                url: url.into(),
                found: json_type_name(&value).into(),
            });
        }
        return Ok(vec![
            decode_pod_value(&value, &origin_path, origin, node_name)?.pod,
        ]);
    }
    if value.get("apiVersion").and_then(|v| v.as_str()) != Some("v1") {
        return Err(UrlError::NotAPodOrList {
            url: url.into(),
            found: format!(
                "kind PodList with apiVersion {}",
                value
                    .get("apiVersion")
                    .map_or("(none)".into(), |v| v.to_string())
            ),
        });
    }
    let items = match value.get("items") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(UrlError::NotAPodOrList {
                url: url.into(),
                found: format!("a PodList whose items is {}", json_type_name(other)),
            })
        }
    };
    let mut pods = Vec::with_capacity(items.len());
    for (n, mut item) in items.into_iter().enumerate() {
        // A list's items usually carry no apiVersion/kind of their own.
        if let Some(o) = item.as_object_mut() {
            o.entry("apiVersion").or_insert_with(|| "v1".into());
            o.entry("kind").or_insert_with(|| "Pod".into());
        }
        let item_path = PathBuf::from(format!("{url} items[{n}]"));
        pods.push(decode_pod_value(&item, &item_path, origin, node_name)?.pod);
    }
    Ok(pods)
}

/// The manifest URL source; run it with [`spawn_url_source`].
#[derive(Debug, Clone)]
pub struct UrlSource {
    url: String,
    headers: Vec<(String, String)>,
    node_name: String,
    period: Duration,
}

/// Starts the manifest URL source on the current tokio runtime.
pub fn spawn_url_source(
    url: String,
    headers: Vec<(String, String)>,
    node_name: String,
    period: Duration,
    tx: mpsc::Sender<PodUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(UrlSource::new(url, headers, node_name, period).run(tx))
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

impl UrlSource {
    pub fn new(
        url: String,
        headers: Vec<(String, String)>,
        node_name: String,
        period: Duration,
    ) -> Self {
        Self {
            url,
            headers,
            node_name,
            period: period.max(MIN_PERIOD),
        }
    }

    /// Reads the URL now and then every period until `tx` closes.
    pub async fn run(self, tx: mpsc::Sender<PodUpdate>) {
        tracing::info!("reading static pods from the manifest URL {}", self.url);
        let client = client(&self.url);
        let mut last: Option<Bytes> = None;
        let mut failures = 0u32;
        let mut ticker = tokio::time::interval(self.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match self.read_once(&client, &mut last).await {
                // Unchanged: whatever was said of this body stands.
                Ok(None) => continue,
                Ok(Some(pods)) => {
                    let update = PodUpdate {
                        source: HTTP_SOURCE,
                        op: PodOperation::Set,
                        pods,
                    };
                    if tx.send(update).await.is_err() {
                        return;
                    }
                }
                Err((e, empty_set)) => {
                    if empty_set {
                        let update = PodUpdate {
                            source: HTTP_SOURCE,
                            op: PodOperation::Set,
                            pods: Vec::new(),
                        };
                        if tx.send(update).await.is_err() {
                            return;
                        }
                    }
                    failures += 1;
                    if failures <= LOUD_FAILURES {
                        tracing::warn!("failed to read pods from the manifest URL: {e}");
                        if failures == LOUD_FAILURES {
                            tracing::warn!(
                                "{} failures in a row reading {}: further ones are logged at debug level",
                                LOUD_FAILURES,
                                self.url
                            );
                        }
                    } else {
                        tracing::debug!("failed to read pods from the manifest URL: {e}");
                    }
                    continue;
                }
            }
            if failures > 0 {
                tracing::info!("read pods from the manifest URL {} again", self.url);
                failures = 0;
            }
        }
    }

    /// One read: `Ok(None)` when the body did not change, the pods when it did; on error,
    /// whether an empty set must still be sent (an empty body).
    async fn read_once(
        &self,
        client: &HttpsClient,
        last: &mut Option<Bytes>,
    ) -> Result<Option<Vec<Pod>>, (UrlError, bool)> {
        let body = self.fetch(client).await.map_err(|e| (e, false))?;
        if body.is_empty() {
            *last = Some(body);
            return Err((
                UrlError::Empty {
                    url: self.url.clone(),
                },
                true,
            ));
        }
        if last.as_ref() == Some(&body) {
            return Ok(None);
        }
        // Remembered before decoding, as the kubelet does: an unchanged bad document is
        // reported once, not at every period.
        *last = Some(body.clone());
        let node = self.node_name.clone();
        let url = self.url.clone();
        let data = body;
        // Decoding a large list is CPU work: keep it off the runtime's workers.
        let decoded = tokio::task::spawn_blocking(move || decode_url_document(&data, &url, &node))
            .await
            .map_err(|e| {
                (
                    UrlError::Fetch {
                        url: self.url.clone(),
                        detail: format!("decoding task failed: {e}"),
                    },
                    false,
                )
            })?;
        decoded.map(Some).map_err(|e| (e, false))
    }

    async fn fetch(&self, client: &HttpsClient) -> Result<Bytes, UrlError> {
        let fetch_err = |detail: String| UrlError::Fetch {
            url: self.url.clone(),
            detail,
        };
        let mut req = http::Request::get(&self.url);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| fetch_err(format!("invalid request: {e}")))?;
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
            .await
            .map_err(|_| fetch_err(format!("no response within {REQUEST_TIMEOUT:?}")))?
            .map_err(|e| fetch_err(error_chain(&e)))?;
        let status = resp.status();
        let body = tokio::time::timeout(
            REQUEST_TIMEOUT,
            Limited::new(resp.into_body(), MAX_BODY_BYTES).collect(),
        )
        .await
        .map_err(|_| fetch_err(format!("body not read within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| fetch_err(format!("reading the body: {e}")))?
        .to_bytes();
        if status != http::StatusCode::OK {
            return Err(UrlError::Status {
                url: self.url.clone(),
                status: status.to_string(),
            });
        }
        Ok(body)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// An HTTP and HTTPS client; HTTPS checks the server against the system's CA certificates.
/// Without any (a minimal image), HTTPS fails on each read naming the certificate problem and
/// plain HTTP still works.
fn client(url: &str) -> HttpsClient {
    let builder = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(
                "--manifest-url {url}: no system CA certificates ({e}): https:// cannot be verified"
            );
            let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        }
    };
    let https = builder.https_or_http().enable_http1().build();
    Client::builder(TokioExecutor::new()).build(https)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn a_single_pod_gets_the_static_identity_with_the_url_in_its_uid() {
        let a = decode_url_document(POD.as_bytes(), "http://h/a", "Node1").unwrap();
        let b = decode_url_document(POD.as_bytes(), "http://h/b", "Node1").unwrap();
        assert_eq!(a.len(), 1);
        let p = &a[0];
        assert_eq!(p.metadata.name.as_deref(), Some("web-node1"));
        let ann = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["kubernetes.io/config.source"], "http");
        assert_ne!(p.metadata.uid, b[0].metadata.uid, "the URL enters the UID");
        assert_eq!(
            ann["kubernetes.io/config.hash"],
            *p.metadata.uid.as_ref().unwrap()
        );
    }

    #[test]
    fn a_pod_list_in_json_yields_every_item() {
        let list = r#"{"apiVersion":"v1","kind":"PodList","items":[
            {"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}]}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"i"}]}}]}"#;
        let pods = decode_url_document(list.as_bytes(), "http://h/l", "n").unwrap();
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a-n", "b-n"]);
        let empty = r#"{"apiVersion":"v1","kind":"PodList","items":[]}"#;
        assert!(decode_url_document(empty.as_bytes(), "u", "n")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn one_bad_item_refuses_the_list_naming_it() {
        let list = r#"{"apiVersion":"v1","kind":"PodList","items":[
            {"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i"}]}},
            {"metadata":{"name":"b"},"spec":{"containers":[{"name":"C_bad","image":"i"}]}}]}"#;
        let e = decode_url_document(list.as_bytes(), "http://h/l", "n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("http://h/l items[1]: invalid pod"), "{e}");
    }

    #[test]
    fn bad_documents_name_the_url_and_what_is_wrong() {
        for (doc, want) in [
            ("", "zero-length data received from u"),
            ("  \n", "zero-length data received from u"),
            ("{not json", "u: not valid JSON"),
            ("[1, 2]", "u: expected a v1 Pod or PodList, found a list"),
            (
                "apiVersion: v1\nkind: Service\n",
                "u: kind: Unsupported value: \"Service\"",
            ),
            (
                "apiVersion: v2\nkind: PodList\nitems: []\n",
                "u: expected a v1 Pod or PodList, found kind PodList with apiVersion \"v2\"",
            ),
            (
                "apiVersion: v1\nkind: PodList\nitems: 3\n",
                "u: expected a v1 Pod or PodList, found a PodList whose items is a number",
            ),
        ] {
            let e = decode_url_document(doc.as_bytes(), "u", "n")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(want), "{doc:?}: {e}");
        }
    }
}
