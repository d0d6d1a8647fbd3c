//! Watches: a chunked stream of `{"type": ..., "object": ...}` lines from the store's event
//! history, with kube-apiserver's resourceVersion semantics (unset or `0` starts with the
//! current state as ADDED events; a version starts after it; one older than the history is
//! an ERROR event with a 410 `Expired` Status), `sendInitialEvents` with the
//! `k8s.io/initial-events-end` bookmark, periodic BOOKMARK events when
//! `allowWatchBookmarks` is set, selector transitions (an object leaving the selection is a
//! DELETED event, one entering it ADDED), `timeoutSeconds`, and Table or metadata-only
//! objects when the client asked for them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::errors::{ApiError, ApiResult, FieldError};
use super::registry::ResourceDef;
use super::request::{query_bool, Representation};
use super::rest::{partial, wait_for_rv, Req, Selectors};
use super::store::{EventType, StoreError};
use super::table;
use super::util;
use super::Server;

struct Watcher {
    srv: Arc<Server>,
    r: &'static ResourceDef,
    ns: Option<String>,
    sel: Selectors,
    repr: Representation,
    include: Option<String>,
    bookmarks: bool,
    sent_headers: bool,
    tx: mpsc::Sender<Bytes>,
    user: String,
}

impl Watcher {
    fn encode(&mut self, kind: &str, obj: &Value) -> Bytes {
        let object = match (kind, self.repr) {
            ("ERROR" | "BOOKMARK", _) => obj.clone(),
            (_, Representation::Table { v1beta1 }) => {
                let headers = !self.sent_headers;
                self.sent_headers = true;
                table::to_table(
                    self.r,
                    std::slice::from_ref(obj),
                    util::resource_version(obj),
                    None,
                    self.include.as_deref(),
                    v1beta1,
                    headers,
                )
            }
            (_, Representation::PartialMetadata) => partial(obj),
            _ => obj.clone(),
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    async fn send(&mut self, kind: &str, obj: &Value) -> bool {
        let b = self.encode(kind, obj);
        self.srv
            .metrics
            .add_bytes(&self.user, "watch", self.r.resource, b.len());
        self.tx.send(b).await.is_ok()
    }

    fn in_scope(&self, obj: &Value) -> bool {
        self.ns.as_deref().is_none_or(|n| util::namespace(obj) == n)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.r.kind, "apiVersion": self.r.api_version(), "metadata": meta})
    }

    fn expired(requested: u64, oldest: u64) -> Value {
        ApiError::gone(format!("too old resource version: {requested} ({oldest})")).to_status()
    }
}

pub async fn watch(req: &Req<'_>, r: &'static ResourceDef) -> ApiResult<mpsc::Receiver<Bytes>> {
    let sel = Selectors::parse(req, r)?;
    let q = req.query;
    let rv_param = q.get("resourceVersion").cloned().unwrap_or_default();
    let rv_match = q.get("resourceVersionMatch").cloned().unwrap_or_default();
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true");
    let bookmarks = query_bool(q, "allowWatchBookmarks");
    let invalid = |m: &str, f: &str| {
        ApiError::invalid(
            "ListOptions",
            "meta.k8s.io",
            "",
            vec![FieldError::forbidden(f, m)],
        )
    };
    if send_initial.is_some() {
        if rv_match != "NotOlderThan" {
            return Err(invalid(
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                "resourceVersionMatch",
            ));
        }
        if !bookmarks {
            return Err(invalid(
                "sendInitialEvents requires setting allowWatchBookmarks to true",
                "allowWatchBookmarks",
            ));
        }
    } else if !rv_match.is_empty() {
        return Err(invalid(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            "resourceVersionMatch",
        ));
    }
    let requested: Option<u64> = match rv_param.as_str() {
        "" => None,
        s => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    if let Some(n) = requested.filter(|n| *n > 0) {
        wait_for_rv(req.srv, n).await?;
    }
    let timeout = match q.get("timeoutSeconds").map(|t| t.parse::<u64>()) {
        Some(Ok(t)) if t > 0 => Duration::from_secs(t),
        Some(Err(_)) => return Err(ApiError::bad_request("timeoutSeconds must be an integer")),
        _ => {
            // `--min-request-timeout` randomised into [1x, 2x), as kube-apiserver does.
            let mut b = [0u8; 2];
            util::random_bytes(&mut b);
            let base = req.srv.config.min_request_timeout.as_secs().max(1);
            Duration::from_secs(base + u64::from(u16::from_le_bytes(b)) % base)
        }
    };
    let ns = if r.namespaced && !req.info.namespace.is_empty() {
        Some(req.info.namespace.clone())
    } else {
        None
    };
    let (tx, rx) = mpsc::channel(256);
    let mut w = Watcher {
        srv: req.srv.clone(),
        r,
        ns,
        sel,
        repr: req.repr,
        include: q.get("includeObject").cloned(),
        bookmarks,
        sent_headers: false,
        tx,
        user: req.user.name.clone(),
    };
    // `sendInitialEvents=false` with a version means "start after it"; unset or 0 (without
    // `sendInitialEvents=false`) means "start with the current state".
    let initial = match (send_initial, requested) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, None) | (None, Some(0)) => true,
        (None, Some(_)) => false,
    };
    let explicit_initial = send_initial == Some(true);
    tokio::spawn(async move {
        let mut sub = w.srv.store.subscribe_to(w.r.key());
        // Changes between the start version and now are in the history: look at once.
        sub.mark_changed();
        let start = w.srv.store.read(|g| {
            if initial {
                let ns = w.ns.clone();
                let items = g.list(w.r.key(), ns.as_deref());
                Ok((g.rv(), items))
            } else {
                let n = requested.unwrap_or(g.rv());
                let oldest = g.oldest_rv(w.r.key());
                if n < oldest {
                    Err((n, oldest))
                } else {
                    Ok((n, Vec::new()))
                }
            }
        });
        let mut cursor = match start {
            Ok((rv, items)) => {
                for (_, o) in items {
                    if w.sel.matches(&o) && !w.send("ADDED", &o).await {
                        return;
                    }
                }
                rv
            }
            Err((n, oldest)) => {
                let _ = w.send("ERROR", &Watcher::expired(n, oldest)).await;
                return;
            }
        };
        if explicit_initial {
            let b = w.bookmark(cursor, true);
            if !w.send("BOOKMARK", &b).await {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let interval = w.srv.config.bookmark_interval;
        let mut next_bookmark = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                changed = sub.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let key = w.r.key();
                    let events = w.srv.store.read(|g| g.events_after(key, cursor).map(|e| (e, g.rv())));
                    match events {
                        Err(StoreError::Compacted { requested, oldest }) => {
                            let _ = w.send("ERROR", &Watcher::expired(requested, oldest)).await;
                            return;
                        }
                        Err(_) => return,
                        Ok((events, rv)) => {
                            for e in events {
                                cursor = e.rv;
                                if !w.in_scope(&e.object) {
                                    continue;
                                }
                                let now = w.sel.matches(&e.object);
                                let before = e.prev.as_ref().is_some_and(|p| w.sel.matches(p));
                                let kind = match (e.kind, before, now) {
                                    (EventType::Added, _, true) => "ADDED",
                                    (EventType::Modified, true, true) => "MODIFIED",
                                    (EventType::Modified, false, true) => "ADDED",
                                    (EventType::Modified, true, false) => "DELETED",
                                    (EventType::Deleted, true, _) => "DELETED",
                                    _ => continue,
                                };
                                if !w.send(kind, &e.object).await {
                                    return;
                                }
                            }
                            cursor = cursor.max(rv);
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_bookmark), if w.bookmarks => {
                    next_bookmark = tokio::time::Instant::now() + interval;
                    let b = w.bookmark(cursor, false);
                    if !w.send("BOOKMARK", &b).await {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if w.bookmarks {
                        let b = w.bookmark(cursor, false);
                        let _ = w.send("BOOKMARK", &b).await;
                    }
                    return;
                }
                _ = w.tx.closed() => return,
            }
        }
    });
    Ok(rx)
}
