//! Authentication and authorization.
//!
//! Authentication, in kube-apiserver's order: a bearer token (the admin token, a bootstrap
//! token `<id>.<secret>` backed by a `bootstrap-token-<id>` Secret in `kube-system`, or a
//! service-account JWT this server issued), else a client certificate verified against the CA
//! (CN = user, O = groups), else anonymous. A token that matches nothing is 401.
//!
//! Authorization is a small fixed policy: `system:masters` may do everything; nodes get what a
//! kubelet needs (the Node authorizer's rules, with NodeRestriction's "only your own objects"
//! applied at admission); bootstrappers may only create and read CSRs; every authenticated
//! user may read discovery and make self-reviews; anonymous users only reach health and
//! version. Denials carry RBAC's messages.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::errors::ApiError;
use super::sa;
use super::store::Inner;
use super::util;
use super::Server;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn anonymous() -> UserInfo {
        UserInfo::new("system:anonymous", &["system:unauthenticated"])
    }

    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }

    /// The node name of a `system:node:<name>` user in `system:nodes`.
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group("system:nodes") {
            return None;
        }
        self.name.strip_prefix("system:node:")
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            v["uid"] = json!(self.uid);
        }
        if !self.extra.is_empty() {
            v["extra"] = json!(self.extra);
        }
        v
    }

    pub fn from_json(v: &Value) -> UserInfo {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        let mut extra = BTreeMap::new();
        if let Some(m) = v.get("extra").and_then(Value::as_object) {
            for (k, vals) in m {
                extra.insert(k.clone(), strings(vals));
            }
        }
        UserInfo {
            name: v
                .get("user")
                .or_else(|| v.get("username"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
            uid: v.get("uid").and_then(Value::as_str).unwrap_or("").into(),
            groups: v.get("groups").map(strings).unwrap_or_default(),
            extra,
        }
    }

    fn authenticated(mut self) -> UserInfo {
        if !self.in_group("system:authenticated") {
            self.groups.push("system:authenticated".into());
        }
        self
    }
}

/// A user from a verified client certificate.
pub fn cert_user(cn: String, orgs: Vec<String>) -> UserInfo {
    UserInfo {
        name: cn,
        groups: orgs,
        ..Default::default()
    }
    .authenticated()
}

/// Authenticate a bearer token; `None` when no authenticator accepts it. `audiences` limits
/// which service-account tokens are accepted (empty: the API server's own audience).
pub fn authenticate_token(
    srv: &Server,
    g: &Inner,
    token: &str,
    audiences: &[String],
) -> Result<(UserInfo, Vec<String>), String> {
    if token == srv.pki.admin_token {
        return Ok((
            UserInfo::new("kubernetes-admin", &["system:masters"]).authenticated(),
            audiences_or_default(audiences),
        ));
    }
    if let Some(u) = bootstrap_token_user(g, token) {
        return Ok((u.authenticated(), audiences_or_default(audiences)));
    }
    if token.matches('.').count() == 2 {
        return sa::verify(srv, g, token, audiences).map(|(u, a)| (u.authenticated(), a));
    }
    Err("invalid bearer token".into())
}

fn audiences_or_default(a: &[String]) -> Vec<String> {
    if a.is_empty() {
        vec![sa::API_AUDIENCE.to_string()]
    } else {
        a.to_vec()
    }
}

fn is_token_id(s: &str) -> bool {
    s.len() == 6
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn bootstrap_token_user(g: &Inner, token: &str) -> Option<UserInfo> {
    let (id, secret) = token.split_once('.')?;
    if !is_token_id(id)
        || secret.len() != 16
        || !secret
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return None;
    }
    let s = g.get("secrets", "kube-system", &format!("bootstrap-token-{id}"))?;
    if s["type"].as_str() != Some("bootstrap.kubernetes.io/token")
        || util::deletion_timestamp(&s).is_some()
    {
        return None;
    }
    let field = |k: &str| -> String {
        s["data"][k]
            .as_str()
            .and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(b).ok()
            })
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    };
    if field("token-id") != id
        || field("token-secret") != secret
        || field("usage-bootstrap-authentication") != "true"
    {
        return None;
    }
    let exp = field("expiration");
    if !exp.is_empty() {
        match util::parse_time(&exp) {
            Some(t) if t > util::now() => {}
            _ => return None,
        }
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    for gname in field("auth-extra-groups").split(',') {
        let gname = gname.trim();
        if !gname.is_empty() {
            groups.push(gname.to_string());
        }
    }
    Some(UserInfo {
        name: format!("system:bootstrap:{id}"),
        groups,
        ..Default::default()
    })
}

/// What a request asks to do, in authorizer terms.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub verb: String,
    pub resource: Option<ResourceAttrs>,
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct ResourceAttrs {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// Allowed, or the reason it was not.
pub fn authorize(user: &UserInfo, a: &Attributes) -> Result<(), String> {
    if user.in_group("system:masters") {
        return Ok(());
    }
    let authenticated = user.in_group("system:authenticated");
    match &a.resource {
        None => {
            let p = a.path.as_str();
            let public = matches!(p, "/healthz" | "/livez" | "/readyz" | "/version")
                || p.starts_with("/healthz/")
                || p.starts_with("/livez/")
                || p.starts_with("/readyz/");
            let discovery = p == "/api"
                || p.starts_with("/api/")
                || p == "/apis"
                || p.starts_with("/apis/")
                || p.starts_with("/openapi")
                || p.starts_with("/.well-known/openid-configuration")
                || p.starts_with("/openid/v1/jwks");
            if (public && a.verb == "get") || (authenticated && discovery && a.verb == "get") {
                Ok(())
            } else {
                Err(String::new())
            }
        }
        Some(r) => {
            if authenticated
                && a.verb == "create"
                && ((r.group == "authorization.k8s.io"
                    && matches!(
                        r.resource.as_str(),
                        "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                    ))
                    || (r.group == "authentication.k8s.io" && r.resource == "selfsubjectreviews"))
            {
                return Ok(());
            }
            if user.node_name().is_some() && node_rule(r, &a.verb) {
                return Ok(());
            }
            if user.in_group("system:bootstrappers")
                && r.group == "certificates.k8s.io"
                && r.resource == "certificatesigningrequests"
                && ((r.subresource.is_empty()
                    && matches!(a.verb.as_str(), "create" | "get" | "list" | "watch"))
                    || (r.subresource == "nodeclient" && a.verb == "create"))
            {
                return Ok(());
            }
            Err(String::new())
        }
    }
}

/// The Node authorizer's and `system:node` role's rules, coarsely.
fn node_rule(r: &ResourceAttrs, verb: &str) -> bool {
    let read = matches!(verb, "get" | "list" | "watch");
    let sub = r.subresource.as_str();
    match (r.group.as_str(), r.resource.as_str(), sub) {
        ("", "nodes", "") => verb != "deletecollection",
        ("", "nodes", "status") => matches!(verb, "get" | "update" | "patch"),
        ("", "pods", "") => read || matches!(verb, "create" | "delete"),
        ("", "pods", "status") => matches!(verb, "get" | "update" | "patch"),
        ("", "pods", "eviction") => verb == "create",
        ("", "events", "") | ("events.k8s.io", "events", "") => {
            matches!(verb, "create" | "update" | "patch")
        }
        (
            "",
            "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "persistentvolumes"
            | "services"
            | "endpoints",
            "",
        ) => read,
        ("", "serviceaccounts", "") => verb == "get",
        ("", "serviceaccounts", "token") => verb == "create",
        ("coordination.k8s.io", "leases", "") => verb != "deletecollection",
        ("certificates.k8s.io", "certificatesigningrequests", "") => {
            matches!(verb, "create" | "get" | "list" | "watch")
        }
        ("certificates.k8s.io", "certificatesigningrequests", "selfnodeclient") => verb == "create",
        ("authentication.k8s.io", "tokenreviews", "")
        | ("authorization.k8s.io", "subjectaccessreviews", "") => verb == "create",
        _ => false,
    }
}

/// RBAC's denial message.
pub fn forbidden_message(user: &UserInfo, a: &Attributes, reason: &str) -> String {
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    };
    match &a.resource {
        None => format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"{why}",
            user.name, a.verb, a.path
        ),
        Some(r) => {
            let res = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{}\"", r.namespace)
            };
            let qualified = if r.group.is_empty() {
                res.clone()
            } else {
                format!("{res}.{}", r.group)
            };
            let subject = if r.name.is_empty() {
                qualified
            } else {
                format!("{qualified} \"{}\"", r.name)
            };
            format!(
                "{subject} is forbidden: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}{why}",
                user.name, a.verb, r.group
            )
        }
    }
}

pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let mut e = ApiError::forbidden(forbidden_message(user, a, reason));
    if let Some(r) = &a.resource {
        let mut d = json!({"kind": r.resource});
        if !r.name.is_empty() {
            d["name"] = json!(r.name);
        }
        if !r.group.is_empty() {
            d["group"] = json!(r.group);
        }
        e = e.with_details(d);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, resource: &str, sub: &str, verb: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource: Some(ResourceAttrs {
                group: group.into(),
                resource: resource.into(),
                subresource: sub.into(),
                namespace: "default".into(),
                name: String::new(),
            }),
            path: String::new(),
        }
    }

    #[test]
    fn policy() {
        let admin = UserInfo::new("a", &["system:masters"]);
        let node = cert_user("system:node:n1".into(), vec!["system:nodes".into()]);
        let boot =
            UserInfo::new("system:bootstrap:abcdef", &["system:bootstrappers"]).authenticated();
        let anon = UserInfo::anonymous();
        assert!(authorize(&admin, &res("", "secrets", "", "delete")).is_ok());
        assert!(authorize(&node, &res("", "pods", "status", "patch")).is_ok());
        assert!(authorize(&node, &res("", "pods", "exec", "create")).is_err());
        assert!(authorize(&node, &res("coordination.k8s.io", "leases", "", "update")).is_ok());
        assert!(authorize(
            &boot,
            &res(
                "certificates.k8s.io",
                "certificatesigningrequests",
                "",
                "create"
            )
        )
        .is_ok());
        assert!(authorize(&boot, &res("", "pods", "", "list")).is_err());
        let api = Attributes {
            verb: "get".into(),
            resource: None,
            path: "/api".into(),
        };
        assert!(authorize(&anon, &api).is_err());
        assert!(authorize(&boot, &api).is_ok());
        let health = Attributes {
            verb: "get".into(),
            resource: None,
            path: "/healthz".into(),
        };
        assert!(authorize(&anon, &health).is_ok());
        assert_eq!(
            forbidden_message(&anon, &res("", "pods", "", "list"), ""),
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }
}
