//! Prober manager and worker behaviour on tokio's paused clock, with a scripted runner: results
//! follow the thresholds, startup gates liveness and readiness, initial delays hold probes back,
//! a failed liveness probe holds until the container is replaced, and verdicts reach the pod
//! worker's inputs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use proto::cri;
use serde_json::json;

use super::*;
use crate::kuberuntime::PodRuntimeStatus;

/// Answers each probe type from a script indexed by how often that type ran.
struct Script {
    calls: Mutex<Vec<ProbeType>>,
    answer: Box<dyn Fn(ProbeType, usize) -> ProbeResult + Send + Sync>,
}

impl Script {
    fn count(&self, t: ProbeType) -> usize {
        self.calls.lock().iter().filter(|&&c| c == t).count()
    }
}

impl ProbeRunner for Script {
    fn run<'a>(&'a self, req: &'a ProbeRequest<'a>) -> BoxFuture<'a, ProbeOutcome> {
        let n = {
            let mut c = self.calls.lock();
            c.push(req.ptype);
            c.iter().filter(|&&t| t == req.ptype).count() - 1
        };
        let result = (self.answer)(req.ptype, n);
        Box::pin(async move {
            ProbeOutcome {
                result,
                output: format!("scripted {n}"),
            }
        })
    }
}

struct Fixture {
    mgr: ProberManager,
    script: Arc<Script>,
    changes: Arc<Mutex<Vec<String>>>,
    pod: Arc<Pod>,
}

fn fixture(
    container: serde_json::Value,
    answer: impl Fn(ProbeType, usize) -> ProbeResult + Send + Sync + 'static,
) -> Fixture {
    let script = Arc::new(Script {
        calls: Mutex::new(Vec::new()),
        answer: Box::new(answer),
    });
    let changes = Arc::new(Mutex::new(Vec::new()));
    let c2 = changes.clone();
    let mgr = ProberManager::on_current_runtime(
        script.clone(),
        Events::default(),
        Arc::new(move |uid: &str| c2.lock().push(uid.to_string())),
    );
    let pod: Arc<Pod> = Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [container]}
        }))
        .unwrap(),
    );
    mgr.add_pod(&pod);
    Fixture {
        mgr,
        script,
        changes,
        pod,
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn running(id: &str) -> PodRuntimeStatus {
    PodRuntimeStatus {
        uid: "u1".into(),
        sandboxes: vec![cri::PodSandboxStatus {
            id: "sb".into(),
            state: cri::PodSandboxState::SandboxReady as i32,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: "10.0.0.9".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        containers: vec![cri::ContainerStatus {
            id: id.into(),
            metadata: Some(cri::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            state: cri::ContainerState::ContainerRunning as i32,
            started_at: now_nanos(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Lets spawned workers run, then moves the paused clock on by `secs`, one second at a time.
async fn advance(secs: u64) {
    for _ in 0..secs {
        settle().await;
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    settle().await;
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn probe(extra: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_its_thresholds() {
    // Failure, Failure, then success forever; two successes needed.
    let f = fixture(
        json!({"name": "c", "image": "i", "readinessProbe": probe(json!({"successThreshold": 2, "failureThreshold": 1}))}),
        |_, n| {
            if n < 2 {
                ProbeResult::Failure
            } else {
                ProbeResult::Success
            }
        },
    );
    assert_eq!(f.mgr.worker_count(), 1);
    let rt = running("c1");
    f.mgr.update_pod(&f.pod, &rt, "10.0.0.9");
    // Probed at once (failure), then every second.
    settle().await;
    assert_eq!(f.script.count(ProbeType::Readiness), 1);
    let (_, ready) = f.mgr.verdicts(&f.pod, &rt);
    assert!(ready.is_empty(), "readiness starts as Failure");
    advance(2).await;
    assert_eq!(f.script.count(ProbeType::Readiness), 3);
    let (_, ready) = f.mgr.verdicts(&f.pod, &rt);
    assert!(
        ready.is_empty(),
        "one success is not enough with successThreshold 2"
    );
    advance(1).await;
    assert_eq!(f.script.count(ProbeType::Readiness), 4);
    let (_, ready) = f.mgr.verdicts(&f.pod, &rt);
    assert!(ready.contains("c1"));
    assert!(f.changes.lock().iter().all(|u| u == "u1"));
    assert!(
        !f.changes.lock().is_empty(),
        "turning ready wakes the pod worker"
    );
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_needs_failure_threshold_then_holds_until_replaced() {
    let f = fixture(
        json!({"name": "c", "image": "i", "livenessProbe": probe(json!({"failureThreshold": 3}))}),
        |_, n| {
            if n < 2 {
                ProbeResult::Success
            } else {
                ProbeResult::Failure
            }
        },
    );
    let rt = running("c1");
    f.mgr.update_pod(&f.pod, &rt, "10.0.0.9");
    // Probes 0,1 succeed; 2,3 fail: not yet.
    advance(3).await;
    assert!(f.mgr.verdicts(&f.pod, &rt).0.liveness_failed.is_empty());
    // Probe 4 is the third failure in a row.
    advance(1).await;
    let (v, _) = f.mgr.verdicts(&f.pod, &rt);
    assert!(v.liveness_failed.contains("c1"), "{v:?}");
    let probes = f.script.count(ProbeType::Liveness);
    advance(5).await;
    assert_eq!(
        f.script.count(ProbeType::Liveness),
        probes,
        "on hold after a liveness failure"
    );
    // The restarted container is probed afresh and starts healthy.
    let rt2 = running("c2");
    f.mgr.update_pod(&f.pod, &rt2, "10.0.0.9");
    settle().await;
    assert!(f.script.count(ProbeType::Liveness) > probes);
    let (v, _) = f.mgr.verdicts(&f.pod, &rt2);
    assert!(v.liveness_failed.is_empty(), "{v:?}");
    assert_eq!(f.mgr.results().get(ProbeType::Liveness, "c1"), None);
}

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness() {
    let f = fixture(
        json!({"name": "c", "image": "i",
               "startupProbe": probe(json!({"failureThreshold": 10})),
               "livenessProbe": probe(json!({})),
               "readinessProbe": probe(json!({}))}),
        |t, n| match t {
            ProbeType::Startup if n < 3 => ProbeResult::Failure,
            _ => ProbeResult::Success,
        },
    );
    assert_eq!(f.mgr.worker_count(), 3);
    let rt = running("c1");
    f.mgr.update_pod(&f.pod, &rt, "10.0.0.9");
    advance(2).await;
    let (v, ready) = f.mgr.verdicts(&f.pod, &rt);
    assert!(v.not_started.contains("c1"));
    assert!(v.startup_failed.is_empty(), "below the failure threshold");
    assert!(ready.is_empty());
    assert_eq!(f.script.count(ProbeType::Liveness), 0);
    assert_eq!(f.script.count(ProbeType::Readiness), 0);
    advance(2).await;
    // Startup succeeded: the pod worker syncs and tells the workers.
    let (v, _) = f.mgr.verdicts(&f.pod, &rt);
    assert!(v.not_started.is_empty(), "{v:?}");
    f.mgr.update_pod(&f.pod, &rt, "10.0.0.9");
    advance(1).await;
    let startups = f.script.count(ProbeType::Startup);
    assert!(f.script.count(ProbeType::Liveness) >= 1);
    let (_, ready) = f.mgr.verdicts(&f.pod, &rt);
    assert!(ready.contains("c1"));
    advance(3).await;
    assert_eq!(
        f.script.count(ProbeType::Startup),
        startups,
        "startup stops once passed"
    );
}

#[tokio::test(start_paused = true)]
async fn initial_delay_holds_probes_back() {
    let f = fixture(
        json!({"name": "c", "image": "i", "readinessProbe": probe(json!({"initialDelaySeconds": 5}))}),
        |_, _| ProbeResult::Success,
    );
    let rt = running("c1");
    f.mgr.update_pod(&f.pod, &rt, "10.0.0.9");
    advance(4).await;
    assert_eq!(f.script.count(ProbeType::Readiness), 0);
    advance(2).await;
    assert!(f.script.count(ProbeType::Readiness) >= 1);
    assert!(f.mgr.verdicts(&f.pod, &rt).1.contains("c1"));
}

#[tokio::test(start_paused = true)]
async fn errors_change_nothing_and_removal_stops_workers() {
    let f = fixture(
        json!({"name": "c", "image": "i", "livenessProbe": probe(json!({"failureThreshold": 1}))}),
        |_, _| ProbeResult::Unknown,
    );
    let rt = running("c1");
    f.mgr.update_pod(&f.pod, &rt, "10.0.0.9");
    advance(3).await;
    assert!(f.script.count(ProbeType::Liveness) >= 3);
    assert!(f.mgr.verdicts(&f.pod, &rt).0.liveness_failed.is_empty());
    assert!(f.mgr.executions() >= 3, "every execution is counted");
    f.mgr.remove_pod("u1");
    assert_eq!(f.mgr.worker_count(), 0);
    assert!(f.mgr.results().is_empty());
    let n = f.script.count(ProbeType::Liveness);
    advance(3).await;
    assert_eq!(f.script.count(ProbeType::Liveness), n);
}

#[tokio::test(start_paused = true)]
async fn readiness_of_a_deleted_pod_is_failure() {
    let f = fixture(
        json!({"name": "c", "image": "i", "readinessProbe": probe(json!({}))}),
        |_, _| ProbeResult::Success,
    );
    let rt = running("c1");
    f.mgr.update_pod(&f.pod, &rt, "10.0.0.9");
    advance(1).await;
    assert!(f.mgr.verdicts(&f.pod, &rt).1.contains("c1"));
    let mut deleted = (*f.pod).clone();
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    f.mgr.update_pod(&deleted, &rt, "10.0.0.9");
    advance(1).await;
    assert!(f.mgr.verdicts(&deleted, &rt).1.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_observer_sees_executions_and_forgets_stopped_workers() {
    #[derive(Default)]
    struct Rec(Mutex<Vec<String>>);
    impl ProbeObserver for Rec {
        fn observe(&self, o: &ProbeObservation<'_>) {
            self.0.lock().push(format!(
                "{} {} {}/{} {} {}",
                o.probe_type.as_str(),
                o.result.metric_label(),
                o.namespace,
                o.pod,
                o.pod_uid,
                o.container
            ));
        }
        fn forget(&self, t: ProbeType, pod: &str, ns: &str, uid: &str, c: &str) {
            self.0
                .lock()
                .push(format!("forget {} {ns}/{pod} {uid} {c}", t.as_str()));
        }
    }
    let f = fixture(
        json!({"name": "c", "image": "i", "livenessProbe": probe(json!({}))}),
        |_, _| ProbeResult::Failure,
    );
    let rec = Arc::new(Rec::default());
    f.mgr.set_observer(rec.clone());
    f.mgr.update_pod(&f.pod, &running("c1"), "10.0.0.9");
    settle().await;
    f.mgr.remove_pod("u1");
    assert_eq!(
        *rec.0.lock(),
        vec![
            "Liveness failed ns/p u1 c".to_string(),
            "forget Liveness ns/p u1 c".to_string()
        ]
    );
}

/// Records the name of the thread each probe runs on.
struct ThreadNames(Mutex<Vec<String>>);

impl ProbeRunner for ThreadNames {
    fn run<'a>(&'a self, _req: &'a ProbeRequest<'a>) -> BoxFuture<'a, ProbeOutcome> {
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.0.lock().push(name);
        Box::pin(async {
            ProbeOutcome {
                result: ProbeResult::Success,
                output: String::new(),
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelets_prober_runs_probes_on_its_own_thread() {
    let names = Arc::new(ThreadNames(Mutex::new(Vec::new())));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mgr = ProberManager::new(
        names.clone(),
        Events::default(),
        Arc::new(move |uid: &str| {
            let _ = tx.send(uid.to_string());
        }),
    );
    let before = mgr.thread_cpu_time().expect("the prober has a thread");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"containers": [{"name": "c", "image": "i",
            "readinessProbe": probe(json!({}))}]}
    }))
    .unwrap();
    mgr.add_pod(&pod);
    mgr.update_pod(&pod, &running("c1"), "10.0.0.9");
    // The first success turns the container ready, which wakes the pod's worker.
    let woken = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert_eq!(woken.ok().flatten().as_deref(), Some("u1"));
    assert_eq!(names.0.lock().first().map(String::as_str), Some("prober"));
    assert!(
        mgr.thread_cpu_time().unwrap() > before,
        "the prober thread ran"
    );
    drop(mgr);
    // Dropping the manager stops the thread: no more probes.
    let n = names.0.lock().len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(names.0.lock().len(), n);
}

/// Panics on its first `n` probes, then answers Success.
struct PanicFirst {
    n: std::sync::atomic::AtomicU32,
    runs: std::sync::atomic::AtomicU32,
}

impl ProbeRunner for PanicFirst {
    fn run<'a>(&'a self, _req: &'a ProbeRequest<'a>) -> BoxFuture<'a, ProbeOutcome> {
        use std::sync::atomic::Ordering;
        self.runs.fetch_add(1, Ordering::SeqCst);
        let panic_now = self
            .n
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Box::pin(async move {
            // Inside the probe's future, as a bug in a client reading a hostile answer would.
            assert!(!panic_now, "injected panic in a probe");
            ProbeOutcome {
                result: ProbeResult::Success,
                output: String::new(),
            }
        })
    }
}

/// A probe worker whose probe panics is restarted after a pause, counted, and keeps probing:
/// the container turns ready once a probe completes.
#[tokio::test(start_paused = true)]
async fn a_panicking_probe_worker_is_restarted_and_counted() {
    use std::sync::atomic::{AtomicU32, Ordering};
    #[derive(Default)]
    struct Panics(Mutex<Vec<ProbeType>>);
    impl ProbeObserver for Panics {
        fn observe(&self, _o: &ProbeObservation<'_>) {}
        fn worker_panicked(&self, t: ProbeType) {
            self.0.lock().push(t);
        }
    }
    let runner = Arc::new(PanicFirst {
        n: AtomicU32::new(2),
        runs: AtomicU32::new(0),
    });
    let mgr = ProberManager::on_current_runtime(
        runner.clone(),
        Events::default(),
        Arc::new(|_: &str| {}),
    );
    let panics = Arc::new(Panics::default());
    mgr.set_observer(panics.clone());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"containers": [{"name": "c", "image": "i", "readinessProbe": probe(json!({}))}]}
    }))
    .unwrap();
    mgr.add_pod(&pod);
    let rt = running("c1");
    mgr.update_pod(&pod, &rt, "10.0.0.9");
    // The first probe panics; restarted after 1 s, the worker panics again; 2 s later it probes
    // for good.
    advance(12).await;
    assert!(
        mgr.verdicts(&pod, &rt).1.contains("c1"),
        "ready once a probe completed"
    );
    assert!(runner.runs.load(Ordering::SeqCst) >= 3);
    assert_eq!(mgr.worker_panics(), 2);
    assert_eq!(
        *panics.0.lock(),
        vec![ProbeType::Readiness, ProbeType::Readiness]
    );
    assert_eq!(mgr.worker_count(), 1);
    mgr.remove_pod("u1");
}
