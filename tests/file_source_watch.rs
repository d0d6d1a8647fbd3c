//! The static pod source: manifest fixtures, identity derivation, and the watcher (inotify and
//! the periodic recheck) on temporary directories. Unit tier: no root, no runtime.
//!
//! No timing assertions: each test waits, with a generous timeout, for the update it expects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kubelet_rs::sources::file::{decode_manifest, read_manifest, spawn_file_source, FileSource};
use kubelet_rs::sources::{
    PodOperation, PodUpdate, CONFIG_HASH_ANNOTATION, CONFIG_SOURCE_ANNOTATION, FILE_SOURCE,
};
use tokio::sync::mpsc;

const NODE: &str = "node1";
/// How long to wait for an update before declaring the test failed.
const PATIENCE: Duration = Duration::from_secs(20);
/// A recheck period long enough that only inotify can explain a quick update.
const NEVER: Duration = Duration::from_secs(3600);

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/static-pods")
        .join(rel)
}

fn pod_yaml(name: &str, arg: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: app\n    \
         image: 127.0.0.1:5000/kubelet-rs/busybox:1.35\n    args: [\"{arg}\"]\n"
    )
}

fn names(update: &PodUpdate) -> Vec<String> {
    update
        .pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

fn uid(pods: &[Pod], name: &str) -> Option<String> {
    pods.iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.metadata.uid.clone())
}

/// Receives updates until one satisfies `want`; fails after [`PATIENCE`].
async fn wait_for(
    rx: &mut mpsc::Receiver<PodUpdate>,
    what: &str,
    want: impl Fn(&PodUpdate) -> bool,
) -> PodUpdate {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(update)) => {
                assert_eq!(update.source, FILE_SOURCE);
                assert_eq!(update.op, PodOperation::Set);
                if want(&update) {
                    return update;
                }
            }
            Ok(None) => panic!("the source stopped while waiting for {what}"),
            Err(_) => panic!("no update with {what} within {PATIENCE:?}"),
        }
    }
}

#[test]
fn good_fixtures_decode() {
    for (file, name, namespace) in [
        ("good/web.yaml", "web-node1", "default"),
        ("good/ticker.json", "ticker-node1", "kube-system"),
        ("good/with-init.yaml", "with-init-node1", "default"),
    ] {
        let d = read_manifest(&fixture(file), NODE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.pod.metadata.name.as_deref(), Some(name));
        assert_eq!(d.pod.metadata.namespace.as_deref(), Some(namespace));
        assert!(d.unknown_fields.is_empty(), "{:?}", d.unknown_fields);
        let ann = d.pod.metadata.annotations.clone().unwrap();
        assert_eq!(
            Some(&ann[CONFIG_HASH_ANNOTATION]),
            d.pod.metadata.uid.as_ref()
        );
        assert_eq!(ann[CONFIG_SOURCE_ANNOTATION], "file");
    }
    let ticker = read_manifest(&fixture("good/ticker.json"), NODE)
        .unwrap()
        .pod;
    let c = &ticker.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        c.image_pull_policy.as_deref(),
        Some("Always"),
        "untagged image"
    );
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["memory"].0, "32Mi", "requests default to limits");
}

#[test]
fn bad_fixtures_are_refused_naming_file_and_field() {
    let cases = [
        ("bad/missing-image.yaml", "invalid pod: spec.containers[1].image: Required value"),
        ("bad/duplicate-names.yaml", "invalid pod: spec.containers[1].name: Duplicate value: \"app\""),
        (
            "bad/bad-quantity.yaml",
            "invalid pod: spec.containers[0].resources.limits[memory]: Invalid value: \"12Q\": \
             quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            "bad/invalid-name.yaml",
            "invalid pod: metadata.name: Invalid value: \"Web_Server-node1\": a lowercase RFC 1123 subdomain",
        ),
        (
            "bad/invalid-container-name.json",
            "invalid pod: spec.containers[0].name: Invalid value: \"App.Server\": a lowercase RFC 1123 label",
        ),
        ("bad/not-a-pod.yaml", "apiVersion: Unsupported value: \"apps/v1\""),
        ("bad/malformed.yaml", "not valid YAML"),
        ("bad/malformed.json", "not valid JSON"),
        (
            "bad/wrong-type.yaml",
            "spec.containers[0].ports[0].containerPort: invalid type: string \"eighty\", expected i32",
        ),
        (
            "bad/request-over-limit.yaml",
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        ),
        ("bad/unknown-volume.yaml", "spec.containers[0].volumeMounts[0].name: Not found: \"data\""),
        (
            "bad/two-probe-handlers.yaml",
            "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        ),
        ("bad/empty.yaml", "the file is empty"),
    ];
    let dir = std::fs::read_dir(fixture("bad")).unwrap().count();
    assert_eq!(dir, cases.len(), "every bad fixture has a case");
    for (file, expected) in cases {
        let path = fixture(file);
        let err = read_manifest(&path, NODE).expect_err(file).to_string();
        assert!(err.starts_with(&format!("{}: ", path.display())), "{err}");
        assert!(
            err.contains(expected),
            "{file}: expected {expected:?} in {err:?}"
        );
    }
}

#[test]
fn identity_is_stable_and_follows_content() {
    let path = Path::new("/etc/kubelet-rs/manifests/web.yaml");
    let a = decode_manifest(pod_yaml("web", "1").as_bytes(), path, "Node1")
        .unwrap()
        .pod;
    let b = decode_manifest(pod_yaml("web", "1").as_bytes(), path, "Node1")
        .unwrap()
        .pod;
    let c = decode_manifest(pod_yaml("web", "2").as_bytes(), path, "Node1")
        .unwrap()
        .pod;
    assert_eq!(a.metadata.name.as_deref(), Some("web-node1"));
    assert_eq!(a.metadata.uid, b.metadata.uid, "same content, same UID");
    assert_ne!(a.metadata.uid, c.metadata.uid, "new content, new UID");
    assert_eq!(a.spec.as_ref().unwrap().node_name.as_deref(), Some("Node1"));
    // Whitespace and key order do not matter, only the pod.
    let reordered = "kind: Pod\napiVersion: v1\nspec:\n  containers:\n  - image: 127.0.0.1:5000/kubelet-rs/busybox:1.35\n    name: app\n    args: [\"1\"]\nmetadata: {name: web}\n";
    let d = decode_manifest(reordered.as_bytes(), path, "Node1")
        .unwrap()
        .pod;
    assert_eq!(a.metadata.uid, d.metadata.uid);
}

#[tokio::test]
async fn inotify_sees_adds_edits_and_removals() {
    let dir = tempfile::tempdir().unwrap();
    // A good and a malformed manifest from the start: the good one is sent.
    std::fs::write(dir.path().join("a.yaml"), pod_yaml("a", "1")).unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: v1\nkind: Pod\nspec: [",
    )
    .unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let task = spawn_file_source(dir.path().to_path_buf(), NODE.into(), NEVER, tx);

    let first = wait_for(&mut rx, "pod a", |u| names(u) == ["a-node1"]).await;
    let uid_a = uid(&first.pods, "a-node1").unwrap();

    // A new file, and a hidden one that must be ignored.
    std::fs::write(dir.path().join(".hidden.yaml"), pod_yaml("hidden", "1")).unwrap();
    std::fs::write(
        dir.path().join("b.json"),
        serde_json::to_string(
            &serde_yaml::from_str::<serde_json::Value>(&pod_yaml("b", "1")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let update = wait_for(&mut rx, "pods a and b", |u| {
        names(u) == ["a-node1", "b-node1"]
    })
    .await;
    assert_eq!(
        uid(&update.pods, "a-node1").as_deref(),
        Some(uid_a.as_str())
    );

    // An edit: same name, new UID.
    std::fs::write(dir.path().join("a.yaml"), pod_yaml("a", "2")).unwrap();
    let update = wait_for(&mut rx, "a new UID for a", |u| {
        uid(&u.pods, "a-node1").is_some_and(|u| u != uid_a)
    })
    .await;
    assert!(names(&update).contains(&"b-node1".to_string()));

    // An atomic replace (write elsewhere, rename in), as editors and config tools do.
    let tmp = dir.path().join(".c.yaml.tmp");
    std::fs::write(&tmp, pod_yaml("c", "1")).unwrap();
    std::fs::rename(&tmp, dir.path().join("c.yaml")).unwrap();
    wait_for(&mut rx, "pod c", |u| {
        names(u).contains(&"c-node1".to_string())
    })
    .await;

    // Removal.
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let update = wait_for(&mut rx, "a removed", |u| {
        !names(u).contains(&"a-node1".to_string())
    })
    .await;
    assert_eq!(
        names(&update),
        ["b-node1", "c-node1"],
        "the hidden pod never appears"
    );

    drop(rx);
    // The task ends once nobody listens.
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_malformed_file_does_not_hide_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let _task = spawn_file_source(dir.path().to_path_buf(), NODE.into(), NEVER, tx);
    wait_for(&mut rx, "the first, empty set", |u| u.pods.is_empty()).await;

    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: x\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("good.yaml"), pod_yaml("good", "1")).unwrap();
    let update = wait_for(&mut rx, "the good pod", |u| !u.pods.is_empty()).await;
    assert_eq!(names(&update), ["good-node1"]);

    // Fixing the bad file brings its pod in.
    std::fs::write(dir.path().join("bad.yaml"), pod_yaml("bad", "1")).unwrap();
    let update = wait_for(&mut rx, "the fixed pod", |u| u.pods.len() == 2).await;
    assert_eq!(names(&update), ["bad-node1", "good-node1"]);
}

#[tokio::test]
async fn the_periodic_recheck_works_without_inotify() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let source = FileSource::new(
        dir.path().to_path_buf(),
        NODE.into(),
        Duration::from_millis(50),
    )
    .with_inotify(false);
    let _task = tokio::spawn(source.run(tx));
    wait_for(&mut rx, "the first, empty set", |u| u.pods.is_empty()).await;
    std::fs::write(dir.path().join("web.yaml"), pod_yaml("web", "1")).unwrap();
    let update = wait_for(&mut rx, "the pod", |u| !u.pods.is_empty()).await;
    assert_eq!(names(&update), ["web-node1"]);
}

#[tokio::test]
async fn a_missing_directory_is_waited_for() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("manifests/");
    let (tx, mut rx) = mpsc::channel(16);
    let _task = spawn_file_source(dir.clone(), NODE.into(), NEVER, tx);
    // The kubelet reports an empty set for a missing path, so the source counts as seen.
    wait_for(&mut rx, "the first, empty set", |u| u.pods.is_empty()).await;
    // Create the directory and a manifest in it. Whether the first event comes from the
    // directory's creation or the file's, the pod arrives.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("web.yaml"), pod_yaml("web", "1")).unwrap();
    let update = wait_for(&mut rx, "the pod", |u| !u.pods.is_empty()).await;
    assert_eq!(names(&update), ["web-node1"]);

    // The directory goes away and comes back: the watch is re-established.
    std::fs::remove_dir_all(&dir).unwrap();
    wait_for(&mut rx, "an empty set", |u| u.pods.is_empty()).await;
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("web.yaml"), pod_yaml("web", "2")).unwrap();
    wait_for(&mut rx, "the pod again", |u| !u.pods.is_empty()).await;

    // Moved away and back (a directory swapped in by rename).
    let aside = parent.path().join("aside");
    std::fs::rename(&dir, &aside).unwrap();
    wait_for(&mut rx, "an empty set", |u| u.pods.is_empty()).await;
    std::fs::write(aside.join("more.yaml"), pod_yaml("more", "1")).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    let update = wait_for(&mut rx, "both pods", |u| u.pods.len() == 2).await;
    assert_eq!(names(&update), ["more-node1", "web-node1"]);
}

#[tokio::test]
async fn a_single_manifest_file_can_be_watched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("only.yaml");
    std::fs::write(&file, pod_yaml("only", "1")).unwrap();
    std::fs::write(dir.path().join("other.yaml"), pod_yaml("other", "1")).unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let _task = spawn_file_source(file.clone(), NODE.into(), NEVER, tx);
    let first = wait_for(&mut rx, "the pod", |u| !u.pods.is_empty()).await;
    assert_eq!(names(&first), ["only-node1"], "only that file is read");
    let old = uid(&first.pods, "only-node1").unwrap();
    std::fs::write(&file, pod_yaml("only", "2")).unwrap();
    wait_for(&mut rx, "a new UID", |u| {
        uid(&u.pods, "only-node1").is_some_and(|u| u != old)
    })
    .await;
    std::fs::remove_file(&file).unwrap();
    wait_for(&mut rx, "an empty set", |u| u.pods.is_empty()).await;
}
