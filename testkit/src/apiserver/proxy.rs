//! Proxying to kubelets, as kube-apiserver does: `pods/log` as a streamed request to the
//! kubelet's `/containerLogs`, `pods/exec`, `pods/attach` and `pods/portforward` by passing the
//! connection upgrade (websocket or SPDY) through to the kubelet's `/exec`, `/attach` and
//! `/portForward` and then copying bytes both ways, and `nodes/proxy` to any kubelet path.
//! The kubelet is reached at the node's address (`--kubelet-preferred-address-types`) and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, authenticated with the
//! `kube-apiserver-kubelet-client` certificate. `pods/proxy` goes to the pod's IP.

use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;

use super::errors::{ApiError, ApiResult, Target};
use super::request::RequestInfo;
use super::server::{empty, Body, BoxError};
use super::util;
use super::Server;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn pod_target() -> Target<'static> {
    Target {
        group: "",
        resource: "pods",
    }
}

/// The kubelet of a node: host and port.
fn kubelet_location(
    srv: &Server,
    node: &Value,
    port_override: Option<u16>,
) -> ApiResult<(String, u16)> {
    let addrs = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let host = srv
        .config
        .kubelet_preferred_address_types
        .iter()
        .find_map(|t| {
            addrs
                .iter()
                .find(|a| a["type"].as_str() == Some(t.as_str()))
                .and_then(|a| a["address"].as_str())
                .map(str::to_string)
        })
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no preferred addresses found; known addresses: {}",
                serde_json::to_string(&addrs).unwrap_or_default()
            ))
        })?;
    let port = port_override.unwrap_or_else(|| {
        node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .filter(|p| *p > 0 && *p <= 65535)
            .map(|p| p as u16)
            .unwrap_or(10250)
    });
    Ok((host, port))
}

fn join_host(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn connect(
    srv: &Server,
    host: &str,
    port: u16,
    tls: bool,
    url: &str,
) -> ApiResult<hyper::client::conn::http1::SendRequest<Body>> {
    let dial_err = |e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
            std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
            _ => e.to_string(),
        };
        ApiError::internal(format!(
            "error dialing backend: dial tcp {}: {why}",
            join_host(host, port)
        ))
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    .map_err(|_| {
        dial_err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "i/o timeout",
        ))
    })?
    .map_err(dial_err)?;
    let _ = tcp.set_nodelay(true);
    let handshake_err = |e: hyper::Error| ApiError::internal(format!("Get \"{url}\": {e}"));
    if tls {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| ApiError::internal(format!("invalid kubelet host {host:?}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(srv.pki.kubelet_client.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| ApiError::internal(format!("Get \"{url}\": remote error: tls: {e}")))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(handshake_err)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(handshake_err)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender)
    }
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, upgrade: bool) {
    for (k, v) in from {
        let name = k.as_str();
        if name == "authorization" || name == "host" || name.starts_with("impersonate-") {
            continue;
        }
        if !upgrade && HOP_BY_HOP.contains(&name) {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
        && h.contains_key(header::UPGRADE)
}

/// Forward `req` to `scheme://host:port{path_query}`; upgrades are passed through.
async fn forward(
    srv: &Server,
    mut req: Request<Incoming>,
    host: &str,
    port: u16,
    tls: bool,
    path_query: &str,
) -> ApiResult<Response<Body>> {
    let scheme = if tls { "https" } else { "http" };
    let url = format!("{scheme}://{}{path_query}", join_host(host, port));
    let upgrade = is_upgrade(req.headers());
    let mut sender = connect(srv, host, port, tls, &url).await?;
    let (client_upgrade, method, headers, body) = if upgrade {
        let u = hyper::upgrade::on(&mut req);
        (Some(u), req.method().clone(), req.headers().clone(), None)
    } else {
        let (parts, body) = req.into_parts();
        (None, parts.method, parts.headers, Some(body))
    };
    let mut out = Request::builder()
        .method(method.clone())
        .uri(path_query)
        .body(match body {
            Some(b) => b.map_err(|e| Box::new(e) as BoxError).boxed(),
            None => empty(),
        })
        .map_err(|e| ApiError::internal(e.to_string()))?;
    copy_headers(&headers, out.headers_mut(), upgrade);
    if let Ok(h) = HeaderValue::from_str(&join_host(host, port)) {
        out.headers_mut().insert(header::HOST, h);
    }
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| ApiError::internal(format!("{method} \"{url}\": {e}")))?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::internal(
                "backend switched protocols without an upgrade request",
            ));
        };
        let backend_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (Ok(client), Ok(backend)) = (client_upgrade.await, backend_upgrade.await) else {
                return;
            };
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        });
        let mut r = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        if let Some(h) = r.headers_mut() {
            for (k, v) in resp.headers() {
                h.append(k.clone(), v.clone());
            }
        }
        return r
            .body(empty())
            .map_err(|e| ApiError::internal(e.to_string()));
    }
    let (parts, body) = resp.into_parts();
    let mut r = Response::builder().status(parts.status);
    if let Some(h) = r.headers_mut() {
        copy_headers(&parts.headers, h, false);
    }
    r.body(body.map_err(|e| Box::new(e) as BoxError).boxed())
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn default_container(pod: &Value, requested: Option<&str>) -> ApiResult<String> {
    let name = util::name(pod);
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let containers = names("containers");
    let inits = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&inits)
                .chain(&ephemeral)
                .any(|x| x == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !inits.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    inits.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                msg.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

fn encode_query(pairs: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE")
}

/// `pods/{log,exec,attach,portforward,proxy}`.
pub async fn pod_subresource(
    srv: &Arc<Server>,
    info: &RequestInfo,
    raw_query: Option<&str>,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let (pod_name, port_part) = match info.subresource.as_str() {
        "proxy" => split_name_port(&info.name),
        _ => (info.name.clone(), None),
    };
    let pod = srv
        .store
        .read(|g| g.get("pods", &info.namespace, &pod_name))
        .ok_or_else(|| ApiError::not_found(pod_target(), &pod_name))?;
    let pairs: Vec<(String, String)> = raw_query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    if info.subresource == "proxy" {
        let ip = util::str_at(&pod, &["status", "podIP"]).to_string();
        if ip.is_empty() {
            return Err(ApiError::service_unavailable(format!(
                "address not allowed: pod {pod_name} has no IP"
            )));
        }
        let (scheme, port) = port_part.unwrap_or(("http".into(), 80));
        let path = format!("/{}", info.rest.join("/"));
        let pq = match raw_query {
            Some(q) if !q.is_empty() => format!("{path}?{q}"),
            _ => path,
        };
        return forward(srv, req, &ip, port, scheme == "https", &pq).await;
    }
    let node_name = util::str_at(&pod, &["spec", "nodeName"]).to_string();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {pod_name} does not have a host assigned"
        )));
    }
    let node = srv
        .store
        .read(|g| g.get("nodes", "", &node_name))
        .ok_or_else(|| {
            ApiError::not_found(
                Target {
                    group: "",
                    resource: "nodes",
                },
                &node_name,
            )
        })?;
    let (host, port) = kubelet_location(srv, &node, None)?;
    let ns = &info.namespace;
    let path_query = match info.subresource.as_str() {
        "log" => {
            let c = default_container(&pod, get("container"))?;
            let mut q = Vec::new();
            for k in ["follow", "previous", "timestamps"] {
                if get(k).is_some_and(truthy) {
                    q.push((k.to_string(), "true".to_string()));
                }
            }
            for k in ["sinceSeconds", "sinceTime", "tailLines", "limitBytes"] {
                if let Some(v) = get(k) {
                    q.push((k.to_string(), v.to_string()));
                }
            }
            let p = format!("/containerLogs/{ns}/{pod_name}/{c}");
            if q.is_empty() {
                p
            } else {
                format!("{p}?{}", encode_query(&q))
            }
        }
        "exec" | "attach" => {
            let c = default_container(&pod, get("container"))?;
            let mut q = Vec::new();
            for (from, to) in [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
                ("tty", "tty"),
            ] {
                if get(from).is_some_and(truthy) {
                    q.push((to.to_string(), "1".to_string()));
                }
            }
            if info.subresource == "exec" {
                for (k, v) in &pairs {
                    if k == "command" {
                        q.push(("command".into(), v.clone()));
                    }
                }
            }
            format!(
                "/{}/{ns}/{pod_name}/{c}?{}",
                info.subresource,
                encode_query(&q)
            )
        }
        "portforward" => {
            let q: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| k == "ports" || k == "port")
                .map(|(_, v)| ("port".to_string(), v.clone()))
                .collect();
            if q.is_empty() {
                format!("/portForward/{ns}/{pod_name}")
            } else {
                format!("/portForward/{ns}/{pod_name}?{}", encode_query(&q))
            }
        }
        other => {
            return Err(ApiError::not_found(
                Target {
                    group: "",
                    resource: "pods",
                },
                &format!("{pod_name}/{other}"),
            ))
        }
    };
    forward(srv, req, &host, port, true, &path_query).await
}

/// `name`, `name:port` or `scheme:name:port`.
fn split_name_port(s: &str) -> (String, Option<(String, u16)>) {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [n] => (n.to_string(), None),
        [n, p] => (
            n.to_string(),
            p.parse().ok().map(|p| ("http".to_string(), p)),
        ),
        [sch, n, p] => (n.to_string(), p.parse().ok().map(|p| (sch.to_string(), p))),
        _ => (s.to_string(), None),
    }
}

/// `nodes/proxy/<path>`: the kubelet's API.
pub async fn node_proxy(
    srv: &Arc<Server>,
    info: &RequestInfo,
    raw_query: Option<&str>,
    req: Request<Incoming>,
) -> ApiResult<Response<Body>> {
    let (name, port) = split_name_port(&info.name);
    let node = srv
        .store
        .read(|g| g.get("nodes", "", &name))
        .ok_or_else(|| {
            ApiError::not_found(
                Target {
                    group: "",
                    resource: "nodes",
                },
                &name,
            )
        })?;
    let (host, port) = kubelet_location(srv, &node, port.map(|(_, p)| p))?;
    let path = format!("/{}", info.rest.join("/"));
    let pq = match raw_query {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    };
    forward(srv, req, &host, port, true, &pq).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_defaulting() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(default_container(&one, None).unwrap(), "a");
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "i"}]}});
        let e = default_container(&two, None).unwrap_err();
        assert_eq!(
            e.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert!(default_container(&two, Some("zz")).is_err());
        assert_eq!(default_container(&two, Some("i")).unwrap(), "i");
    }

    #[test]
    fn names_with_ports() {
        assert_eq!(split_name_port("n1"), ("n1".into(), None));
        assert_eq!(
            split_name_port("n1:10255"),
            ("n1".into(), Some(("http".into(), 10255)))
        );
        assert_eq!(
            split_name_port("https:p:443"),
            ("p".into(), Some(("https".into(), 443)))
        );
    }
}
