//! cAdvisor's container events: creation and deletion (from the monitor's registry, diffed
//! after every pass), and `oom` / `oomKill` (parsed from `/dev/kmsg`), stored with cAdvisor's
//! default policy (24 h, 100 000 events per type) and queried with its `events.Request`
//! semantics: types must be asked for, time range inclusive, the most recent `max_events`
//! (default 10) oldest first, `subcontainers` matching by path prefix. Watchers get new
//! events as they are added (`stream=true`).

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use super::api::rfc3339_nano;

/// cAdvisor's `EventType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum EventType {
    /// `oom`: a cgroup hit its memory limit (the OOM was for this cgroup's task).
    #[serde(rename = "oom")]
    Oom,
    /// `oomKill`: the kernel killed a process (the victim cgroup).
    #[serde(rename = "oomKill")]
    OomKill,
    /// `containerCreation`.
    #[serde(rename = "containerCreation")]
    ContainerCreation,
    /// `containerDeletion`.
    #[serde(rename = "containerDeletion")]
    ContainerDeletion,
}

impl EventType {
    /// All types, in the order of cAdvisor's query parameters.
    pub const ALL: [EventType; 4] = [
        EventType::Oom,
        EventType::OomKill,
        EventType::ContainerCreation,
        EventType::ContainerDeletion,
    ];

    /// The query parameter selecting this type (`oom_events`, ...).
    pub fn param(self) -> &'static str {
        match self {
            EventType::Oom => "oom_events",
            EventType::OomKill => "oom_kill_events",
            EventType::ContainerCreation => "creation_events",
            EventType::ContainerDeletion => "deletion_events",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// `v1.OomKillEventData`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OomKillEventData {
    pub pid: i64,
    pub process_name: String,
    pub constraint: String,
}

/// `v1.EventData`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventData {
    #[serde(rename = "oom", skip_serializing_if = "Option::is_none")]
    pub oom_kill: Option<OomKillEventData>,
}

fn go_time<S: serde::Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_nano(*ns))
}

/// `v1.Event`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub container_name: String,
    #[serde(serialize_with = "go_time")]
    pub timestamp: u64,
    pub event_type: EventType,
    pub event_data: EventData,
}

/// A query: cAdvisor's `events.Request`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRequest {
    /// Inclusive lower bound, ns (0: none).
    pub start: u64,
    /// Inclusive upper bound, ns (0: none).
    pub end: u64,
    /// Bit set of [`EventType`]s asked for.
    types: u8,
    /// At most this many, the most recent (≤ 0: all).
    pub max_events: i64,
    /// `path.Join("/", name)`.
    pub container_name: String,
    /// Match the container's subcontainers too.
    pub include_subcontainers: bool,
}

impl EventRequest {
    /// cAdvisor's `NewRequest`: no types, 10 events, this container only.
    pub fn new(container_name: &str) -> Self {
        EventRequest {
            start: 0,
            end: 0,
            types: 0,
            max_events: 10,
            container_name: container_name.to_string(),
            include_subcontainers: false,
        }
    }

    /// Selects or deselects `t`.
    pub fn set_type(&mut self, t: EventType, on: bool) {
        if on {
            self.types |= t.bit();
        } else {
            self.types &= !t.bit();
        }
    }

    /// Whether `t` is asked for.
    pub fn wants(&self, t: EventType) -> bool {
        self.types & t.bit() != 0
    }

    /// cAdvisor's `checkIfEventSatisfiesRequest`.
    pub fn matches(&self, e: &Event) -> bool {
        if self.start != 0 && e.timestamp < self.start {
            return false;
        }
        if self.end != 0 && e.timestamp > self.end {
            return false;
        }
        if !self.wants(e.event_type) {
            return false;
        }
        if self.container_name.is_empty() {
            return true;
        }
        if self.include_subcontainers {
            self.container_name == "/"
                || format!("{}/", e.container_name)
                    .starts_with(&format!("{}/", self.container_name))
        } else {
            e.container_name == self.container_name
        }
    }
}

/// Retention: cAdvisor's `DefaultStoragePolicy`.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Events kept per type.
pub const MAX_EVENTS_PER_TYPE: usize = 100_000;

/// The event store and its watchers.
pub struct EventStore {
    by_type: Mutex<[VecDeque<Event>; 4]>,
    tx: tokio::sync::broadcast::Sender<Event>,
}

impl Default for EventStore {
    fn default() -> Self {
        EventStore {
            by_type: Mutex::new(Default::default()),
            tx: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl EventStore {
    /// Stores `e` and hands it to the watchers.
    pub fn add(&self, e: Event) {
        {
            let mut all = self.by_type.lock();
            let q = &mut all[e.event_type as usize];
            // Keep the queue ordered by time (creation events carry the cgroup's own time).
            let pos = q.partition_point(|x| x.timestamp <= e.timestamp);
            q.insert(pos, e.clone());
            let newest = q.back().map_or(0, |x| x.timestamp);
            let horizon = newest.saturating_sub(MAX_AGE.as_nanos() as u64);
            while q.len() > MAX_EVENTS_PER_TYPE || q.front().is_some_and(|x| x.timestamp < horizon)
            {
                q.pop_front();
            }
        }
        let _ = self.tx.send(e);
    }

    /// Past events matching `r`, oldest first, the `max_events` most recent.
    pub fn query(&self, r: &EventRequest) -> Vec<Event> {
        let all = self.by_type.lock();
        let mut out: Vec<Event> = EventType::ALL
            .iter()
            .filter(|t| r.wants(**t))
            .flat_map(|t| all[*t as usize].iter())
            .filter(|e| r.matches(e))
            .cloned()
            .collect();
        out.sort_by_key(|e| e.timestamp);
        if r.max_events > 0 && (r.max_events as usize) < out.len() {
            out.drain(..out.len() - r.max_events as usize);
        }
        out
    }

    /// A receiver of every event added from now on (filter with [`EventRequest::matches`]).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

// ------------------------------------------------------------------ OOM messages in kmsg

/// One OOM, as cAdvisor's `oomparser.OomInstance`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OomInstance {
    pub pid: i64,
    pub process_name: String,
    /// Kernel time of the record that completed it, µs since boot.
    pub time_us: u64,
    /// The memcg of the task that triggered the OOM (`task_memcg`).
    pub container_name: String,
    /// The memcg whose limit was hit (`oom_memcg`).
    pub victim_container_name: String,
    pub constraint: String,
}

/// Splits a `/dev/kmsg` record, `prio,seq,ts_us,flags[,...];message`, into its timestamp
/// and message. Continuation lines (starting with a space) and malformed records give `None`.
pub fn parse_kmsg_record(rec: &str) -> Option<(u64, &str)> {
    let (head, msg) = rec.split_once(';')?;
    let ts = head.split(',').nth(2)?.parse().ok()?;
    Some((ts, msg.trim_end_matches('\n')))
}

/// `path.Join("/", p)`.
fn join_root(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Parses the `oom-kill:constraint=...,task=...,pid=...,uid=...` line (kernel ≥ 4.19) the way
/// cAdvisor's greedy regular expression does: each field ends at the last occurrence of the
/// next field's key.
fn parse_oom_kill_line(msg: &str, inst: &mut OomInstance) -> bool {
    let Some(rest) = msg
        .find("oom-kill:constraint=")
        .map(|i| &msg[i + "oom-kill:constraint=".len()..])
    else {
        return false;
    };
    const KEYS: [&str; 8] = [
        ",nodemask=",
        ",cpuset=",
        ",mems_allowed=",
        ",oom_memcg=",
        ",task_memcg=",
        ",task=",
        ",pid=",
        ",uid=",
    ];
    // Walk from the end: field i lies between the last KEYS[i-1] before field i+1 and it.
    let mut fields: [&str; 9] = [""; 9];
    let mut end = rest.len();
    for i in (0..KEYS.len()).rev() {
        let Some(p) = rest[..end].rfind(KEYS[i]) else {
            return false;
        };
        fields[i + 1] = &rest[p + KEYS[i].len()..end];
        end = p;
    }
    fields[0] = &rest[..end];
    let Ok(pid) = fields[7].parse() else {
        return false;
    };
    inst.constraint = fields[0].to_string();
    inst.victim_container_name = fields[4].to_string();
    inst.container_name = fields[5].to_string();
    inst.process_name = fields[6].to_string();
    inst.pid = pid;
    true
}

/// `Killed process <pid> (<name>)`.
fn parse_killed_line(msg: &str, inst: &mut OomInstance) -> bool {
    let Some(i) = msg.find("Killed process ") else {
        return false;
    };
    let rest = &msg[i + "Killed process ".len()..];
    let Some((pid, rest)) = rest.split_once(" (") else {
        return false;
    };
    let Some(end) = rest.rfind(')') else {
        return false;
    };
    let Ok(pid) = pid.parse() else {
        return false;
    };
    inst.pid = pid;
    inst.process_name = rest[..end].to_string();
    true
}

/// Legacy `Task in <cg> killed as a result of limit of <cg>`.
fn parse_legacy_line(msg: &str, inst: &mut OomInstance) {
    if let Some(i) = msg.find("Task in ") {
        let rest = &msg[i + "Task in ".len()..];
        if let Some((task, victim)) = rest.split_once(" killed as a result of limit of ") {
            inst.container_name = join_root(task);
            inst.victim_container_name = join_root(victim.trim());
        }
    }
}

/// The OOM state machine over kmsg messages (cAdvisor's `StreamOoms`): an OOM starts at
/// `invoked oom-killer:` and completes at the `oom-kill:` line or `Killed process`.
#[derive(Debug, Default)]
pub struct OomParser {
    current: Option<OomInstance>,
}

impl OomParser {
    /// Feeds one message; returns an OOM when one completes.
    pub fn feed(&mut self, ts_us: u64, msg: &str) -> Option<OomInstance> {
        match self.current.as_mut() {
            None => {
                if msg.contains("invoked oom-killer:") {
                    self.current = Some(OomInstance {
                        container_name: "/".into(),
                        victim_container_name: "/".into(),
                        time_us: ts_us,
                        ..Default::default()
                    });
                }
                None
            }
            Some(inst) => {
                let done = parse_oom_kill_line(msg, inst) || parse_killed_line(msg, inst);
                if !done {
                    parse_legacy_line(msg, inst);
                    return None;
                }
                inst.time_us = ts_us;
                self.current.take()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(name: &str, ts: u64, t: EventType) -> Event {
        Event {
            container_name: name.into(),
            timestamp: ts,
            event_type: t,
            event_data: EventData::default(),
        }
    }

    #[test]
    fn queries_follow_cadvisor_semantics() {
        let s = EventStore::default();
        for i in 0..20u64 {
            s.add(ev(
                &format!("/a/c{i}"),
                100 + i,
                EventType::ContainerCreation,
            ));
        }
        s.add(ev("/a", 50, EventType::ContainerCreation));
        s.add(ev("/b", 60, EventType::ContainerDeletion));
        let mut r = EventRequest::new("/a");
        assert!(s.query(&r).is_empty(), "no type asked for");
        r.set_type(EventType::ContainerCreation, true);
        assert_eq!(
            s.query(&r),
            vec![ev("/a", 50, EventType::ContainerCreation)]
        );
        r.include_subcontainers = true;
        let got = s.query(&r);
        assert_eq!(got.len(), 10, "max_events defaults to 10");
        assert_eq!(got[0].timestamp, 110, "the most recent, oldest first");
        assert_eq!(got[9].timestamp, 119);
        r.max_events = -1;
        r.start = 105;
        r.end = 107;
        assert_eq!(s.query(&r).len(), 3, "inclusive range");
        let mut r = EventRequest::new("/");
        r.include_subcontainers = true;
        r.max_events = 0;
        for t in EventType::ALL {
            r.set_type(t, true);
        }
        assert_eq!(s.query(&r).len(), 22);
        // "/a" does not match "/ab".
        let mut r = EventRequest::new("/a");
        r.include_subcontainers = true;
        r.set_type(EventType::ContainerCreation, true);
        assert!(r.matches(&ev("/a/x", 1, EventType::ContainerCreation)));
        assert!(!r.matches(&ev("/ab", 1, EventType::ContainerCreation)));
    }

    #[test]
    fn event_json_is_cadvisors() {
        let e = Event {
            container_name: "/kubepods/pod1/abc".into(),
            timestamp: 1_700_000_000_500_000_000,
            event_type: EventType::OomKill,
            event_data: EventData {
                oom_kill: Some(OomKillEventData {
                    pid: 42,
                    process_name: "stress".into(),
                    constraint: "CONSTRAINT_MEMCG".into(),
                }),
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"container_name":"/kubepods/pod1/abc","timestamp":"2023-11-14T22:13:20.5Z","event_type":"oomKill","event_data":{"oom":{"pid":42,"process_name":"stress","constraint":"CONSTRAINT_MEMCG"}}}"#
        );
        let c = ev(
            "/x",
            1_700_000_000_000_000_000,
            EventType::ContainerCreation,
        );
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"container_name":"/x","timestamp":"2023-11-14T22:13:20Z","event_type":"containerCreation","event_data":{}}"#
        );
    }

    #[test]
    fn parses_oom_sequences_from_kmsg() {
        // Records as this kernel writes them (trimmed).
        let records = [
            "4,2001,8001000,-;stress invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=1000",
            " SUBSYSTEM=memory",
            "4,2002,8001010,-;CPU: 1 PID: 4242 Comm: stress Not tainted 6.1.0 #1",
            "6,2003,8001100,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=abc,mems_allowed=0,oom_memcg=/kubepods/burstable/pod1,task_memcg=/kubepods/burstable/pod1/abc,task=stress,pid=4242,uid=0",
            "3,2004,8001200,-;Memory cgroup out of memory: Killed process 4242 (stress) total-vm:1000kB",
        ];
        let mut p = OomParser::default();
        let mut got = Vec::new();
        for r in records {
            if let Some((ts, msg)) = parse_kmsg_record(r) {
                got.extend(p.feed(ts, msg));
            }
        }
        assert_eq!(
            got,
            vec![OomInstance {
                pid: 4242,
                process_name: "stress".into(),
                time_us: 8_001_100,
                container_name: "/kubepods/burstable/pod1/abc".into(),
                victim_container_name: "/kubepods/burstable/pod1".into(),
                constraint: "CONSTRAINT_MEMCG".into(),
            }]
        );
        // Older kernels: the legacy line, then "Killed process".
        let mut p = OomParser::default();
        assert!(p
            .feed(1, "sh invoked oom-killer: gfp_mask=0x24000c0")
            .is_none());
        assert!(p
            .feed(
                2,
                "Task in /docker/abc killed as a result of limit of /docker"
            )
            .is_none());
        let i = p.feed(3, "Killed process 99 (sh) total-vm:100kB").unwrap();
        assert_eq!((i.pid, i.process_name.as_str()), (99, "sh"));
        assert_eq!(i.container_name, "/docker/abc");
        assert_eq!(i.victim_container_name, "/docker");
        assert!(parse_kmsg_record("garbage").is_none());
    }
}
