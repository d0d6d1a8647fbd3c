//! systemd-logind as graceful node shutdown uses it (the kubelet's
//! `nodeshutdown/systemd/inhibit_linux.go`): the `InhibitDelayMaxUSec` property, a delay
//! inhibitor lock on `shutdown` (a descriptor: the lock holds while it is open), and the
//! `PrepareForShutdown` signal.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::sync::mpsc;

use super::dbus::{Connection, DbusError, Message, MessageType, Value};

pub const LOGIND_SERVICE: &str = "org.freedesktop.login1";
pub const LOGIND_OBJECT: &str = "/org/freedesktop/login1";
pub const LOGIND_INTERFACE: &str = "org.freedesktop.login1.Manager";
pub const PROPERTIES_INTERFACE: &str = "org.freedesktop.DBus.Properties";
/// The inhibitor's `who` and `why`, as the kubelet gives them.
pub const INHIBIT_WHO: &str = "kubelet";
pub const INHIBIT_WHY: &str = "Kubelet needs time to handle node shutdown";

/// A held inhibitor lock: closing the descriptor (dropping this) releases it.
#[derive(Debug)]
pub struct InhibitLock(pub OwnedFd);

/// A connection to logind on the system bus.
pub struct Logind {
    conn: Connection,
    incoming: mpsc::UnboundedReceiver<Message>,
}

impl Logind {
    /// Connects to the bus at `address`.
    pub async fn connect(address: &str) -> Result<Logind, DbusError> {
        let (conn, incoming) = Connection::connect(address).await?;
        Ok(Logind { conn, incoming })
    }

    /// logind's `InhibitDelayMaxUSec`: the longest a delay lock may hold a shutdown.
    pub async fn inhibit_delay_max(&self) -> Result<Duration, DbusError> {
        let reply = self
            .conn
            .call(
                Message::method_call(LOGIND_SERVICE, LOGIND_OBJECT, PROPERTIES_INTERFACE, "Get")
                    .with_body(vec![
                        Value::str(LOGIND_INTERFACE),
                        Value::str("InhibitDelayMaxUSec"),
                    ]),
            )
            .await?;
        match reply.body.first() {
            Some(Value::Variant(v)) => match v.as_ref() {
                Value::U64(us) => Ok(Duration::from_micros(*us)),
                other => Err(DbusError::Protocol(format!(
                    "InhibitDelayMaxUSec from logind is not a uint64 as expected: {}",
                    other.signature()
                ))),
            },
            _ => Err(DbusError::Protocol(
                "InhibitDelayMaxUSec from logind is not a variant".into(),
            )),
        }
    }

    /// Takes a delay inhibitor lock on shutdown.
    pub async fn inhibit_shutdown(&self) -> Result<InhibitLock, DbusError> {
        let mut reply = self
            .conn
            .call(
                Message::method_call(LOGIND_SERVICE, LOGIND_OBJECT, LOGIND_INTERFACE, "Inhibit")
                    .with_body(vec![
                        Value::str("shutdown"),
                        Value::str(INHIBIT_WHO),
                        Value::str(INHIBIT_WHY),
                        Value::str("delay"),
                    ]),
            )
            .await?;
        match (reply.body.first(), reply.fds.is_empty()) {
            (Some(Value::UnixFd(i)), false) if (*i as usize) < reply.fds.len() => {
                Ok(InhibitLock(reply.fds.swap_remove(*i as usize)))
            }
            _ => Err(DbusError::Protocol(format!(
                "Inhibit returned {:?} with {} descriptors, not a descriptor",
                reply.signature(),
                reply.fds.len()
            ))),
        }
    }

    /// Subscribes to `PrepareForShutdown`; then [`Logind::next_event`] returns them.
    pub async fn monitor_shutdown(&self) -> Result<(), DbusError> {
        // Unlike the kubelet's rule, this one names the sender: the bus then delivers only
        // logind's signal, not one any other client of the bus sends.
        let rule = format!(
            "type='signal',sender='{LOGIND_SERVICE}',interface='{LOGIND_INTERFACE}',\
             member='PrepareForShutdown',path='{LOGIND_OBJECT}'"
        );
        self.conn
            .call_bus("AddMatch", vec![Value::Str(rule)])
            .await
            .map(|_| ())
    }

    /// The next `PrepareForShutdown` value (true: shutting down; false: cancelled), or None
    /// once the connection is gone. Malformed signals are logged and skipped.
    pub async fn next_event(&mut self) -> Option<bool> {
        loop {
            let m = self.incoming.recv().await?;
            if m.kind != MessageType::Signal || !m.is(LOGIND_INTERFACE, "PrepareForShutdown") {
                continue;
            }
            match m.body.first() {
                Some(Value::Bool(b)) => return Some(*b),
                _ => tracing::error!(
                    signature = %m.signature(),
                    "Failed obtaining shutdown event, PrepareForShutdown event was not bool type as expected"
                ),
            }
        }
    }
}
