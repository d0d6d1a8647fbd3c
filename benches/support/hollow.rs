//! What the hollow-node benches (`hollow_pods`, `probes`) share: the process's CPU clock, the
//! `--log` flag, and the set-up and tear-down around `run` in `main` (the agent's log sink, its
//! multi-threaded tokio runtime, the node's temporary directory).

use std::path::Path;
use std::time::Duration;

/// User + system CPU of the whole process.
pub fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for the out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid out-pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A number given to `flag`, or an error naming the flag.
pub fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| format!("{flag}: {e}"))
}

/// The value of `--log`: `info` logs into a sink, `off` installs no subscriber.
pub fn parse_log(value: &str) -> Result<bool, String> {
    match value {
        "info" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("--log: expected info or off, got {other:?}")),
    }
}

/// Installs the log sink when `log` is set, then builds the agent's tokio runtime and a
/// temporary directory named `prefix…` under `parent` (the system's temporary directory when
/// `None`). Exits with status 1, naming `bench`, when either cannot be made.
pub fn setup(
    bench: &str,
    log: bool,
    prefix: &str,
    parent: Option<&Path>,
) -> (tokio::runtime::Runtime, tempfile::TempDir) {
    if log {
        let filter = tracing_subscriber::EnvFilter::new(kubelet_rs::config::log_directives(0));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::sink)
            .with_ansi(false)
            .try_init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{bench}: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    let dir = match parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    };
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{bench}: cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    (rt, dir)
}

/// Stops the runtime without waiting for its tasks, removes the directory, and exits with
/// status 1, naming `bench`, when `result` is an error.
pub fn finish(
    bench: &str,
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    result: Result<(), String>,
) {
    rt.shutdown_background();
    drop(dir);
    if let Err(e) = result {
        eprintln!("{bench}: {e}");
        std::process::exit(1);
    }
}
