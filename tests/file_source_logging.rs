//! A broken manifest (or a missing path) is reported once per change, not at every recheck.
//!
//! This file holds a single test because it installs a global `tracing` subscriber that counts
//! warnings; other tests in the same binary would add to the count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kubelet_rs::sources::file::ManifestScanner;
use tracing_subscriber::layer::SubscriberExt;

struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

const GOOD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  \
                    - name: app\n    image: 127.0.0.1:5000/kubelet-rs/busybox:1.35\n";

#[test]
fn problems_are_logged_once_per_change() {
    let warnings = Arc::new(AtomicUsize::new(0));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(CountWarnings(Arc::clone(&warnings))),
    )
    .unwrap();
    let count = || warnings.load(Ordering::SeqCst);

    let dir = tempfile::tempdir().unwrap();
    let mut gone = ManifestScanner::new(dir.path().join("missing"), "n".into());
    for _ in 0..3 {
        assert!(gone.scan().is_empty());
    }
    assert_eq!(count(), 1, "a missing path: one warning");

    std::fs::write(dir.path().join("bad.yaml"), "kind: Pod\n").unwrap();
    std::fs::write(dir.path().join("dup.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join("good.yaml"), GOOD).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let mut s = ManifestScanner::new(dir.path().to_path_buf(), "n".into());
    for _ in 0..3 {
        assert_eq!(s.scan().len(), 1);
    }
    // bad.yaml, good.yaml duplicating dup.yaml's pod, the sub-directory: once each.
    assert_eq!(count(), 4);

    std::fs::write(dir.path().join("bad.yaml"), "kind: Pod\nx: 1\n").unwrap();
    s.scan();
    s.scan();
    assert_eq!(count(), 5, "a bad file that changed: once more");

    std::fs::write(dir.path().join("bad.yaml"), GOOD.replace("web", "fixed")).unwrap();
    assert_eq!(s.scan().len(), 2);
    assert_eq!(count(), 5, "a fixed file: no warning");
}
