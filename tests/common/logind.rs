//! A stand-in systemd-logind for the graceful node shutdown tests (these machines run no
//! systemd): a private `dbus-daemon` (Debian's `dbus`, which `scripts/runtime up` installs) on
//! its own socket, and a service on it that owns `org.freedesktop.login1` and answers
//! `Manager.Inhibit` (a pipe's write end; the test sees when every copy of it is closed),
//! `Properties.Get(InhibitDelayMaxUSec)`, and emits `PrepareForShutdown` when the test asks. It
//! speaks D-Bus through the agent's own client (`kubelet_rs::nodeshutdown::dbus`), so the
//! wire format is checked against the reference bus from both ends.
//!
//! Dropping it stops the service and the daemon and removes its directory.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubelet_rs::nodeshutdown::dbus::{Connection, Message, MessageType, Value};
use kubelet_rs::nodeshutdown::logind::{LOGIND_INTERFACE, LOGIND_OBJECT, LOGIND_SERVICE};
use parking_lot::Mutex;

pub const DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";

/// One `Inhibit` call the service answered.
#[derive(Debug)]
pub struct Inhibitor {
    pub what: String,
    pub who: String,
    pub why: String,
    pub mode: String,
    /// The read end of the pipe whose write end went to the caller.
    read: OwnedFd,
}

impl Inhibitor {
    /// Whether the caller still holds the lock (some copy of the write end is open).
    pub fn held(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n == 0 || p.revents & libc::POLLHUP == 0
    }
}

/// The stand-in logind and its bus.
pub struct FakeLogind {
    /// The bus address for `DBUS_SYSTEM_BUS_ADDRESS`.
    pub address: String,
    daemon: Child,
    rt: tokio::runtime::Runtime,
    conn: Arc<Connection>,
    inhibitors: Arc<Mutex<Vec<Inhibitor>>>,
    _dir: tempfile::TempDir,
}

/// Starts a private bus in a fresh directory; returns it with its address.
pub fn start_bus() -> (Child, String, tempfile::TempDir) {
    assert!(
        Path::new(DBUS_DAEMON).exists(),
        "{DBUS_DAEMON} is missing: run `scripts/runtime up` (it installs Debian's dbus)"
    );
    let dir = tempfile::Builder::new()
        .prefix("kubelet-rs-bus-")
        .tempdir()
        .unwrap();
    let socket: PathBuf = dir.path().join("system_bus_socket");
    let config = dir.path().join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            socket.display()
        ),
    )
    .unwrap();
    let daemon = Command::new(DBUS_DAEMON)
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--nopidfile", "--nosyslog"])
        .stdout(Stdio::null())
        // It says it cannot raise its descriptor limit (no CAP_SYS_RESOURCE here): harmless.
        .stderr(Stdio::null())
        .spawn()
        .expect("start dbus-daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "dbus-daemon did not create {socket:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (daemon, format!("unix:path={}", socket.display()), dir)
}

impl FakeLogind {
    /// A bus with logind on it; `delay` is its `InhibitDelayMaxUSec`.
    pub fn start(delay: Duration) -> FakeLogind {
        let (daemon, address, dir) = start_bus();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let inhibitors: Arc<Mutex<Vec<Inhibitor>>> = Arc::default();
        let (conn, rx) = rt.block_on(async {
            let (conn, rx) = Connection::connect(&address)
                .await
                .expect("connect to the test bus");
            let r = conn
                .call_bus(
                    "RequestName",
                    vec![Value::str(LOGIND_SERVICE), Value::U32(4)],
                )
                .await
                .expect("RequestName");
            assert_eq!(
                r.body,
                vec![Value::U32(1)],
                "not the primary owner of login1"
            );
            (Arc::new(conn), rx)
        });
        rt.spawn(serve(conn.clone(), rx, inhibitors.clone(), delay));
        FakeLogind {
            address,
            daemon,
            rt,
            conn,
            inhibitors,
            _dir: dir,
        }
    }

    /// `(what, who, why, mode, held)` of every Inhibit call so far.
    pub fn inhibitors(&self) -> Vec<(String, String, String, String, bool)> {
        self.inhibitors
            .lock()
            .iter()
            .map(|i| {
                (
                    i.what.clone(),
                    i.who.clone(),
                    i.why.clone(),
                    i.mode.clone(),
                    i.held(),
                )
            })
            .collect()
    }

    /// Emits `PrepareForShutdown(active)`.
    pub fn prepare_for_shutdown(&self, active: bool) {
        let conn = self.conn.clone();
        self.rt
            .block_on(async move {
                conn.send(
                    Message::signal(LOGIND_OBJECT, LOGIND_INTERFACE, "PrepareForShutdown")
                        .with_body(vec![Value::Bool(active)]),
                )
                .await
            })
            .expect("emit PrepareForShutdown");
    }
}

impl Drop for FakeLogind {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// Answers the calls logind's clients make.
async fn serve(
    conn: Arc<Connection>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
    inhibitors: Arc<Mutex<Vec<Inhibitor>>>,
    delay: Duration,
) {
    while let Some(m) = rx.recv().await {
        if m.kind != MessageType::MethodCall {
            continue;
        }
        let strings: Vec<String> = m
            .body
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let reply = if m.is(LOGIND_INTERFACE, "Inhibit") && strings.len() == 4 {
            let (read, write) = std::io::pipe().unwrap();
            inhibitors.lock().push(Inhibitor {
                what: strings[0].clone(),
                who: strings[1].clone(),
                why: strings[2].clone(),
                mode: strings[3].clone(),
                read: read.into(),
            });
            let mut r = m.reply(vec![Value::UnixFd(0)]);
            r.fds.push(write.into());
            r
        } else if m.is("org.freedesktop.DBus.Properties", "Get")
            && strings == [LOGIND_INTERFACE, "InhibitDelayMaxUSec"]
        {
            m.reply(vec![Value::Variant(Box::new(Value::U64(
                delay.as_micros() as u64,
            )))])
        } else {
            m.error_reply(
                "org.freedesktop.DBus.Error.UnknownMethod",
                &format!("{:?}.{:?} is not served here", m.interface, m.member),
            )
        };
        // The reply (and this copy of the write end) is gone once sent.
        let _ = conn.send(reply).await;
    }
}
