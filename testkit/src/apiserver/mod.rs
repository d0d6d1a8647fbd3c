//! The test API server: TLS on loopback, authentication and authorization, the REST and watch
//! protocol over an in-memory store, admission and the few controllers a cluster needs for
//! kubectl and a kubelet to work. Single process, in memory (snapshotted to the data
//! directory), test infrastructure only.
//!
//! [`run`] binds the address, loads or creates the PKI and the state in the data directory,
//! writes `ca.crt`, `admin.kubeconfig` and `bootstrap.kubeconfig`, and only then serves (so
//! `/readyz` answering means the files are there); it saves the state on shutdown.

pub mod auth;
pub mod controllers;
pub mod discovery;
pub mod errors;
pub mod openapi;
pub mod patch;
pub mod patchmeta;
pub mod pki;
pub mod pods;
pub mod protobuf;
mod protobuf_fields;
pub mod proxy;
pub mod registry;
pub mod request;
pub mod resources;
pub mod rest;
pub mod sa;
pub mod selectors;
pub mod server;
pub mod ssa;
pub mod store;
pub mod table;
pub mod util;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Everything `test-apiserver`'s flags set.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    /// Start empty even if a snapshot exists.
    pub fresh: bool,
    /// Events kept for watches; a watch or paged list older than them gets 410 Gone.
    pub watch_cache_size: usize,
    pub bookmark_interval: Duration,
    /// Default watch timeout base (randomised into [1x, 2x) as kube-apiserver does).
    pub min_request_timeout: Duration,
    pub snapshot_interval: Duration,
    pub kubelet_preferred_address_types: Vec<String>,
    pub kubelet_certificate_authority: Option<PathBuf>,
    pub cluster_signing_duration: Duration,
    /// Run the trivial scheduler.
    pub scheduler: bool,
}

impl Config {
    pub fn new(bind: SocketAddr, data_dir: PathBuf) -> Config {
        Config {
            bind,
            data_dir,
            fresh: false,
            watch_cache_size: 10_000,
            bookmark_interval: Duration::from_secs(60),
            min_request_timeout: Duration::from_secs(1800),
            snapshot_interval: Duration::from_secs(5),
            kubelet_preferred_address_types: vec![
                "InternalIP".into(),
                "Hostname".into(),
                "InternalDNS".into(),
                "ExternalDNS".into(),
                "ExternalIP".into(),
            ],
            kubelet_certificate_authority: None,
            cluster_signing_duration: Duration::from_secs(365 * 24 * 3600),
            scheduler: true,
        }
    }
}

/// The running server's shared state.
pub struct Server {
    pub config: Config,
    pub addr: SocketAddr,
    pub pki: pki::Pki,
    pub store: store::Store,
    pub graph: openapi::TypeGraph,
    pub metrics: server::Metrics,
    pub openapi_hash: String,
    pub ready: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn bootstrap_token(dir: &std::path::Path) -> Result<String, RunError> {
    let path = dir.join("bootstrap-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim();
        if t.len() == 23 && t.as_bytes()[6] == b'.' {
            return Ok(t.to_string());
        }
    }
    let t = format!(
        "{}.{}",
        util::random_token_chars(6),
        util::random_token_chars(16)
    );
    std::fs::write(&path, &t).map_err(|source| RunError::Write { path, source })?;
    Ok(t)
}

/// Run until `shutdown` completes, then save the state.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let dir = config.data_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| RunError::DataDir {
        path: dir.clone(),
        source,
    })?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.bind,
        source,
    })?;
    let pki = pki::Pki::load_or_create(
        &dir,
        addr.ip(),
        config.kubelet_certificate_authority.as_deref(),
    )?;
    let store = store::Store::new(config.watch_cache_size);
    let state = dir.join("state.json");
    if config.fresh {
        let _ = std::fs::remove_file(&state);
    } else if store.load(&state)? {
        tracing::info!(
            resource_version = store.current_rv(),
            "state reloaded from {}",
            state.display()
        );
    }
    let graph = openapi::TypeGraph::build();
    let openapi_hash = {
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{}:{}", discovery::GIT_VERSION, graph.types.len()).as_bytes(),
        );
        d.as_ref()[..8].iter().map(|b| format!("{b:02X}")).collect()
    };
    let srv = Arc::new(Server {
        config,
        addr,
        pki,
        store,
        graph,
        metrics: server::Metrics::default(),
        openapi_hash,
        ready: AtomicBool::new(false),
    });
    let token = bootstrap_token(&dir)?;
    controllers::bootstrap(&srv, &token);
    let url = format!("https://{addr}");
    pki::write_kubeconfig(
        &dir.join("admin.kubeconfig"),
        &url,
        &srv.pki.ca_pem,
        "admin",
        pki::cert_credentials(&srv.pki.admin_cert_pem, &srv.pki.admin_key_pem),
    )?;
    pki::write_kubeconfig(
        &dir.join("bootstrap.kubeconfig"),
        &url,
        &srv.pki.ca_pem,
        "kubelet-bootstrap",
        serde_json::json!({"token": token}),
    )?;
    srv.store.save(&state, true)?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controllers = tokio::spawn(controllers::run(srv.clone()));
    let snapshots = {
        let srv = srv.clone();
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(srv.config.snapshot_interval).await;
                let (s, p) = (srv.clone(), state.clone());
                let r = tokio::task::spawn_blocking(move || s.store.save(&p, false)).await;
                if let Ok(Err(e)) = r {
                    tracing::warn!("{e}");
                }
            }
        })
    };
    srv.ready.store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(%addr, data_dir = %dir.display(), "test-apiserver serving");
    let serving = tokio::spawn(server::serve(srv.clone(), listener, stop_rx));
    shutdown.await;
    srv.ready.store(false, std::sync::atomic::Ordering::Release);
    let _ = stop_tx.send(true);
    let _ = serving.await;
    controllers.abort();
    snapshots.abort();
    srv.store.save(&state, true)?;
    tracing::info!(
        resource_version = srv.store.current_rv(),
        "state saved; stopped"
    );
    Ok(())
}
