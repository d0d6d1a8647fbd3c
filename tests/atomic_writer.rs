//! The atomic writer through the volume manager, as root (tmpfs mounts): a secret volume fed
//! from an in-memory object source has the right file modes, lives on a tmpfs, and a reader
//! looping over its files while the secret is updated never sees a mix of old and new contents.
//! Teardown unmounts the tmpfs and removes the directory.
//!
//! Needs root (mount(2)); run with the other runtime-tier tests (`KUBELET_RS_SKIP_RUNTIME_TESTS`
//! skips it like them).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kubelet_rs::fieldpath::PodRuntimeFacts;
use kubelet_rs::lifecycle::Events;
use kubelet_rs::objects::MemoryObjects;
use kubelet_rs::volumemanager::{mount, VolumeManager, VolumeOptions};
use serde_json::json;

const FILES: [&str; 4] = ["a", "b", "c", "nested/d"];

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn secret(generation: u64) -> Secret {
    let mut data = BTreeMap::new();
    for f in FILES {
        let key = f.replace('/', "-");
        // Different sizes per generation, so a torn read would also show as a length mismatch.
        let body = format!(
            "{f}:{generation}:{}",
            "x".repeat((generation % 7) as usize * 100)
        );
        data.insert(key, ByteString(body.into_bytes()));
    }
    Secret {
        metadata: serde_json::from_value(json!({"name": "creds", "namespace": "ns"})).unwrap(),
        data: Some(data),
        ..Default::default()
    }
}

/// Parses `file:generation:padding`; None when the content is not one whole version.
fn generation_of(file: &str, content: &str) -> Option<u64> {
    let mut it = content.splitn(3, ':');
    let name = it.next()?;
    let generation: u64 = it.next()?.parse().ok()?;
    let pad = it.next()?;
    (name == file && pad.len() == (generation % 7) as usize * 100).then_some(generation)
}

fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let table = mount::mount_table(Path::new(mount::MOUNTINFO)).unwrap();
    mount::mounts_under(&table, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_modes_tmpfs_and_atomic_updates() {
    if std::env::var_os("KUBELET_RS_SKIP_RUNTIME_TESTS").is_some() {
        eprintln!("skipped: KUBELET_RS_SKIP_RUNTIME_TESTS is set");
        return;
    }
    assert!(is_root(), "this test mounts tmpfs and needs root");
    let root = tempfile::Builder::new()
        .prefix("kubelet-rs-atomic-")
        .tempdir()
        .unwrap();
    // Unmounts and removes whatever the test mounted, even when an assertion fails.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ =
                kubelet_rs::volumemanager::teardown_pod_dir(&self.0, Path::new(mount::MOUNTINFO));
        }
    }
    let _cleanup = Cleanup(root.path().join("pods/atomic-uid"));
    let objects = MemoryObjects::default();
    objects.put_secret(secret(0));
    let vm = Arc::new(VolumeManager::new(
        VolumeOptions {
            pods_root: root.path().join("pods"),
            mountinfo: PathBuf::from(mount::MOUNTINFO),
            resync_period: Duration::from_secs(3600),
            metrics: None,
        },
        Arc::new(objects.clone()),
        Events::default(),
    ));
    let items: Vec<_> = FILES
        .iter()
        .map(|f| {
            let mut item = json!({"key": f.replace('/', "-"), "path": f});
            if *f == "b" {
                item["mode"] = json!(0o600);
            }
            item
        })
        .collect();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "atomic-uid"},
        "spec": {
            "containers": [{"name": "c", "image": "i"}],
            "volumes": [{"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400, "items": items}}]
        }
    }))
    .unwrap();
    vm.mount_pod(&pod, &PodRuntimeFacts::default())
        .await
        .unwrap();
    let dir = vm.mounted("atomic-uid")["creds"].host_path.clone();
    assert!(dir.ends_with("atomic-uid/volumes/kubernetes.io~secret/creds"));

    // On a tmpfs of its own.
    let table = mount::mount_table(Path::new(mount::MOUNTINFO)).unwrap();
    let m = mount::mount_at(&table, &dir).expect("the secret directory is a mount point");
    assert_eq!(m.fs_type, "tmpfs");
    // Modes: defaultMode for items without one, the item's own otherwise; files through ..data.
    let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("a"), 0o400);
    assert_eq!(mode("b"), 0o600);
    assert_eq!(mode("nested/d"), 0o400);
    assert_eq!(
        std::fs::read_link(dir.join("a")).unwrap(),
        Path::new("..data/a")
    );
    assert_eq!(
        generation_of("a", &std::fs::read_to_string(dir.join("a")).unwrap()),
        Some(0)
    );

    // Readers loop while the secret changes.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    // Reader 1: one version at a time through `..data` (open it once, read every file under
    // it): all files of a round come from the same generation.
    {
        let (dir, stop, rounds) = (dir.clone(), stop.clone(), rounds.clone());
        readers.push(std::thread::spawn(move || {
            let mut seen = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let Ok(ver) = std::fs::canonicalize(dir.join("..data")) else {
                    continue;
                };
                let mut gens = Vec::new();
                for f in FILES {
                    match std::fs::read_to_string(ver.join(f)) {
                        Ok(c) => gens.push(
                            generation_of(f, &c).unwrap_or_else(|| panic!("torn file {f}: {c:?}")),
                        ),
                        // The version was retired while we read: start over.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            gens.clear();
                            break;
                        }
                        Err(e) => panic!("read {f}: {e}"),
                    }
                }
                if !gens.is_empty() {
                    assert!(
                        gens.iter().all(|g| *g == gens[0]),
                        "mixed generations in one version: {gens:?}"
                    );
                    seen = seen.max(gens[0]);
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            }
            seen
        }));
    }
    // Reader 2: through the user-visible paths, as a container does: every open gives a whole
    // file of one generation, and generations never go backwards.
    {
        let (dir, stop, rounds) = (dir.clone(), stop.clone(), rounds.clone());
        readers.push(std::thread::spawn(move || {
            let mut last = [0u64; 4];
            while !stop.load(Ordering::Relaxed) {
                for (i, f) in FILES.iter().enumerate() {
                    // Opening `f` resolves `..data` and then the file in that version; a version
                    // retired between the two steps gives ENOENT (never old-and-new): retry.
                    let c = loop {
                        match std::fs::read_to_string(dir.join(f)) {
                            Ok(c) => break c,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(e) => panic!("read {f}: {e}"),
                        }
                    };
                    let g = generation_of(f, &c).unwrap_or_else(|| panic!("torn file {f}: {c:?}"));
                    assert!(g >= last[i], "{f} went back from {} to {g}", last[i]);
                    last[i] = g;
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            last[0]
        }));
    }
    const UPDATES: u64 = 200;
    for generation in 1..=UPDATES {
        objects.put_secret(secret(generation));
        vm.resync().await;
    }
    // Let the readers go over the final version too.
    let before = rounds.load(Ordering::Relaxed);
    while rounds.load(Ordering::Relaxed) < before + 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let seen = r
            .join()
            .expect("a reader saw a torn file or a mix of versions");
        assert!(seen > 0, "the readers overlapped the updates");
    }
    assert!(rounds.load(Ordering::Relaxed) > 20);
    for f in FILES {
        let c = std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(generation_of(f, &c), Some(UPDATES), "{f}: {c}");
    }
    // Only one version directory remains.
    let versions: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("..2"))
        .collect();
    assert_eq!(versions.len(), 1);
    assert_eq!(mode("b"), 0o600, "modes survive updates");

    // Teardown: unmounted and removed.
    vm.unmount_pod("atomic-uid").await.unwrap();
    assert!(mounts_below(root.path()).is_empty());
    assert!(!root.path().join("pods/atomic-uid/volumes").exists());
}
