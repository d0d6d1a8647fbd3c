//! Request parsing: the path into kube-apiserver's `RequestInfo` (API prefix, group, version,
//! namespace, resource, name, subresource, verb), the query string, and content negotiation
//! of the `Accept` header (JSON, `as=Table`, `as=PartialObjectMetadata`).

use std::collections::HashMap;

use http::Method;

/// What a URL addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub path: String,
    pub is_resource: bool,
    pub verb: String,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub name: String,
    pub subresource: String,
    /// Path segments after the subresource (the proxied path of `proxy`).
    pub rest: Vec<String>,
    /// The request came through the legacy `/watch/` prefix.
    pub legacy_watch: bool,
}

pub type Query = HashMap<String, String>;

pub fn parse_query(q: Option<&str>) -> Query {
    let mut out = HashMap::new();
    if let Some(q) = q {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            out.insert(k.into_owned(), v.into_owned());
        }
    }
    out
}

/// All values of a repeated query parameter (`command=` of exec).
pub fn query_all(q: Option<&str>, key: &str) -> Vec<String> {
    q.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
            .collect()
    })
    .unwrap_or_default()
}

pub fn query_bool(q: &Query, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("true" | "1" | "True"))
}

fn http_verb(m: &Method) -> &'static str {
    match *m {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

pub fn request_info(method: &Method, path: &str, query: &Query) -> RequestInfo {
    let mut info = RequestInfo {
        path: path.to_string(),
        verb: http_verb(method).to_string(),
        ..Default::default()
    };
    if info.verb.is_empty() {
        info.verb = method.as_str().to_ascii_lowercase();
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, mut cur): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] if !v.is_empty() && !rest.is_empty() && !rest[0].is_empty() => {
            ("", *v, rest)
        }
        ["apis", g, v, rest @ ..] if !rest.is_empty() && !rest[0].is_empty() => (*g, *v, rest),
        _ => return info,
    };
    info.is_resource = true;
    info.group = group.into();
    info.version = version.into();
    if cur[0] == "watch" {
        info.legacy_watch = true;
        info.verb = "watch".into();
        cur = &cur[1..];
        if cur.is_empty() {
            info.is_resource = false;
            return info;
        }
    }
    if cur[0] == "namespaces" && cur.len() > 1 {
        info.namespace = cur[1].into();
        if cur.len() > 2 && !matches!(cur[2], "status" | "finalize") {
            cur = &cur[2..];
        }
    }
    let parts: Vec<String> = cur.iter().map(|s| s.to_string()).collect();
    if parts.len() >= 3 {
        info.subresource = parts[2].clone();
        info.rest = parts[3..].to_vec();
    }
    if parts.len() >= 2 {
        info.name = parts[1].clone();
    }
    info.resource = parts[0].clone();
    // `/api/v1/namespaces/<ns>` addresses the namespace itself.
    if info.resource == "namespaces" && !info.name.is_empty() {
        info.namespace.clear();
    }
    if info.name.is_empty() && info.verb == "get" {
        info.verb = if info.legacy_watch || query_bool(query, "watch") {
            "watch".into()
        } else {
            "list".into()
        };
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".into();
    }
    info
}

/// What representation the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Object,
    Table {
        v1beta1: bool,
    },
    PartialMetadata,
    /// Only protobuf or CBOR was acceptable.
    NotAcceptable,
}

pub fn negotiate(accept: Option<&str>) -> Representation {
    let Some(accept) = accept else {
        return Representation::Object;
    };
    let mut plain_ok = false;
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: HashMap<&str, &str> = parts.filter_map(|p| p.split_once('=')).collect();
        let json = matches!(
            media,
            "application/json" | "*/*" | "application/*" | "application/yaml"
        );
        if !json {
            continue;
        }
        match (params.get("as"), params.get("g")) {
            (Some(&"Table"), Some(&"meta.k8s.io")) => {
                return Representation::Table {
                    v1beta1: params.get("v") == Some(&"v1beta1"),
                }
            }
            (
                Some(&"PartialObjectMetadata") | Some(&"PartialObjectMetadataList"),
                Some(&"meta.k8s.io"),
            ) => return Representation::PartialMetadata,
            (None, _) => plain_ok = true,
            _ => {}
        }
    }
    if plain_ok {
        Representation::Object
    } else {
        Representation::NotAcceptable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(m: Method, p: &str, q: &str) -> RequestInfo {
        request_info(&m, p, &parse_query(Some(q)))
    }

    #[test]
    fn parses_like_request_info_factory() {
        let i = info(Method::GET, "/api/v1/namespaces/default/pods", "");
        assert_eq!(
            (i.verb.as_str(), i.namespace.as_str(), i.resource.as_str()),
            ("list", "default", "pods")
        );
        let i = info(Method::GET, "/api/v1/namespaces/default/pods", "watch=true");
        assert_eq!(i.verb, "watch");
        let i = info(Method::GET, "/api/v1/namespaces/kube-system", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.namespace.as_str()),
            ("namespaces", "kube-system", "")
        );
        let i = info(Method::PUT, "/api/v1/namespaces/x/finalize", "");
        assert_eq!(
            (i.resource.as_str(), i.name.as_str(), i.subresource.as_str()),
            ("namespaces", "x", "finalize")
        );
        let i = info(
            Method::POST,
            "/api/v1/namespaces/d/pods/p/exec",
            "command=ls",
        );
        assert_eq!(
            (i.verb.as_str(), i.name.as_str(), i.subresource.as_str()),
            ("create", "p", "exec")
        );
        let i = info(Method::GET, "/api/v1/nodes/n1/proxy/stats/summary", "");
        assert_eq!(i.subresource, "proxy");
        assert_eq!(i.rest, ["stats", "summary"]);
        let i = info(
            Method::DELETE,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            "",
        );
        assert_eq!(
            (i.group.as_str(), i.verb.as_str()),
            ("coordination.k8s.io", "deletecollection")
        );
        let i = info(Method::GET, "/api/v1/watch/namespaces/d/pods/p", "");
        assert_eq!((i.verb.as_str(), i.name.as_str()), ("watch", "p"));
        assert!(!info(Method::GET, "/api/v1", "").is_resource);
        assert!(!info(Method::GET, "/apis/coordination.k8s.io/v1", "").is_resource);
        assert!(!info(Method::GET, "/version", "").is_resource);
    }

    #[test]
    fn negotiates_tables() {
        assert_eq!(
            negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")),
            Representation::Table { v1beta1: false }
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf, */*")),
            Representation::Object
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf")),
            Representation::NotAcceptable
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            )),
            Representation::PartialMetadata
        );
    }
}
