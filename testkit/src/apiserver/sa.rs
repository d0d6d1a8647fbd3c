//! Service accounts: ES256 JWTs (issued by TokenRequest, verified for API requests and by
//! TokenReview, bound to a pod, secret or node and rejected once it is gone), the TokenRequest
//! subresource with kube-apiserver's defaults and limits, and the ServiceAccount admission
//! plugin (default service account, `kube-api-access-xxxxx` projected volume and its mounts,
//! image pull secrets).

use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde_json::{json, Value};

use super::auth::UserInfo;
use super::errors::{ApiError, ApiResult, FieldError};
use super::store::Inner;
use super::util;
use super::Server;

/// The issuer and the API server's own audience (`--service-account-issuer`).
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";
/// The kubelet's default projected-token lifetime, which the server extends to a year for
/// pod-bound tokens (`--service-account-extend-token-expiration`).
const WARN_ONLY_SECONDS: i64 = 3607;
const EXTENDED_SECONDS: i64 = 365 * 24 * 3600;
pub const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

/// What a token is bound to.
pub struct Binding {
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// Sign a token for a service account object.
pub fn issue(
    srv: &Server,
    sa: &Value,
    audiences: &[String],
    lifetime: i64,
    warn_after: Option<i64>,
    bound: Option<&Binding>,
    node: Option<(&str, &str)>,
) -> String {
    let now = util::now().as_second();
    let ns = util::namespace(sa);
    let name = util::name(sa);
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": util::uid(sa)},
    });
    if let Some(b) = bound {
        let key = match b.kind.as_str() {
            "Pod" => "pod",
            "Secret" => "secret",
            _ => "node",
        };
        k8s[key] = json!({"name": b.name, "uid": b.uid});
    }
    if let Some((n, u)) = node {
        k8s["node"] = json!({"name": n, "uid": u});
    }
    if let Some(w) = warn_after {
        k8s["warnafter"] = json!(now + w);
    }
    let claims = json!({
        "aud": audiences,
        "exp": now + lifetime,
        "iat": now,
        "iss": API_AUDIENCE,
        "jti": util::new_uid(),
        "kubernetes.io": k8s,
        "nbf": now,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let header = json!({"alg": "ES256", "kid": srv.pki.sa_key_id});
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let sig = srv
        .pki
        .sa_key
        .sign(&rng, signing_input.as_bytes())
        .map(|s| s.as_ref().to_vec())
        .unwrap_or_default();
    format!("{signing_input}.{}", b64url(&sig))
}

/// Verify a token and return its user and the audiences it was accepted for.
pub fn verify(
    srv: &Server,
    g: &Inner,
    token: &str,
    want: &[String],
) -> Result<(UserInfo, Vec<String>), String> {
    use ring::signature::KeyPair;
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("token is not a JWT".into());
    }
    let sig = unb64url(parts[2]).ok_or("malformed signature")?;
    let public = srv.pki.sa_key.public_key().as_ref().to_vec();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .map_err(|_| {
            "invalid bearer token, square/go-jose: error in cryptographic primitive".to_string()
        })?;
    let claims: Value = unb64url(parts[1])
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("malformed claims")?;
    if claims["iss"].as_str() != Some(API_AUDIENCE) {
        return Err("invalid issuer".into());
    }
    let now = util::now().as_second();
    if claims["exp"].as_i64().is_none_or(|e| e <= now) {
        return Err("service account token has expired".into());
    }
    if claims["nbf"].as_i64().is_some_and(|n| n > now + 60) {
        return Err("service account token is not valid yet".into());
    }
    let token_aud: Vec<String> = match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    let want: Vec<String> = if want.is_empty() {
        vec![API_AUDIENCE.to_string()]
    } else {
        want.to_vec()
    };
    let accepted: Vec<String> = want
        .iter()
        .filter(|a| token_aud.contains(a))
        .cloned()
        .collect();
    if accepted.is_empty() {
        return Err(format!(
            "token audiences {token_aud:?} is invalid for the target audiences {want:?}"
        ));
    }
    let k8s = &claims["kubernetes.io"];
    let ns = k8s["namespace"].as_str().unwrap_or("");
    let sa_name = k8s["serviceaccount"]["name"].as_str().unwrap_or("");
    let sa_uid = k8s["serviceaccount"]["uid"].as_str().unwrap_or("");
    match g.get("serviceaccounts", ns, sa_name) {
        Some(sa) if util::uid(&sa) == sa_uid && util::deletion_timestamp(&sa).is_none() => {}
        Some(_) => {
            return Err(format!(
                "service account UID ({sa_uid}) does not match claim"
            ))
        }
        None => return Err(format!("serviceaccounts \"{sa_name}\" not found")),
    }
    let mut extra = std::collections::BTreeMap::new();
    for (key, res, ns_of) in [
        ("pod", "pods", ns),
        ("secret", "secrets", ns),
        ("node", "nodes", ""),
    ] {
        let Some(name) = k8s[key]["name"].as_str() else {
            continue;
        };
        let uid = k8s[key]["uid"].as_str().unwrap_or("");
        match g.get(res, ns_of, name) {
            Some(o) if uid.is_empty() || util::uid(&o) == uid => {}
            Some(_) => {
                return Err(format!(
                    "{res} \"{name}\" UID does not match the token's binding"
                ))
            }
            None if key == "node" && k8s.get("pod").is_some() => {}
            None => return Err(format!("{res} \"{name}\" not found")),
        }
        if key != "secret" {
            extra.insert(
                format!("authentication.kubernetes.io/{key}-name"),
                vec![name.to_string()],
            );
            extra.insert(
                format!("authentication.kubernetes.io/{key}-uid"),
                vec![uid.to_string()],
            );
        }
    }
    if let Some(jti) = claims["jti"].as_str() {
        extra.insert(
            "authentication.kubernetes.io/credential-id".into(),
            vec![format!("JTI={jti}")],
        );
    }
    Ok((
        UserInfo {
            name: format!("system:serviceaccount:{ns}:{sa_name}"),
            uid: sa_uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ],
            extra,
        },
        accepted,
    ))
}

/// `POST .../serviceaccounts/<name>/token`: the TokenRequest answered with a signed token.
pub fn token_request(
    srv: &Server,
    g: &Inner,
    ns: &str,
    name: &str,
    mut req: Value,
) -> ApiResult<Value> {
    let Some(sa) = g.get("serviceaccounts", ns, name) else {
        return Err(ApiError::not_found(
            super::errors::Target {
                group: "",
                resource: "serviceaccounts",
            },
            name,
        ));
    };
    let spec = req["spec"].take();
    let requested = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let invalid =
        |f: FieldError| ApiError::invalid("TokenRequest", "authentication.k8s.io", name, vec![f]);
    if requested < 600 {
        return Err(invalid(FieldError::invalid(
            "spec.expirationSeconds",
            &requested.to_string(),
            "may not specify a duration less than 10 minutes",
        )));
    }
    if requested > 1 << 32 {
        return Err(invalid(FieldError::invalid(
            "spec.expirationSeconds",
            &requested.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        )));
    }
    let mut audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let default_audience = audiences.is_empty();
    if default_audience {
        audiences = vec![API_AUDIENCE.to_string()];
    }
    let mut binding = None;
    let mut node = None;
    let bref = &spec["boundObjectRef"];
    if bref.is_object() {
        let kind = bref["kind"].as_str().unwrap_or("");
        let bname = bref["name"].as_str().unwrap_or("");
        let (res, ns_of) = match kind {
            "Pod" => ("pods", ns),
            "Secret" => ("secrets", ns),
            "Node" => ("nodes", ""),
            other => {
                return Err(invalid(FieldError::not_supported(
                    "spec.boundObjectRef.kind",
                    other,
                    &["Pod", "Node", "Secret"],
                )))
            }
        };
        let Some(obj) = g.get(res, ns_of, bname) else {
            return Err(ApiError::not_found(
                super::errors::Target {
                    group: "",
                    resource: res,
                },
                bname,
            ));
        };
        let want_uid = bref["uid"].as_str().unwrap_or("");
        if !want_uid.is_empty() && want_uid != util::uid(&obj) {
            return Err(ApiError::conflict(
                super::errors::Target {
                    group: "",
                    resource: res,
                },
                bname,
                &format!(
                    "the UID in the bound object reference ({want_uid}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
            ));
        }
        if kind == "Pod" {
            let node_name = util::str_at(&obj, &["spec", "nodeName"]);
            if let Some(n) = g.get("nodes", "", node_name) {
                node = Some((node_name.to_string(), util::uid(&n).to_string()));
            }
        }
        binding = Some(Binding {
            kind: kind.into(),
            name: bname.into(),
            uid: util::uid(&obj).into(),
        });
    }
    let extend = binding.as_ref().is_some_and(|b| b.kind == "Pod")
        && requested == WARN_ONLY_SECONDS
        && default_audience;
    let (lifetime, warn) = if extend {
        (EXTENDED_SECONDS, Some(WARN_ONLY_SECONDS))
    } else {
        (requested, None)
    };
    let token = issue(
        srv,
        &sa,
        &audiences,
        lifetime,
        warn,
        binding.as_ref(),
        node.as_ref().map(|(n, u)| (n.as_str(), u.as_str())),
    );
    let exp = util::now()
        .checked_add(jiff::SignedDuration::from_secs(requested))
        .unwrap_or(util::now());
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": requested});
    if bref.is_object() {
        out_spec["boundObjectRef"] = bref.clone();
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": util::format_time(exp)},
    }))
}

/// The ServiceAccount admission plugin for a new pod.
pub fn admit_pod(g: &Inner, pod: &mut Value) -> ApiResult<()> {
    let ns = util::namespace(pod).to_string();
    let mirror =
        util::annotations(pod).is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    if mirror {
        return Ok(());
    }
    let spec = util::object_at_mut(pod, &["spec"]);
    let sa_name = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => {
            let legacy = spec
                .get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string();
            spec.insert("serviceAccountName".into(), json!(legacy));
            legacy
        }
    };
    spec.insert("serviceAccount".into(), json!(sa_name));
    let Some(sa) = g.get("serviceaccounts", &ns, &sa_name) else {
        return Err(ApiError::forbidden(format!(
            "pods \"{}\" is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount \"{sa_name}\" not found",
            util::name(pod)
        )));
    };
    let spec = util::object_at_mut(pod, &["spec"]);
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token_volume(spec);
    }
    let pull_secrets_empty = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if pull_secrets_empty {
        if let Some(s) = sa["imagePullSecrets"].as_array().filter(|a| !a.is_empty()) {
            spec.insert("imagePullSecrets".into(), Value::Array(s.clone()));
        }
    }
    Ok(())
}

fn mount_token_volume(spec: &mut serde_json::Map<String, Value>) {
    let already_mounted = |list: Option<&Value>| {
        list.and_then(Value::as_array).is_some_and(|cs| {
            cs.iter().all(|c| {
                c["volumeMounts"].as_array().is_some_and(|m| {
                    m.iter()
                        .any(|vm| vm["mountPath"].as_str() == Some(SA_MOUNT_PATH))
                })
            })
        })
    };
    if already_mounted(spec.get("containers")) && already_mounted(spec.get("initContainers")) {
        return;
    }
    let vol_name = format!("kube-api-access-{}", util::random_suffix(5));
    let volume = json!({
        "name": vol_name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    });
    let vols = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(vec![]));
    if let Some(v) = vols.as_array_mut() {
        v.push(volume);
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let mounts = c.as_object_mut().map(|o| {
                o.entry("volumeMounts")
                    .or_insert_with(|| Value::Array(vec![]))
            });
            if let Some(Value::Array(m)) = mounts {
                if m.iter()
                    .any(|vm| vm["mountPath"].as_str() == Some(SA_MOUNT_PATH))
                {
                    continue;
                }
                m.push(json!({"name": vol_name, "readOnly": true, "mountPath": SA_MOUNT_PATH}));
            }
        }
    }
}
