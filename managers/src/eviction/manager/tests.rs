//! The eviction manager against fakes: a summary the test edits, a killer and GC that record
//! their calls, a recording event sink and a fake clock.

use super::*;
use crate::clock::FakeClock;
use crate::events::testing::RecordingSink;
use crate::eviction::api::ThresholdValue;
use crate::eviction::ranking::ContainerRequest;
use crate::eviction::signals::{FsStats, MemoryStats, PidStats};

const MI: i64 = 1 << 20;

#[derive(Default)]
struct FakeSource {
    pods: Mutex<Vec<PodCandidate>>,
    summary: Mutex<NodeSummary>,
    disk: Mutex<HashMap<String, DiskUsage>>,
    fail: Mutex<bool>,
    calls: Mutex<Vec<bool>>,
    volumes: Mutex<Vec<VolumeUsage>>,
    volume_calls: Mutex<usize>,
}

impl FakeSource {
    /// Sets node memory: `available` out of 1 GiB, stamped `time`.
    fn memory(&self, available: i64, time: u64) {
        self.summary.lock().memory = Some(MemoryStats {
            capacity: 1024 * MI,
            working_set: 1024 * MI - available,
            usage: 1024 * MI - available + 10 * MI,
            time,
            cgroup_dir: None,
        });
    }
    fn pod_usage(&self, uid: &str, ws: i64, containers: &[(&str, i64)]) {
        self.summary.lock().pods.insert(
            uid.into(),
            PodUsage {
                memory_working_set: Some(ws),
                containers: containers
                    .iter()
                    .map(|(n, w)| (n.to_string(), *w))
                    .collect(),
                processes: Some(1),
                disk: None,
            },
        );
    }
}

impl SummarySource for FakeSource {
    fn active_pods(&self) -> Vec<PodCandidate> {
        self.pods.lock().clone()
    }
    fn summary(&self, _pods: &[PodCandidate], fresh: bool) -> Result<NodeSummary, StatsError> {
        self.calls.lock().push(fresh);
        if *self.fail.lock() {
            return Err(StatsError::NotSampled {
                what: "node memory",
            });
        }
        Ok(self.summary.lock().clone())
    }
    fn disk_usage(&self, _pods: &[PodCandidate]) -> HashMap<String, DiskUsage> {
        self.disk.lock().clone()
    }
    fn empty_dir_usage(&self, _pods: &[PodCandidate]) -> Vec<VolumeUsage> {
        *self.volume_calls.lock() += 1;
        self.volumes.lock().clone()
    }
}

#[derive(Default)]
struct FakeKiller {
    killed: Mutex<Vec<(String, Cause, Grace, String)>>,
    refuse: Mutex<Vec<String>>,
    source: Mutex<Option<Arc<FakeSource>>>,
}

impl KillPod for FakeKiller {
    fn kill_pod(&self, req: &KillRequest<'_>) -> bool {
        if self.refuse.lock().contains(&req.pod.uid) {
            return false;
        }
        self.killed.lock().push((
            req.pod.uid.clone(),
            req.cause,
            req.grace,
            req.message.to_string(),
        ));
        // The pod is gone: it leaves the active pods.
        if let Some(s) = self.source.lock().as_ref() {
            s.pods.lock().retain(|p| p.uid != req.pod.uid);
            s.summary.lock().pods.remove(&req.pod.uid);
        }
        true
    }
}

/// Image and container GC that record calls and may free space on the fake image fs.
#[derive(Default)]
struct FakeGc {
    calls: Mutex<Vec<&'static str>>,
    frees: Mutex<i64>,
    source: Mutex<Option<Arc<FakeSource>>>,
}

impl DeleteUnusedImages for FakeGc {
    fn delete_unused_images(&self) -> Result<u64, ImageGcError> {
        self.calls.lock().push("images");
        let freed = *self.frees.lock();
        if let Some(s) = self.source.lock().as_ref() {
            let mut sum = s.summary.lock();
            let sum = &mut *sum;
            for fs in [sum.imagefs.as_mut(), sum.nodefs.as_mut()]
                .into_iter()
                .flatten()
            {
                fs.available += freed;
                fs.time += 1;
            }
        }
        Ok(freed as u64)
    }
}

impl DeleteUnusedContainers for FakeGc {
    fn delete_all_unused_containers(&self) -> Result<(), ContainerGcError> {
        self.calls.lock().push("containers");
        Ok(())
    }
}

struct Harness {
    clock: Arc<FakeClock>,
    source: Arc<FakeSource>,
    killer: Arc<FakeKiller>,
    gc: Arc<FakeGc>,
    sink: Arc<RecordingSink>,
    manager: Arc<EvictionManager>,
}

fn harness(thresholds: Vec<Threshold>, transition: Duration) -> Harness {
    let clock = FakeClock::new();
    let source = Arc::new(FakeSource::default());
    let killer = Arc::new(FakeKiller::default());
    *killer.source.lock() = Some(source.clone());
    let gc = Arc::new(FakeGc::default());
    *gc.source.lock() = Some(source.clone());
    let sink = Arc::new(RecordingSink::default());
    let manager = EvictionManager::new(
        "node-1",
        Config {
            thresholds,
            pressure_transition_period: transition,
            max_pod_grace_period: 30,
            local_storage_period: Some(Config::LOCAL_STORAGE_PERIOD),
        },
        Deps {
            source: source.clone(),
            killer: killer.clone(),
            images: gc.clone(),
            containers: gc.clone(),
            events: sink.clone(),
            clock: clock.clone(),
        },
    );
    Harness {
        clock,
        source,
        killer,
        gc,
        sink,
        manager,
    }
}

fn pod(uid: &str, request: i64, container: &str, request_text: &str) -> PodCandidate {
    PodCandidate {
        uid: uid.into(),
        namespace: "default".into(),
        name: format!("{uid}-node-1"),
        priority: 0,
        critical: false,
        memory_request: request,
        ephemeral_storage_request: 0,
        containers: vec![ContainerRequest {
            name: container.into(),
            memory_request: request,
            memory_request_text: request_text.into(),
        }],
        cgroup: format!("/kubepods/pod{uid}"),
    }
}

fn memory_hard(value: i64) -> Threshold {
    Threshold::hard(Signal::MemoryAvailable, ThresholdValue::bytes(value))
}

fn two_pods(h: &Harness) {
    *h.source.pods.lock() = vec![
        pod("guaranteed", 64 * MI, "app", "64Mi"),
        pod("hog", 0, "hog", ""),
    ];
    h.source
        .pod_usage("guaranteed", 40 * MI, &[("app", 40 * MI)]);
    h.source.pod_usage("hog", 600 * MI, &[("hog", 600 * MI)]);
}

#[test]
fn a_hard_memory_threshold_evicts_the_best_effort_hog_at_once() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(60));
    two_pods(&h);
    h.source.memory(500 * MI, 1);
    let out = h.manager.synchronize(false).unwrap();
    assert!(out.evicted.is_none());
    assert!(out.conditions.is_empty());

    h.source.memory(200 * MI, 2);
    let out = h.manager.synchronize(true).unwrap();
    let (evicted, signal) = out.evicted.unwrap();
    assert_eq!(evicted.uid, "hog");
    assert_eq!(signal, Signal::MemoryAvailable);
    assert_eq!(out.conditions, vec![ConditionType::MemoryPressure]);
    let killed = h.killer.killed.lock().clone();
    assert_eq!(killed.len(), 1);
    assert_eq!(killed[0].2, Grace::Immediate);
    assert_eq!(
        killed[0].3,
        "The node was low on resource: memory. Threshold quantity: 300Mi, available: 200Mi. \
         Container hog was using 600Mi, request is 0, has larger consumption of memory. "
    );
    assert_eq!(
        h.sink.find("EvictionThresholdMet").unwrap().3,
        "Attempting to reclaim memory"
    );
    let ev = h.sink.find("Evicted").unwrap();
    assert_eq!(ev.0, "hog-node-1");
    assert_eq!(ev.1, EventType::Warning);
    assert_eq!(ev.3, killed[0].3);
    // Memory GC is never attempted.
    assert!(h.gc.calls.lock().is_empty());
}

#[test]
fn one_pod_per_pass_and_never_twice_on_the_same_figures() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(60));
    two_pods(&h);
    h.source.pods.lock().push(pod("hog2", 0, "hog", ""));
    h.source.pod_usage("hog2", 100 * MI, &[("hog", 100 * MI)]);
    h.source.memory(100 * MI, 5);
    let out = h.manager.synchronize(true).unwrap();
    assert_eq!(out.evicted.unwrap().0.uid, "hog");
    // Same observation time: the figures predate the eviction, nothing more happens.
    let out = h.manager.synchronize(false).unwrap();
    assert!(out.evicted.is_none());
    assert_eq!(out.conditions, vec![ConditionType::MemoryPressure]);
    // New figures, still low: the next pod goes (the guaranteed one stays last).
    h.source.memory(250 * MI, 6);
    let out = h.manager.synchronize(true).unwrap();
    assert_eq!(out.evicted.unwrap().0.uid, "hog2");
}

#[test]
fn a_memory_request_shows_up_in_the_message_of_a_pod_above_it() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(60));
    *h.source.pods.lock() = vec![pod("burst", 64 * MI, "app", "64Mi")];
    h.source
        .pod_usage("burst", 100 * MI, &[("app", 100 * MI), ("POD", MI)]);
    h.source.memory(100 * MI, 1);
    h.manager.synchronize(true).unwrap();
    assert_eq!(
        h.killer.killed.lock()[0].3,
        "The node was low on resource: memory. Threshold quantity: 300Mi, available: 100Mi. \
         Container app was using 100Mi, request is 64Mi, has larger consumption of memory. "
    );
}

#[test]
fn soft_thresholds_wait_for_their_grace_period_and_cap_the_pod_grace() {
    let soft = Threshold::soft(
        Signal::MemoryAvailable,
        ThresholdValue::bytes(400 * MI),
        Duration::from_secs(90),
    );
    let h = harness(vec![soft], Duration::from_secs(60));
    two_pods(&h);
    h.source.memory(300 * MI, 1);
    let out = h.manager.synchronize(false).unwrap();
    assert!(out.evicted.is_none());
    // The condition is raised as soon as the threshold is met, grace period or not.
    assert_eq!(out.conditions, vec![ConditionType::MemoryPressure]);
    h.clock.advance(Duration::from_secs(89));
    h.source.memory(300 * MI, 2);
    assert!(h.manager.synchronize(false).unwrap().evicted.is_none());
    h.clock.advance(Duration::from_secs(1));
    h.source.memory(300 * MI, 3);
    let out = h.manager.synchronize(false).unwrap();
    assert_eq!(out.evicted.unwrap().0.uid, "hog");
    assert_eq!(h.killer.killed.lock()[0].2, Grace::AtMost(30));
}

#[test]
fn a_soft_threshold_that_clears_restarts_its_grace_period() {
    let soft = Threshold::soft(
        Signal::MemoryAvailable,
        ThresholdValue::bytes(400 * MI),
        Duration::from_secs(60),
    );
    let h = harness(vec![soft], Duration::from_secs(10));
    two_pods(&h);
    h.source.memory(300 * MI, 1);
    h.manager.synchronize(false).unwrap();
    h.clock.advance(Duration::from_secs(50));
    h.source.memory(500 * MI, 2);
    h.manager.synchronize(false).unwrap();
    h.clock.advance(Duration::from_secs(20));
    h.source.memory(300 * MI, 3);
    assert!(h.manager.synchronize(false).unwrap().evicted.is_none());
    h.clock.advance(Duration::from_secs(59));
    h.source.memory(300 * MI, 4);
    assert!(h.manager.synchronize(false).unwrap().evicted.is_none());
    h.clock.advance(Duration::from_secs(1));
    h.source.memory(300 * MI, 5);
    assert!(h.manager.synchronize(false).unwrap().evicted.is_some());
}

#[test]
fn pressure_stays_for_the_transition_period_after_recovery() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(30));
    two_pods(&h);
    h.source.memory(100 * MI, 1);
    h.manager.synchronize(true).unwrap();
    assert!(h.manager.is_under_memory_pressure());
    h.clock.advance(Duration::from_secs(5));
    h.source.memory(800 * MI, 2);
    let out = h.manager.synchronize(false).unwrap();
    assert!(out.evicted.is_none());
    assert_eq!(out.conditions, vec![ConditionType::MemoryPressure]);
    h.clock.advance(Duration::from_secs(24));
    h.source.memory(800 * MI, 3);
    assert_eq!(
        h.manager.synchronize(false).unwrap().conditions,
        vec![ConditionType::MemoryPressure]
    );
    h.clock.advance(Duration::from_secs(1));
    h.source.memory(800 * MI, 4);
    assert!(h.manager.synchronize(false).unwrap().conditions.is_empty());
    assert!(!h.manager.is_under_memory_pressure());
}

#[test]
fn minimum_reclaim_keeps_evicting_past_the_threshold() {
    let t = memory_hard(300 * MI).with_min_reclaim(ThresholdValue::bytes(200 * MI));
    let h = harness(vec![t], Duration::from_secs(30));
    two_pods(&h);
    h.source.pods.lock().push(pod("hog2", 0, "hog", ""));
    h.source.pod_usage("hog2", 100 * MI, &[("hog", 100 * MI)]);
    h.source.memory(100 * MI, 1);
    assert_eq!(
        h.manager.synchronize(true).unwrap().evicted.unwrap().0.uid,
        "hog"
    );
    // Above the threshold, below threshold + reclaim: still reclaiming.
    h.source.memory(450 * MI, 2);
    assert_eq!(
        h.manager.synchronize(true).unwrap().evicted.unwrap().0.uid,
        "hog2"
    );
    // Past threshold + reclaim: done.
    h.source.memory(600 * MI, 3);
    let out = h.manager.synchronize(true).unwrap();
    assert!(out.evicted.is_none());
    assert!(out.thresholds_met.is_empty());
}

fn fs(device: u64, available: i64, time: u64) -> FsStats {
    FsStats {
        device,
        capacity: 100_000 * MI,
        available,
        inodes: 1000,
        inodes_free: 900,
        time,
    }
}

#[test]
fn disk_pressure_reclaims_containers_and_images_before_evicting() {
    let t = Threshold::hard(Signal::ImageFsAvailable, ThresholdValue::Percentage(0.15));
    let h = harness(vec![t], Duration::from_secs(30));
    two_pods(&h);
    {
        let mut s = h.source.summary.lock();
        s.nodefs = Some(fs(1, 10_000 * MI, 1));
        s.imagefs = Some(fs(1, 10_000 * MI, 1));
    }
    // GC frees enough: no eviction.
    *h.gc.frees.lock() = 6_000 * MI;
    let out = h.manager.synchronize(false).unwrap();
    assert!(out.evicted.is_none());
    assert_eq!(*h.gc.calls.lock(), vec!["containers", "images"]);
    assert_eq!(out.conditions, vec![ConditionType::DiskPressure]);
    assert_eq!(
        h.sink.find("EvictionThresholdMet").unwrap().3,
        "Attempting to reclaim ephemeral-storage"
    );
    // GC frees nothing: the pod using the most disk goes.
    *h.gc.frees.lock() = 0;
    {
        let mut s = h.source.summary.lock();
        s.imagefs = Some(fs(1, 10_000 * MI, 10));
        s.nodefs = Some(fs(1, 10_000 * MI, 10));
    }
    h.source.disk.lock().extend([
        (
            "guaranteed".to_string(),
            DiskUsage {
                bytes: 900 * MI,
                inodes: 10,
            },
        ),
        (
            "hog".to_string(),
            DiskUsage {
                bytes: 10 * MI,
                inodes: 10,
            },
        ),
    ]);
    let out = h.manager.synchronize(false).unwrap();
    assert_eq!(out.evicted.unwrap().0.uid, "guaranteed");
    let msg = h.killer.killed.lock()[0].3.clone();
    assert_eq!(
        msg,
        "The node was low on resource: ephemeral-storage. Threshold quantity: 15000Mi, available: 10000Mi. "
    );
}

#[test]
fn nodefs_pressure_with_a_dedicated_image_fs_skips_image_gc() {
    let t = Threshold::hard(Signal::NodeFsAvailable, ThresholdValue::Percentage(0.10));
    let h = harness(vec![t], Duration::from_secs(30));
    two_pods(&h);
    {
        let mut s = h.source.summary.lock();
        s.nodefs = Some(fs(1, 1_000 * MI, 1));
        s.imagefs = Some(fs(2, 90_000 * MI, 1));
    }
    let out = h.manager.synchronize(false).unwrap();
    assert!(out.evicted.is_some());
    assert!(h.gc.calls.lock().is_empty());
    // containerfs follows the dedicated image filesystem.
    assert!(h
        .manager
        .thresholds()
        .iter()
        .all(|t| t.signal != Signal::ContainerFsAvailable
            || t.value == ThresholdValue::Percentage(0.10)));
}

#[test]
fn pid_pressure_evicts_the_pod_with_most_processes() {
    let t = Threshold::hard(
        Signal::PidAvailable,
        ThresholdValue::Quantity {
            value: 1000,
            format: crate::quantity::Format::DecimalSI,
        },
    );
    let h = harness(vec![t], Duration::from_secs(30));
    two_pods(&h);
    h.source
        .summary
        .lock()
        .pods
        .get_mut("guaranteed")
        .unwrap()
        .processes = Some(500);
    h.source.summary.lock().pids = Some(PidStats {
        max: 32768,
        running: 32000,
        time: 1,
    });
    let out = h.manager.synchronize(false).unwrap();
    assert_eq!(out.conditions, vec![ConditionType::PIDPressure]);
    assert_eq!(out.evicted.unwrap().0.uid, "guaranteed");
    assert_eq!(
        h.killer.killed.lock()[0].3,
        "The node was low on resource: pids. Threshold quantity: 1k, available: 768. "
    );
}

#[test]
fn critical_pods_and_refusals_fall_through_to_the_next_pod() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(30));
    two_pods(&h);
    h.source.pods.lock()[1].critical = true;
    h.source.memory(100 * MI, 1);
    let out = h.manager.synchronize(true).unwrap();
    assert_eq!(out.evicted.unwrap().0.uid, "guaranteed");
    // Nobody can be evicted: the pass ends without a victim, and says so by returning none.
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(30));
    two_pods(&h);
    h.killer
        .refuse
        .lock()
        .extend(["hog".to_string(), "guaranteed".to_string()]);
    h.source.memory(100 * MI, 1);
    assert!(h.manager.synchronize(true).unwrap().evicted.is_none());
}

#[test]
fn unreadable_stats_are_an_error_not_a_panic() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(30));
    *h.source.fail.lock() = true;
    let err = h.manager.synchronize(true).unwrap_err();
    assert_eq!(err.to_string(), "no sample yet for node memory");
    // No thresholds: nothing is even read.
    let h = harness(vec![], Duration::from_secs(30));
    h.manager.synchronize(true).unwrap();
    assert!(h.source.calls.lock().is_empty());
}

#[test]
fn admission_under_pressure() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(30));
    two_pods(&h);
    let be = AdmitRequest {
        best_effort: true,
        ..Default::default()
    };
    assert!(h.manager.admit(&be).is_ok());
    h.source.memory(100 * MI, 1);
    h.manager.synchronize(true).unwrap();
    let r = h.manager.admit(&be).unwrap_err();
    assert_eq!(r.reason, "Evicted");
    assert_eq!(r.message, "The node had condition: [MemoryPressure]. ");
    assert!(h
        .manager
        .admit(&AdmitRequest {
            best_effort: false,
            ..Default::default()
        })
        .is_ok());
    assert!(h
        .manager
        .admit(&AdmitRequest {
            best_effort: true,
            tolerates_memory_pressure: true,
            ..Default::default()
        })
        .is_ok());
    assert!(h
        .manager
        .admit(&AdmitRequest {
            best_effort: true,
            critical: true,
            ..Default::default()
        })
        .is_ok());
}

fn empty_dir(uid: &str, used: i64, limit: i64, limit_text: &str) -> VolumeUsage {
    VolumeUsage {
        uid: uid.into(),
        volume: "data".into(),
        used,
        limit,
        limit_text: limit_text.into(),
    }
}

#[test]
fn an_empty_dir_over_its_size_limit_evicts_its_pod_at_once_once_per_period() {
    // No thresholds at all: local-storage isolation still runs.
    let h = harness(vec![], Duration::from_secs(60));
    *h.source.pods.lock() = vec![pod("small", 0, "app", ""), pod("big", 0, "app", "")];
    *h.source.volumes.lock() = vec![
        empty_dir("small", MI / 2, MI, "1Mi"),
        empty_dir("big", 4 * MI, MI, "1Mi"),
    ];
    let out = h.manager.synchronize(false).unwrap();
    assert_eq!(
        out.over_limit
            .iter()
            .map(|p| p.uid.as_str())
            .collect::<Vec<_>>(),
        ["big"]
    );
    let message = "Usage of EmptyDir volume \"data\" exceeds the limit \"1Mi\". ";
    assert_eq!(
        h.killer.killed.lock().clone(),
        vec![(
            "big".to_string(),
            Cause::EmptyDirLimit,
            Grace::Immediate,
            message.to_string()
        )]
    );
    assert_eq!(Cause::EmptyDirLimit.as_str(), "emptydirfs.limit");
    let ev = h.sink.find("Evicted").unwrap();
    assert_eq!((ev.0.as_str(), ev.3.as_str()), ("big-node-1", message));

    // The small one grows past its limit: nothing is measured before the period is over.
    h.source.volumes.lock()[0].used = 2 * MI;
    h.clock
        .advance(Config::LOCAL_STORAGE_PERIOD - Duration::from_secs(1));
    assert!(h.manager.synchronize(false).unwrap().over_limit.is_empty());
    assert_eq!(*h.source.volume_calls.lock(), 1);
    h.clock.advance(Duration::from_secs(1));
    let out = h.manager.synchronize(false).unwrap();
    assert_eq!(out.over_limit[0].uid, "small");
    assert_eq!(*h.source.volume_calls.lock(), 2);
    assert_eq!(h.killer.killed.lock().len(), 2);
}

#[test]
fn a_local_storage_eviction_ends_the_pass_and_spares_critical_pods() {
    let h = harness(vec![memory_hard(300 * MI)], Duration::from_secs(60));
    two_pods(&h);
    let mut critical = pod("critical", 0, "app", "");
    critical.critical = true;
    h.source.pods.lock().push(critical);
    *h.source.volumes.lock() = vec![
        empty_dir("critical", 8 * MI, MI, "1Mi"),
        empty_dir("guaranteed", 3 * MI, 2 * MI, "2Mi"),
    ];
    // Memory is short too, but the emptyDir eviction comes first and ends the pass.
    h.source.memory(100 * MI, 1);
    let out = h.manager.synchronize(true).unwrap();
    assert_eq!(out.conditions, vec![ConditionType::MemoryPressure]);
    assert!(out.evicted.is_none());
    assert_eq!(
        out.over_limit
            .iter()
            .map(|p| p.uid.as_str())
            .collect::<Vec<_>>(),
        ["guaranteed"]
    );
    let killed = h.killer.killed.lock().clone();
    assert_eq!(killed.len(), 1);
    assert_eq!(
        killed[0].3,
        "Usage of EmptyDir volume \"data\" exceeds the limit \"2Mi\". "
    );
    // The next pass handles the pressure (local storage is not due again yet).
    h.source.memory(100 * MI, 2);
    let out = h.manager.synchronize(true).unwrap();
    assert_eq!(out.evicted.unwrap().0.uid, "hog");
    assert_eq!(
        h.killer.killed.lock()[1].1,
        Cause::Pressure(Signal::MemoryAvailable)
    );
}
