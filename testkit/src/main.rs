//! `test-apiserver`: a single-process, in-memory Kubernetes API server for kubelet-rs's tests.
//! Test infrastructure, never shipped. See `testkit/README.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use testkit::apiserver::{run, Config};

#[derive(Parser, Debug)]
#[command(
    name = "test-apiserver",
    about = "In-memory Kubernetes API server for tests (single process; never a product)"
)]
struct Flags {
    /// Address to serve HTTPS on (port 0 picks a free one; the kubeconfigs name the real one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    bind: SocketAddr,
    /// Directory for the CA, keys, kubeconfigs and the state snapshot.
    #[arg(long)]
    data_dir: PathBuf,
    /// Start with an empty state even if a snapshot exists.
    #[arg(long)]
    fresh: bool,
    /// Number of change events kept for watches; older resourceVersions get 410 Gone.
    #[arg(long, default_value_t = 10_000)]
    watch_cache_size: usize,
    /// Seconds between BOOKMARK events on watches that allow them.
    #[arg(long, default_value_t = 60)]
    watch_bookmark_interval: u64,
    /// Base watch timeout in seconds when the client sets none.
    #[arg(long, default_value_t = 1800)]
    min_request_timeout: u64,
    /// Seconds between state snapshots (also saved on SIGTERM).
    #[arg(long, default_value_t = 5)]
    snapshot_interval: u64,
    /// Node address types tried, in order, to reach a kubelet.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP"
    )]
    kubelet_preferred_address_types: Vec<String>,
    /// CA to verify kubelets' serving certificates with (unset: not verified, as kube-apiserver).
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Longest lifetime of a certificate signed for a CSR, in seconds.
    #[arg(long, default_value_t = 365 * 24 * 3600)]
    cluster_signing_duration: u64,
    /// Do not run the trivial scheduler.
    #[arg(long)]
    disable_scheduler: bool,
}

fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::new(flags.bind, flags.data_dir);
    config.fresh = flags.fresh;
    config.watch_cache_size = flags.watch_cache_size.max(1);
    config.bookmark_interval = Duration::from_secs(flags.watch_bookmark_interval.max(1));
    config.min_request_timeout = Duration::from_secs(flags.min_request_timeout.max(1));
    config.snapshot_interval = Duration::from_secs(flags.snapshot_interval.max(1));
    config.kubelet_preferred_address_types = flags.kubelet_preferred_address_types;
    config.kubelet_certificate_authority = flags.kubelet_certificate_authority;
    config.cluster_signing_duration = Duration::from_secs(flags.cluster_signing_duration.max(600));
    config.scheduler = !flags.disable_scheduler;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("test-apiserver: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!("cannot watch SIGTERM: {e}");
                        std::future::pending::<()>().await;
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            }
        };
        run(config, shutdown).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("test-apiserver: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
