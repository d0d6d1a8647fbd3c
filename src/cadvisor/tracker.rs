//! Per-monitor bookkeeping behind the HTTP endpoints, kept off the request path by one
//! thread that follows the monitor's passes:
//!
//! - the **spec cache**: container specs (limits, creation time) cost about ten file reads
//!   each, too many to read per scrape at 1000 containers; they are read when a container
//!   appears, read once more when it has settled ([`SPEC_SETTLE`]: the runtime creates a
//!   container's cgroup before it writes its limits, and a spec read in between would miss
//!   the CPU quota, and with it the `container_cpu_cfs_*` families, for a minute), then
//!   refreshed once a minute, a bounded number per pass;
//! - **events**: container creation and deletion, diffed from the registry after every pass,
//!   and OOMs from `/dev/kmsg` (a second thread), with per-container OOM counts for
//!   `container_oom_events_total`;
//! - **derived stats** (`/api/v2.0/summary`): a minute sample per container every minute;
//! - the **collector's own cost**: passes, their wall and CPU time, and how long each
//!   metrics endpoint took to render, exported as `kubelet_rs_collector_*` families.
//!
//! [`Tracker::for_monitor`] returns the one tracker of a monitor (the agent's 4194 and
//! read-only servers share it). Its threads hold only weak references and stop within half a
//! second once the last user drops the tracker.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use collectors::{Container, ContainerSpec, Monitor, PassEvent};
use parking_lot::{Mutex, RwLock};

use super::derived::{minute_percentiles, DerivedStats, SecondSample, Summary};
use super::events::{Event, EventData, EventStore, EventType, OomKillEventData, OomParser};
use super::expo::{Family, Kind, LabelSet};

/// Specs older than this are re-read.
pub const SPEC_MAX_AGE: Duration = Duration::from_secs(60);
/// A container's first spec is read again this long after it (cAdvisor re-reads specs
/// older than 5 s whenever it is asked for them).
pub const SPEC_SETTLE: Duration = Duration::from_secs(5);
/// Stale specs re-read per pass, at most.
pub const SPEC_REFRESH_PER_PASS: usize = 64;

/// Bucket bounds of `kubelet_rs_collector_pass_duration_seconds`.
const PASS_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How the tracker is set up.
#[derive(Clone, Debug, Default)]
pub struct TrackerOptions {
    /// Where to read kernel messages for OOM events (`/dev/kmsg`); `None`: no OOM events.
    pub kmsg: Option<PathBuf>,
}

struct CachedSpec {
    spec: Arc<ContainerSpec>,
    read_at: Instant,
    /// Read again after [`SPEC_SETTLE`] (or later).
    settled: bool,
}

impl CachedSpec {
    fn due(&self) -> bool {
        let age = self.read_at.elapsed();
        age >= SPEC_MAX_AGE || (!self.settled && age >= SPEC_SETTLE)
    }
}

/// Rendering cost of one metrics endpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScrapeStat {
    /// Scrapes served.
    pub count: u64,
    /// Total time spent rendering.
    pub total: Duration,
    /// The last one's time.
    pub last: Duration,
    /// The last one's size, bytes.
    pub last_bytes: usize,
}

#[derive(Default)]
struct Cost {
    passes: AtomicU64,
    cpu_ns: AtomicU64,
    wall_ns: AtomicU64,
    buckets: [AtomicU64; PASS_BUCKETS.len()],
}

#[derive(Default)]
struct Seen {
    /// Container name → pass number it was last seen in.
    names: HashMap<String, u64>,
    pass: u64,
    last_minute: u64,
}

/// The per-monitor bookkeeping. See the module documentation.
pub struct Tracker {
    monitor: Weak<Monitor>,
    specs: RwLock<HashMap<String, CachedSpec>>,
    /// The event store.
    pub events: EventStore,
    ooms: Mutex<HashMap<String, u64>>,
    summaries: Mutex<HashMap<String, Summary>>,
    scrapes: Mutex<BTreeMap<&'static str, ScrapeStat>>,
    cost: Cost,
    seen: Mutex<Seen>,
    rx: Mutex<crossbeam::channel::Receiver<PassEvent>>,
    /// Offset from kernel time (µs since boot) to the epoch, ns.
    boot_ns: u64,
}

type Registry = Vec<(Weak<Monitor>, Weak<Tracker>)>;
static TRACKERS: std::sync::Mutex<Registry> = std::sync::Mutex::new(Vec::new());

fn boot_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let mono = if rc == 0 {
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    } else {
        0
    };
    collectors::sys::now_unix_nanos().saturating_sub(mono)
}

impl Tracker {
    /// The tracker of `monitor`, started on first use with `opts` (later callers share it).
    pub fn for_monitor(monitor: &Arc<Monitor>, opts: TrackerOptions) -> Arc<Tracker> {
        let mut reg = TRACKERS.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|(m, t)| m.strong_count() > 0 && t.strong_count() > 0);
        for (m, t) in reg.iter() {
            if std::ptr::eq(m.as_ptr(), Arc::as_ptr(monitor)) {
                if let Some(t) = t.upgrade() {
                    return t;
                }
            }
        }
        let t = Arc::new(Tracker {
            monitor: Arc::downgrade(monitor),
            specs: RwLock::new(HashMap::new()),
            events: EventStore::default(),
            ooms: Mutex::new(HashMap::new()),
            summaries: Mutex::new(HashMap::new()),
            scrapes: Mutex::new(BTreeMap::new()),
            cost: Cost::default(),
            seen: Mutex::new(Seen::default()),
            rx: Mutex::new(monitor.subscribe()),
            boot_ns: boot_time_ns(),
        });
        reg.push((Arc::downgrade(monitor), Arc::downgrade(&t)));
        let weak = Arc::downgrade(&t);
        let _ = std::thread::Builder::new()
            .name("cadvisor-tracker".into())
            .spawn(move || follow_passes(weak));
        if let Some(path) = opts.kmsg {
            // Opened (and positioned at its end) before returning: messages from now on count.
            match open_kmsg(&path) {
                Ok(f) => {
                    let weak = Arc::downgrade(&t);
                    let _ = std::thread::Builder::new()
                        .name("oom-watcher".into())
                        .spawn(move || watch_kmsg(weak, path, f));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read kernel messages: no OOM events")
                }
            }
        }
        t
    }

    /// The spec of `c`: cached, or read now.
    pub fn spec(&self, c: &Container) -> Arc<ContainerSpec> {
        if let Some(s) = self.specs.read().get(c.name()) {
            return s.spec.clone();
        }
        let spec = Arc::new(c.spec());
        self.specs.write().insert(
            c.name().to_string(),
            CachedSpec {
                spec: spec.clone(),
                read_at: Instant::now(),
                settled: false,
            },
        );
        spec
    }

    /// OOM events seen for container `name` since the tracker started.
    pub fn oom_events(&self, name: &str) -> u64 {
        self.ooms.lock().get(name).copied().unwrap_or(0)
    }

    /// Derived stats of `c` (`/api/v2.0/summary`).
    pub fn derived(&self, c: &Container) -> DerivedStats {
        let latest: Vec<SecondSample> = c.recent(2).iter().map(second).collect();
        self.summaries
            .lock()
            .get(c.name())
            .cloned()
            .unwrap_or_default()
            .derived(&latest)
    }

    /// Records that `endpoint` took `took` to render `bytes`.
    pub fn record_scrape(&self, endpoint: &'static str, took: Duration, bytes: usize) {
        let mut m = self.scrapes.lock();
        let s = m.entry(endpoint).or_default();
        s.count += 1;
        s.total += took;
        s.last = took;
        s.last_bytes = bytes;
    }

    /// Handles every pass event queued so far, now (tests and the thread use this).
    pub fn catch_up(&self) {
        let rx = self.rx.lock();
        while let Ok(ev) = rx.try_recv() {
            self.on_pass(&ev);
        }
    }

    fn on_pass(&self, ev: &PassEvent) {
        let Some(m) = self.monitor.upgrade() else {
            return;
        };
        self.cost.passes.fetch_add(1, Ordering::Relaxed);
        self.cost
            .cpu_ns
            .fetch_add(ev.cpu.as_nanos() as u64, Ordering::Relaxed);
        self.cost
            .wall_ns
            .fetch_add(ev.wall.as_nanos() as u64, Ordering::Relaxed);
        let secs = ev.wall.as_secs_f64();
        for (i, b) in PASS_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.cost.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        let list = m.subcontainers("/");
        let now = collectors::sys::now_unix_nanos();
        let mut seen = self.seen.lock();
        seen.pass += 1;
        let pass = seen.pass;
        let mut created = Vec::new();
        for c in &list {
            match seen.names.get_mut(c.name()) {
                Some(p) => *p = pass,
                None => {
                    seen.names.insert(c.name().to_string(), pass);
                    created.push(c.clone());
                }
            }
        }
        let mut gone = Vec::new();
        seen.names.retain(|n, p| {
            if *p != pass {
                gone.push(n.clone());
            }
            *p == pass
        });
        let minute_due = now.saturating_sub(seen.last_minute) >= 60_000_000_000;
        if minute_due {
            seen.last_minute = now;
        }
        drop(seen);
        for c in &created {
            let spec = self.spec(c);
            let ts = if spec.creation_time != 0 {
                spec.creation_time
            } else {
                now
            };
            self.events.add(Event {
                container_name: c.name().to_string(),
                timestamp: ts,
                event_type: EventType::ContainerCreation,
                event_data: EventData::default(),
            });
        }
        if !gone.is_empty() {
            let mut specs = self.specs.write();
            let mut ooms = self.ooms.lock();
            let mut sums = self.summaries.lock();
            for n in &gone {
                specs.remove(n);
                ooms.remove(n);
                sums.remove(n);
            }
        }
        for n in gone {
            self.events.add(Event {
                container_name: n,
                timestamp: now,
                event_type: EventType::ContainerDeletion,
                event_data: EventData::default(),
            });
        }
        self.refresh_specs(&list);
        if minute_due {
            self.minute(&list, now);
        }
    }

    fn refresh_specs(&self, list: &[Arc<Container>]) {
        let stale: Vec<&Arc<Container>> = {
            let specs = self.specs.read();
            // New containers' second reads first, then the oldest specs.
            let mut v: Vec<(&Arc<Container>, (bool, Instant))> = list
                .iter()
                .filter_map(|c| {
                    let s = specs.get(c.name())?;
                    s.due().then_some((c, (s.settled, s.read_at)))
                })
                .collect();
            v.sort_by_key(|(_, k)| *k);
            v.into_iter()
                .take(SPEC_REFRESH_PER_PASS)
                .map(|(c, _)| c)
                .collect()
        };
        for c in stale {
            let spec = Arc::new(c.spec());
            self.specs.write().insert(
                c.name().to_string(),
                CachedSpec {
                    spec,
                    read_at: Instant::now(),
                    settled: true,
                },
            );
        }
    }

    fn minute(&self, list: &[Arc<Container>], now: u64) {
        let from = now.saturating_sub(60_000_000_000);
        for c in list {
            let samples: Vec<SecondSample> = c.range(from, now, -1).iter().map(second).collect();
            if samples.is_empty() {
                continue;
            }
            let spec = self.spec(c);
            let u = minute_percentiles(&samples, spec.has_cpu, spec.has_memory);
            self.summaries
                .lock()
                .entry(c.name().to_string())
                .or_default()
                .push(u, now);
        }
    }

    fn on_oom(&self, i: &super::events::OomInstance) {
        let ts = self.boot_ns + i.time_us * 1000;
        self.events.add(Event {
            container_name: i.container_name.clone(),
            timestamp: ts,
            event_type: EventType::Oom,
            event_data: EventData::default(),
        });
        self.events.add(Event {
            container_name: i.victim_container_name.clone(),
            timestamp: ts,
            event_type: EventType::OomKill,
            event_data: EventData {
                oom_kill: Some(OomKillEventData {
                    pid: i.pid,
                    process_name: i.process_name.clone(),
                    constraint: i.constraint.clone(),
                }),
            },
        });
        let known = self
            .monitor
            .upgrade()
            .is_some_and(|m| m.container(&i.container_name).is_some());
        if known {
            *self
                .ooms
                .lock()
                .entry(i.container_name.clone())
                .or_default() += 1;
        }
    }

    /// Writes the collector's own-cost families (`kubelet_rs_collector_*`,
    /// `kubelet_rs_metrics_*`).
    pub fn write_cost(&self, out: &mut Vec<u8>) {
        let Some(m) = self.monitor.upgrade() else {
            return;
        };
        let st = m.stats();
        let none = LabelSet::default();
        let gauge = |out: &mut Vec<u8>, name: &'static str, help: &str, kind: Kind, v: f64| {
            let mut f = Family::begin(out, name, help, kind);
            f.sample(&none, &[], v, None);
            f.finish();
        };
        gauge(
            out,
            "kubelet_rs_collector_containers",
            "Containers (cgroups) the collector tracks.",
            Kind::Gauge,
            st.containers as f64,
        );
        gauge(
            out,
            "kubelet_rs_collector_cpu_seconds_total",
            "Process CPU time spent during collector passes.",
            Kind::Counter,
            self.cost.cpu_ns.load(Ordering::Relaxed) as f64 / 1e9,
        );
        gauge(
            out,
            "kubelet_rs_collector_fd_kernel_memory_bytes",
            "Estimated kernel memory of the descriptors the collector keeps open.",
            Kind::Gauge,
            st.fd_kernel_bytes as f64,
        );
        gauge(
            out,
            "kubelet_rs_collector_inotify_watches",
            "Directories the collector watches with inotify.",
            Kind::Gauge,
            st.watches as f64,
        );
        gauge(
            out,
            "kubelet_rs_collector_kept_fds",
            "Descriptors the collector keeps open and re-reads with pread.",
            Kind::Gauge,
            st.kept_fds as f64,
        );
        gauge(
            out,
            "kubelet_rs_collector_last_pass_cpu_seconds",
            "Process CPU time during the last collector pass.",
            Kind::Gauge,
            st.last_pass_cpu.as_secs_f64(),
        );
        gauge(
            out,
            "kubelet_rs_collector_last_pass_duration_seconds",
            "Wall time of the last collector pass.",
            Kind::Gauge,
            st.last_pass_wall.as_secs_f64(),
        );
        {
            let mut f = Family::begin(
                out,
                "kubelet_rs_collector_pass_duration_seconds",
                "Wall time of collector passes.",
                Kind::Histogram,
            );
            let mut buf = [0u8; 32];
            for (i, b) in PASS_BUCKETS.iter().enumerate() {
                let le = fmt_le(&mut buf, *b);
                f.sample_suffixed(
                    "_bucket",
                    &none,
                    &[("le", le)],
                    self.cost.buckets[i].load(Ordering::Relaxed) as f64,
                    None,
                );
            }
            let passes = self.cost.passes.load(Ordering::Relaxed) as f64;
            f.sample_suffixed("_bucket", &none, &[("le", "+Inf")], passes, None);
            f.sample_suffixed(
                "_sum",
                &none,
                &[],
                self.cost.wall_ns.load(Ordering::Relaxed) as f64 / 1e9,
                None,
            );
            f.sample_suffixed("_count", &none, &[], passes, None);
            f.finish();
        }
        gauge(
            out,
            "kubelet_rs_collector_passes_total",
            "Collector passes run.",
            Kind::Counter,
            st.passes as f64,
        );
        gauge(
            out,
            "kubelet_rs_collector_read_errors_total",
            "Cgroup and procfs reads that failed other than by the cgroup vanishing.",
            Kind::Counter,
            st.read_errors as f64,
        );
        gauge(
            out,
            "kubelet_rs_collector_ring_memory_bytes",
            "Memory held by the per-container sample history.",
            Kind::Gauge,
            st.ring_bytes as f64,
        );
        gauge(
            out,
            "kubelet_rs_collector_vanished_total",
            "Containers found removed while being sampled.",
            Kind::Counter,
            st.vanished_total as f64,
        );
        let scrapes = self.scrapes.lock().clone();
        if !scrapes.is_empty() {
            for (name, help, pick) in [
                (
                    "kubelet_rs_metrics_last_scrape_bytes",
                    "Size of the last response of a metrics endpoint.",
                    0,
                ),
                (
                    "kubelet_rs_metrics_last_scrape_duration_seconds",
                    "Time the last response of a metrics endpoint took to render.",
                    1,
                ),
                (
                    "kubelet_rs_metrics_scrape_duration_seconds_total",
                    "Time spent rendering a metrics endpoint.",
                    2,
                ),
                (
                    "kubelet_rs_metrics_scrapes_total",
                    "Responses rendered by a metrics endpoint.",
                    3,
                ),
            ] {
                let kind = if pick >= 2 {
                    Kind::Counter
                } else {
                    Kind::Gauge
                };
                let mut f = Family::begin(out, name, help, kind);
                for (ep, s) in &scrapes {
                    let v = match pick {
                        0 => s.last_bytes as f64,
                        1 => s.last.as_secs_f64(),
                        2 => s.total.as_secs_f64(),
                        _ => s.count as f64,
                    };
                    f.sample(&none, &[("endpoint", ep)], v, None);
                }
                f.finish();
            }
        }
    }
}

fn fmt_le(buf: &mut [u8; 32], v: f64) -> &str {
    let mut tmp = Vec::with_capacity(32);
    super::expo::write_go_float(&mut tmp, v);
    let n = tmp.len().min(buf.len());
    buf[..n].copy_from_slice(&tmp[..n]);
    std::str::from_utf8(&buf[..n]).unwrap_or("0")
}

fn second(s: &collectors::ContainerStats) -> SecondSample {
    SecondSample {
        timestamp: s.timestamp,
        cpu: s.cpu.map_or(0, |c| c.usage_total),
        memory: s.memory.map_or(0, |m| m.working_set),
    }
}

fn follow_passes(weak: Weak<Tracker>) {
    loop {
        let Some(t) = weak.upgrade() else {
            return;
        };
        if t.monitor.strong_count() == 0 {
            return;
        }
        // Held while handling the event, so that `catch_up` never returns while a pass is
        // half handled.
        let rx = t.rx.lock();
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(ev) => t.on_pass(&ev),
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn open_kmsg(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    f.seek(SeekFrom::End(0))?;
    Ok(f)
}

/// Reads kernel messages from `f` (`/dev/kmsg` from its end) and turns OOM reports into
/// events. A regular file works too (tests append to one).
fn watch_kmsg(weak: Weak<Tracker>, path: PathBuf, mut f: std::fs::File) {
    use std::io::Read;
    let mut parser = OomParser::default();
    let mut buf = vec![0u8; 8192];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        if weak.strong_count() == 0 {
            return;
        }
        let ready = collectors::sys::poll_readable(f.as_raw_fd(), Duration::from_millis(500))
            .unwrap_or(false);
        if !ready {
            continue;
        }
        match f.read(&mut buf) {
            Ok(0) => std::thread::sleep(Duration::from_millis(200)),
            Ok(n) => {
                carry.extend_from_slice(&buf[..n]);
                // kmsg hands out one record per read; a file may hold many, or half of one.
                let is_dev = path.starts_with("/dev");
                let mut start = 0;
                while let Some(i) = carry[start..].iter().position(|&c| c == b'\n') {
                    let line = String::from_utf8_lossy(&carry[start..start + i]).into_owned();
                    start += i + 1;
                    if let Some((ts, msg)) = super::events::parse_kmsg_record(&line) {
                        if let Some(oom) = parser.feed(ts, msg) {
                            if let Some(t) = weak.upgrade() {
                                t.on_oom(&oom);
                            }
                        }
                    }
                }
                carry.drain(..start);
                if is_dev {
                    carry.clear();
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {} // overwritten records
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "reading kernel messages failed: no more OOM events");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collectors::model::fs_role;
    use collectors::testing::{FixtureCgroup, FixtureTree, Layout};
    use collectors::MonitorConfig;

    fn monitor(t: &FixtureTree) -> Arc<Monitor> {
        t.add_cgroup(
            "/kubepods",
            &FixtureCgroup {
                usage_ns: 1_000_000,
                ..Default::default()
            },
        );
        Monitor::new(MonitorConfig {
            cgroup_root: t.root().to_path_buf(),
            proc_root: t.proc_root().to_path_buf(),
            housekeeping_interval: Duration::from_millis(100),
            threads: 1,
            use_inotify: false,
            fs_paths: vec![(fs_role::ROOT, "/".into())],
            ..Default::default()
        })
        .unwrap()
    }

    /// Makes the cached spec of `name` look `by` older.
    fn backdate(tr: &Tracker, name: &str, by: Duration) {
        let mut specs = tr.specs.write();
        let s = specs.get_mut(name).expect("cached spec");
        s.read_at -= by;
    }

    /// Runs passes until the spec of `c` satisfies `ok` (the tracker's own thread may handle
    /// a pass before `catch_up` does).
    fn spec_becomes(
        m: &Monitor,
        tr: &Tracker,
        c: &Container,
        ok: impl Fn(&ContainerSpec) -> bool,
    ) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            m.housekeep();
            tr.catch_up();
            if ok(&tr.spec(c)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_spec_read_before_the_runtime_set_the_limits_is_read_again_once_settled() {
        let t = FixtureTree::new(Layout::V1);
        let m = monitor(&t);
        let tr = Tracker::for_monitor(&m, TrackerOptions::default());
        // runc creates the cgroup, then writes its limits: the first read sees no quota.
        t.add_cgroup("/kubepods/pod1", &FixtureCgroup::default());
        m.rescan().unwrap();
        m.housekeep();
        tr.catch_up();
        let c = m.container("/kubepods/pod1").unwrap();
        assert_eq!(tr.spec(&c).cpu_quota, None);
        t.write_file("cpu", "/kubepods/pod1", "cpu.cfs_quota_us", "10000\n");
        m.housekeep();
        tr.catch_up();
        assert_eq!(tr.spec(&c).cpu_quota, None, "not re-read before it settles");
        backdate(&tr, "/kubepods/pod1", SPEC_SETTLE);
        assert!(
            spec_becomes(&m, &tr, &c, |s| s.cpu_quota == Some(10000)),
            "the settled spec has the quota: {:?}",
            tr.spec(&c)
        );
        // From then on, once a minute.
        t.write_file("cpu", "/kubepods/pod1", "cpu.cfs_quota_us", "20000\n");
        backdate(&tr, "/kubepods/pod1", SPEC_SETTLE);
        m.housekeep();
        tr.catch_up();
        assert_eq!(tr.spec(&c).cpu_quota, Some(10000));
        backdate(&tr, "/kubepods/pod1", SPEC_MAX_AGE);
        assert!(spec_becomes(&m, &tr, &c, |s| s.cpu_quota == Some(20000)));
    }

    #[test]
    fn creation_deletion_and_oom_events() {
        let t = FixtureTree::new(Layout::V1);
        let m = monitor(&t);
        let kmsg = tempfile::NamedTempFile::new().unwrap();
        let tr = Tracker::for_monitor(
            &m,
            TrackerOptions {
                kmsg: Some(kmsg.path().to_path_buf()),
            },
        );
        assert!(Arc::ptr_eq(
            &tr,
            &Tracker::for_monitor(&m, TrackerOptions::default())
        ));
        m.housekeep();
        tr.catch_up();
        let mut r = super::super::events::EventRequest::new("/");
        r.include_subcontainers = true;
        r.max_events = -1;
        for ty in EventType::ALL {
            r.set_type(ty, true);
        }
        let names: Vec<String> = tr
            .events
            .query(&r)
            .into_iter()
            .map(|e| e.container_name)
            .collect();
        assert!(names.contains(&"/kubepods".to_string()), "{names:?}");
        t.add_cgroup("/kubepods/pod1", &FixtureCgroup::default());
        m.rescan().unwrap();
        m.housekeep();
        tr.catch_up();
        t.remove_cgroup("/kubepods/pod1");
        m.rescan().unwrap();
        m.housekeep();
        tr.catch_up();
        let got: Vec<(String, EventType)> = tr
            .events
            .query(&r)
            .into_iter()
            .filter(|e| e.container_name == "/kubepods/pod1")
            .map(|e| (e.container_name, e.event_type))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/kubepods/pod1".to_string(), EventType::ContainerCreation),
                ("/kubepods/pod1".to_string(), EventType::ContainerDeletion)
            ]
        );
        // An OOM report appended to "kmsg".
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(kmsg.path())
            .unwrap();
        writeln!(f, "4,1,100,-;sh invoked oom-killer: gfp_mask=0xcc0").unwrap();
        writeln!(f, "6,2,200,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods,task_memcg=/kubepods,task=sh,pid=7,uid=0").unwrap();
        f.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tr.oom_events("/kubepods") == 0 {
            assert!(Instant::now() < deadline, "OOM not counted");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut r = super::super::events::EventRequest::new("/kubepods");
        r.set_type(EventType::OomKill, true);
        let e = tr.events.query(&r);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].event_data.oom_kill.as_ref().unwrap().process_name,
            "sh"
        );
        let mut out = Vec::new();
        tr.record_scrape("/metrics", Duration::from_millis(3), 100);
        tr.write_cost(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("kubelet_rs_collector_passes_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_rs_collector_pass_duration_seconds_count 3\n"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_rs_metrics_scrapes_total{endpoint=\"/metrics\"} 1\n"),
            "{text}"
        );
    }
}
