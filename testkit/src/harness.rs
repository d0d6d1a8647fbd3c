//! A harness for tests: [`TestApiServer`] starts `test-apiserver` on a free loopback port with
//! a temporary data directory, waits for `/readyz`, hands out the kubeconfigs, CA and keys,
//! runs the real `kubectl` against it, stops it with SIGTERM, restarts it on the same port
//! and data directory (the state survives, as with etcd), and kills it and removes the
//! directory when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The kubectl of this machine image.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// The kubectl the harness runs: `$TESTKIT_KUBECTL` if set (to try another client version),
/// else [`KUBECTL`].
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("TESTKIT_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(KUBECTL))
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot build test-apiserver: {0}")]
    Build(String),
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("test-apiserver did not become ready within {0:?}; log:\n{1}")]
    NotReady(Duration, String),
    #[error("test-apiserver exited early ({0}); log:\n{1}")]
    Exited(ExitStatus, String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What a `kubectl` run printed.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Stdout, or a panic showing the command's stderr.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.success(),
            "kubectl failed ({:?}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

/// Where the `test-apiserver` binary is: `$TEST_APISERVER_BIN`, else built once per process
/// with `cargo build -p testkit --bin test-apiserver` (a no-op when it is up to date).
pub fn apiserver_binary() -> Result<PathBuf, HarnessError> {
    if let Some(p) = std::env::var_os("TEST_APISERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
            // Benchmarks (running from target/release) get an optimised server too.
            let release = std::env::current_exe()
                .is_ok_and(|p| p.components().any(|c| c.as_os_str() == "release"));
            let mut cmd = Command::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "--message-format=json",
                "--bin",
                "test-apiserver",
            ]);
            if release {
                cmd.arg("--release");
            }
            let out = cmd
                .arg("--manifest-path")
                .arg(&manifest)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("cargo build exited with {}", out.status));
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["target"]["name"] == "test-apiserver")
                .find_map(|v| v["executable"].as_str().map(PathBuf::from))
                .ok_or_else(|| "cargo did not report the test-apiserver executable".to_string())
        })
        .clone()
        .map_err(HarnessError::Build)
}

/// Options for [`TestApiServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The binary to run (default: [`apiserver_binary`]).
    pub binary: Option<PathBuf>,
    /// Extra flags (`--watch-cache-size=5`, `--watch-bookmark-interval=1`, ...).
    pub args: Vec<String>,
}

/// A running `test-apiserver` owned by a test.
pub struct TestApiServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    binary: PathBuf,
    args: Vec<String>,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("apiserver.log")).unwrap_or_default()
}

impl TestApiServer {
    /// Start with default options.
    pub fn start() -> Result<TestApiServer, HarnessError> {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Result<TestApiServer, HarnessError> {
        let binary = match opts.binary {
            Some(b) => b,
            None => apiserver_binary()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("test-apiserver.")
            .tempdir()?;
        let mut s = TestApiServer {
            child: None,
            dir,
            binary,
            args: opts.args,
            port: 0,
            tls: None,
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<(), HarnessError> {
        let data = self.data_dir();
        let _ = std::fs::remove_file(data.join("admin.kubeconfig"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("apiserver.log"))?;
        let child = Command::new(&self.binary)
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&data)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    return Err(HarnessError::Exited(st, read_log(self.dir.path())));
                }
            }
            if self.port == 0 {
                if let Ok(k) = std::fs::read_to_string(self.admin_kubeconfig()) {
                    if let Some(p) = k
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:"))
                        .and_then(|p| p.trim().parse().ok())
                    {
                        self.port = p;
                    }
                }
            }
            if self.port != 0 && self.admin_kubeconfig().exists() {
                if let Ok((200, _)) = self.get("/readyz") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady(limit, read_log(self.dir.path())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.data_dir().join("admin.kubeconfig")
    }

    /// A kubeconfig for node `node` (user `system:node:<node>` in `system:nodes`, a client
    /// certificate signed by the cluster CA), written into the data directory: what a kubelet
    /// that already joined the cluster runs with.
    pub fn node_kubeconfig(&self, node: &str) -> Result<PathBuf, HarnessError> {
        let out = self.data_dir().join(format!("node-{node}.kubeconfig"));
        crate::apiserver::pki::mint_client_kubeconfig(
            &self.data_dir(),
            &self.url(),
            &format!("system:node:{node}"),
            &["system:nodes"],
            &out,
        )
        .map_err(|e| {
            HarnessError::Io(std::io::Error::other(format!(
                "node kubeconfig for {node}: {e}"
            )))
        })?;
        Ok(out)
    }

    pub fn bootstrap_kubeconfig(&self) -> PathBuf {
        self.data_dir().join("bootstrap.kubeconfig")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir().join("ca.crt")
    }

    /// The CA's private key, so tests can mint client certificates (test infrastructure only).
    pub fn ca_key(&self) -> PathBuf {
        self.data_dir().join("ca.key")
    }

    /// The certificate the server presents to kubelets (CN `kube-apiserver-kubelet-client`).
    pub fn kubelet_client_cert(&self) -> PathBuf {
        self.data_dir().join("apiserver-kubelet-client.crt")
    }

    pub fn kubelet_client_key(&self) -> PathBuf {
        self.data_dir().join("apiserver-kubelet-client.key")
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The bootstrap token (`<id>.<secret>`).
    pub fn bootstrap_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("bootstrap-token"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// A `kubectl` command with this server's admin kubeconfig and its own cache directory.
    pub fn kubectl_command(&self) -> Command {
        let mut c = Command::new(kubectl_path());
        c.env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"));
        c
    }

    /// Run `kubectl <args>` (at most 120 s) and collect its output.
    pub fn kubectl(&self, args: &[&str]) -> KubectlOutput {
        self.kubectl_with_stdin(args, None)
    }

    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> KubectlOutput {
        let mut c = self.kubectl_command();
        c.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match c.spawn() {
            Ok(c) => c,
            Err(e) => {
                return KubectlOutput {
                    status: None,
                    stdout: String::new(),
                    stderr: format!("cannot run {}: {e}", kubectl_path().display()),
                }
            }
        };
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(input.as_bytes());
        }
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        KubectlOutput {
            status,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        }
    }

    /// Stop with SIGTERM (the state is saved) and wait for the exit.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        let Some(mut c) = self.child.take() else {
            return Ok(None);
        };
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(Some(st));
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return Ok(Some(c.wait()?));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kill with SIGKILL (no snapshot on the way out).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port and data directory.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop()?;
        self.spawn()
    }

    /// The extra flags used by the next (re)start, e.g. to add `--fresh`.
    pub fn args_mut(&mut self) -> &mut Vec<String> {
        &mut self.args
    }

    /// Start again after [`TestApiServer::stop`] or [`TestApiServer::kill`].
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn()
    }

    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(c) = &self.tls {
            return Ok(c.clone());
        }
        let data = self.data_dir();
        let read = |name: &str| std::fs::read(data.join(name)).map_err(|e| format!("{name}: {e}"));
        let ca = pem_der(&read("ca.crt")?, "CERTIFICATE").ok_or("ca.crt: no certificate")?;
        let cert =
            pem_der(&read("admin.crt")?, "CERTIFICATE").ok_or("admin.crt: no certificate")?;
        let key = pem_der(&read("admin.key")?, "PRIVATE KEY").ok_or("admin.key: no key")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.into()).map_err(|e| e.to_string())?;
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert.into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .map_err(|e| e.to_string())?;
        let cfg = Arc::new(cfg);
        self.tls = Some(cfg.clone());
        Ok(cfg)
    }

    /// A raw HTTPS request as the cluster admin; returns the status code and body.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let cfg = self.tls_config()?;
        let name =
            rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
        let conn =
            rustls::ClientConnection::new(cfg, name.to_owned()).map_err(|e| e.to_string())?;
        let sock = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
        tls.write_all(body).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, rest) = text.split_once("\r\n\r\n").ok_or("no HTTP response")?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no status code")?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_string()
        };
        Ok((code, body))
    }

    /// `GET path` as the cluster admin.
    pub fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        self.request("GET", path, "application/json", b"")
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            out.push_str(&after[..n.min(after.len())]);
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn pem_der(pem: &[u8], label: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let text = std::str::from_utf8(pem).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
    }
}
