//! The kubelet API's request target (path and query), whatever a client sends: the path's
//! authorization mapping (`server::secure::authz`), the `/logs/` path resolution
//! (`server::secure::syslogs::relative`), the metrics path bucket, and the streaming
//! endpoints' query (`StreamOptions`, port-forward ports).
//!
//! Checked: no panic; a cleaned path is rooted with no empty, `.` or `..` segment; every path
//! maps to at least one subresource of the kubelet's set; a `/logs/` path that resolves never
//! climbs out (no `..` component) and never carries a NUL; accepted ports are 1–65535.

#![no_main]

use kubelet_rs::server::secure::{authz, syslogs};
use kubelet_rs::server::streaming::{port_forward_ports, StreamOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let target = String::from_utf8_lossy(data);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));

    let clean = authz::clean_path(path);
    assert!(clean.starts_with('/'), "{clean}");
    assert!(
        clean == "/" || clean[1..].split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
        "{clean}"
    );
    let subs = authz::subresources(path);
    assert!(!subs.is_empty());
    for s in subs {
        assert!(
            ["stats", "metrics", "log", "checkpoint", "pods", "healthz", "configz", "proxy"]
                .contains(s)
        );
    }
    let _ = kubelet_rs::server::path_bucket(path);

    if let Ok(rel) = syslogs::relative(path) {
        for c in rel.components() {
            assert!(
                matches!(c, std::path::Component::Normal(_)),
                "{path:?} -> {rel:?}"
            );
        }
        assert!(!rel.to_string_lossy().contains('\0'));
    }

    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if let Ok(o) = StreamOptions::from_query(&pairs) {
        assert!(o.stdin || o.stdout || o.stderr);
        assert!(!(o.tty && o.stderr));
    }
    if let Ok(ports) = port_forward_ports(&pairs) {
        assert!(ports.iter().all(|p| (1..=65535).contains(p)));
    }
});
