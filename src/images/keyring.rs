//! Registry credentials from a pod's `imagePullSecrets`, matched as the kubelet's
//! credential-provider keyring does (`pkg/credentialprovider`): each `kubernetes.io/dockerconfigjson`
//! (`{"auths": {...}}`) or `kubernetes.io/dockercfg` (`{...}`) Secret gives entries keyed by
//! registry location (`host[:port][/path]`, an `http(s)://` scheme and a `/v1/` or `/v2/`
//! prefix dropped, `*` globs allowed per host label). An image matches an entry when the host
//! labels match one by one, the ports are equal and the image's path starts with the entry's.
//! Within a Secret the most specific entries come first; Secrets are tried in the pod's order.
//! `auth` (base64 `user:password`) wins over `username`/`password`.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use proto::cri;
use serde::Deserialize;

pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
pub const DOCKERCFG: &str = "kubernetes.io/dockercfg";
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// One registry entry of a docker config.
#[derive(Debug, Clone, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// Credentials for images, in lookup order.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    /// Per source (Secret): `(key, credentials)`, most specific key first.
    sources: Vec<Vec<(String, cri::AuthConfig)>>,
}

/// Why a pull Secret gave no credentials.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("secret {0} has no {1} key")]
    MissingKey(String, &'static str),
    #[error("secret {0}: invalid docker config: {1}")]
    Invalid(String, String),
}

/// `host[:port][/path]` of a registry location, as the keyring indexes it.
fn location_key(loc: &str) -> String {
    let rest = loc
        .strip_prefix("https://")
        .or_else(|| loc.strip_prefix("http://"))
        .unwrap_or(loc);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = if path.starts_with("/v2/") || path.starts_with("/v1/") {
        &path[3..]
    } else {
        path
    };
    if path.is_empty() || path == "/" {
        host.to_string()
    } else {
        format!("{host}{path}")
    }
}

/// A `*`/`?` glob over one host label (`filepath.Match` without classes).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// `(host labels, port, path)` of `host[:port][/path]`.
fn split(s: &str) -> (Vec<&str>, &str, &str) {
    let (hostport, path) = match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p),
        _ => (hostport, ""),
    };
    (host.split('.').collect(), port, path)
}

/// Whether a keyring key matches an image repository (`URLsMatchStr`).
pub fn matches(key: &str, repo: &str) -> bool {
    let (gh, gp, gpath) = split(key);
    let (th, tp, tpath) = split(repo);
    gh.len() == th.len()
        && gp == tp
        && gh
            .iter()
            .zip(&th)
            .all(|(g, t)| glob(g.as_bytes(), t.as_bytes()))
        && tpath.starts_with(gpath)
}

/// The repository an image names, without tag or digest, with Docker Hub's defaults
/// (`busybox` → `docker.io/library/busybox`).
pub fn repository(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name = match name[last..].rfind(':') {
        Some(i) => &name[..last + i],
        None => name,
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

impl Keyring {
    /// The keyring of a pod's pull Secrets (in its order). Secrets of other types are ignored;
    /// a malformed one is an error for the caller to report, and is skipped.
    pub fn from_secrets<'a>(
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> (Keyring, Vec<KeyringError>) {
        let mut k = Keyring::default();
        let mut errors = Vec::new();
        for s in secrets {
            match entries_of(s) {
                Ok(Some(entries)) => k.add(entries),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        (k, errors)
    }

    fn add(&mut self, entries: BTreeMap<String, Entry>) {
        let mut list: Vec<(String, cri::AuthConfig)> = entries
            .into_iter()
            .map(|(loc, e)| {
                let (mut username, mut password) = (e.username, e.password);
                if !e.auth.is_empty() {
                    if let Some((u, p)) = base64::engine::general_purpose::STANDARD
                        .decode(e.auth.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| {
                            s.split_once(':')
                                .map(|(u, p)| (u.to_string(), p.to_string()))
                        })
                    {
                        username = u;
                        password = p;
                    }
                }
                let key = location_key(&loc);
                let auth = cri::AuthConfig {
                    username,
                    password,
                    server_address: key.clone(),
                    ..Default::default()
                };
                (key, auth)
            })
            .collect();
        // Reverse lexical order: `host/a/b` is tried before `host/a` and `host`.
        list.sort_by(|a, b| b.0.cmp(&a.0));
        self.sources.push(list);
    }

    /// Every credential that applies to `image`, in the order to try them. Docker Hub images
    /// also match entries for `index.docker.io` (the default registry's key).
    pub fn lookup(&self, image: &str) -> Vec<cri::AuthConfig> {
        let repo = repository(image);
        let mut out = Vec::new();
        for source in &self.sources {
            let mut found: Vec<&cri::AuthConfig> = source
                .iter()
                .filter(|(k, _)| matches(k, &repo))
                .map(|(_, a)| a)
                .collect();
            if found.is_empty() {
                if let Some(rest) = repo.strip_prefix("docker.io/") {
                    let hub = format!("index.docker.io/{rest}");
                    found = source
                        .iter()
                        .filter(|(k, _)| matches(k, &hub))
                        .map(|(_, a)| a)
                        .collect();
                }
            }
            out.extend(found.into_iter().cloned());
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.sources.iter().all(Vec::is_empty)
    }
}

fn entries_of(s: &Secret) -> Result<Option<BTreeMap<String, Entry>>, KeyringError> {
    let name = format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or("default"),
        s.metadata.name.as_deref().unwrap_or("")
    );
    let get = |key: &'static str| -> Result<Vec<u8>, KeyringError> {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone())
            .or_else(|| {
                s.string_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.as_bytes().to_vec())
            })
            .ok_or_else(|| KeyringError::MissingKey(name.clone(), key))
    };
    let invalid = |e: serde_json::Error| KeyringError::Invalid(name.clone(), e.to_string());
    match s.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => {
            let cfg: ConfigJson =
                serde_json::from_slice(&get(DOCKER_CONFIG_JSON_KEY)?).map_err(invalid)?;
            Ok(Some(cfg.auths))
        }
        Some(DOCKERCFG) => {
            let cfg: BTreeMap<String, Entry> =
                serde_json::from_slice(&get(DOCKERCFG_KEY)?).map_err(invalid)?;
            Ok(Some(cfg))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(name: &str, type_: &str, key: &str, cfg: serde_json::Value) -> Secret {
        let data = base64::engine::general_purpose::STANDARD.encode(cfg.to_string());
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "type": type_,
            "data": {key: data}
        }))
        .unwrap()
    }

    fn users(k: &Keyring, image: &str) -> Vec<String> {
        k.lookup(image).into_iter().map(|a| a.username).collect()
    }

    #[test]
    fn locations_are_indexed_as_the_kubelet_does() {
        assert_eq!(location_key("https://reg.io/v2/"), "reg.io");
        assert_eq!(
            location_key("http://reg.io:5000/v1/team"),
            "reg.io:5000/team"
        );
        assert_eq!(location_key("reg.io/team/app"), "reg.io/team/app");
        assert_eq!(repository("busybox"), "docker.io/library/busybox");
        assert_eq!(repository("team/app:1"), "docker.io/team/app");
        assert_eq!(
            repository("127.0.0.1:5000/kubelet-rs/busybox:1.35"),
            "127.0.0.1:5000/kubelet-rs/busybox"
        );
        assert_eq!(repository("localhost/x@sha256:ab"), "localhost/x");
    }

    #[test]
    fn matching_by_host_labels_port_and_path_prefix() {
        assert!(matches("reg.io", "reg.io/a/b"));
        assert!(matches("*.reg.io", "eu.reg.io/a"));
        assert!(!matches("*.reg.io", "reg.io/a"), "label counts differ");
        assert!(!matches("*.reg.io", "a.b.reg.io/a"));
        assert!(matches("reg.io/team", "reg.io/team/app"));
        assert!(!matches("reg.io/team", "reg.io/other/app"));
        assert!(!matches("reg.io:5000", "reg.io/a"), "ports must match");
        assert!(matches(
            "127.0.0.1:5000",
            "127.0.0.1:5000/kubelet-rs/busybox"
        ));
        assert!(!matches(
            "127.0.0.1:5001",
            "127.0.0.1:5000/kubelet-rs/busybox"
        ));
    }

    #[test]
    fn pull_secrets_give_credentials_in_order() {
        let a = secret(
            "a",
            DOCKER_CONFIG_JSON,
            DOCKER_CONFIG_JSON_KEY,
            json!({"auths": {
                "https://reg.io": {"username": "host", "password": "p"},
                "reg.io/team": {"auth": base64::engine::general_purpose::STANDARD.encode("team:secret")},
                "https://index.docker.io/v1/": {"username": "hub", "password": "h"}
            }}),
        );
        let b = secret(
            "b",
            DOCKERCFG,
            DOCKERCFG_KEY,
            json!({"reg.io": {"username": "legacy", "password": "l"}}),
        );
        let other: Secret = serde_json::from_value(
            json!({"metadata": {"name": "o"}, "type": "Opaque", "data": {}}),
        )
        .unwrap();
        let (k, errs) = Keyring::from_secrets([&a, &other, &b]);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(users(&k, "reg.io/team/app:1"), ["team", "host", "legacy"]);
        let first = &k.lookup("reg.io/team/app")[0];
        assert_eq!(first.password, "secret");
        assert_eq!(first.server_address, "reg.io/team");
        assert_eq!(users(&k, "reg.io/x"), ["host", "legacy"]);
        assert_eq!(users(&k, "busybox:1.35"), ["hub"]);
        assert!(k.lookup("other.io/x").is_empty());
    }

    #[test]
    fn a_malformed_pull_secret_is_named() {
        let bad: Secret = serde_json::from_value(json!({
            "metadata": {"name": "bad", "namespace": "ns"},
            "type": DOCKER_CONFIG_JSON,
            "data": {".dockerconfigjson": "bm90IGpzb24="}
        }))
        .unwrap();
        let nokey: Secret = serde_json::from_value(json!({
            "metadata": {"name": "nokey", "namespace": "ns"},
            "type": DOCKERCFG, "data": {}
        }))
        .unwrap();
        let (k, errs) = Keyring::from_secrets([&bad, &nokey]);
        assert!(k.is_empty());
        assert!(errs[0]
            .to_string()
            .starts_with("secret ns/bad: invalid docker config"));
        assert_eq!(errs[1].to_string(), "secret ns/nokey has no .dockercfg key");
    }
}
