//! Volume manager behaviour that needs no root: disk-backed volumes (emptyDir, configMap,
//! hostPath) set up, refreshed and torn down under a temporary root; bad input reported with
//! the kubelet's messages. Memory-backed volumes, secrets on tmpfs and subPath bind mounts need
//! root and are covered by `tests/volumes.rs` and `tests/atomic_writer.rs`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;
use crate::objects::MemoryObjects;

fn manager(root: &Path, objects: MemoryObjects) -> VolumeManager {
    manager_with(root, objects, None)
}

fn manager_with(
    root: &Path,
    objects: MemoryObjects,
    metrics: Option<crate::metrics::Metrics>,
) -> VolumeManager {
    VolumeManager::new(
        VolumeOptions {
            pods_root: root.to_path_buf(),
            mountinfo: PathBuf::from(mount::MOUNTINFO),
            resync_period: Duration::from_secs(60),
            metrics,
        },
        Arc::new(objects),
        Events::default(),
    )
}

fn pod(volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x"}},
        "spec": {"volumes": volumes, "containers": [{"name": "c", "image": "i", "volumeMounts": mounts}]}
    }))
    .unwrap()
}

fn cm(data: serde_json::Value) -> k8s_openapi::api::core::v1::ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": data}))
        .unwrap()
}

#[tokio::test]
async fn disk_volumes_set_up_refresh_and_tear_down() {
    let d = tempfile::tempdir().unwrap();
    let host = d.path().join("host-dir");
    let objects = MemoryObjects::default();
    objects.put_config_map(cm(json!({"a": "1", "b": "2"})));
    let vm = manager(&d.path().join("pods"), objects.clone());
    let p = pod(
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "conf", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "dir/a.txt", "mode": 0o600}]}},
            {"name": "host", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}}
        ]),
        json!([
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "conf", "mountPath": "/etc/conf"},
            {"name": "host", "mountPath": "/host", "readOnly": true}
        ]),
    );
    vm.mount_pod(&p, &PodRuntimeFacts::default()).await.unwrap();
    let mounted = vm.mounted("u1");
    assert_eq!(mounted.len(), 3);
    let scratch = &mounted["scratch"].host_path;
    assert!(scratch.ends_with("u1/volumes/kubernetes.io~empty-dir/scratch"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(scratch).unwrap().permissions().mode() & 0o7777,
        0o777
    );
    let conf = mounted["conf"].host_path.clone();
    assert_eq!(
        std::fs::read_to_string(conf.join("dir/a.txt")).unwrap(),
        "1"
    );
    assert_eq!(
        std::fs::metadata(conf.join("dir/a.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(host.is_dir(), "DirectoryOrCreate made it");

    let vm = Arc::new(vm);
    let (vm2, p2) = (vm.clone(), p.clone());
    let m = tokio::task::spawn_blocking(move || {
        let c = &p2.spec.as_ref().unwrap().containers[0];
        vm2.container_mounts(&p2, c, &[])
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].host_path, scratch.to_string_lossy());
    assert!(!m[0].readonly);
    assert!(m[1].readonly, "configMap volumes are always read-only");
    assert!(m[2].readonly);
    assert_eq!(m[2].host_path, host.to_string_lossy());

    let dirs = vm.empty_dirs();
    assert_eq!(dirs.len(), 1);
    assert_eq!(
        (dirs[0].volume.as_str(), dirs[0].size_limit.as_ref()),
        ("scratch", None)
    );
    assert_eq!(&dirs[0].path, scratch);

    // The ConfigMap changes: the next resync rewrites the file in place.
    objects.put_config_map(cm(json!({"a": "one"})));
    vm.resync().await;
    assert_eq!(
        std::fs::read_to_string(conf.join("dir/a.txt")).unwrap(),
        "one"
    );

    // Teardown removes the volume directories but never the hostPath.
    std::fs::write(scratch.join("data"), "x").unwrap();
    vm.unmount_pod("u1").await.unwrap();
    assert!(!d.path().join("pods/u1/volumes").exists());
    assert!(host.is_dir());
    assert!(vm.mounted("u1").is_empty());
}

#[tokio::test]
async fn bad_volumes_are_reported_with_the_kubelet_messages() {
    let d = tempfile::tempdir().unwrap();
    let objects = MemoryObjects::default();
    objects.put_config_map(cm(json!({"a": "1"})));
    let vm = manager(&d.path().join("pods"), objects);
    let missing = d.path().join("absent");
    let p = pod(
        json!([
            {"name": "good", "emptyDir": {}},
            {"name": "hp", "hostPath": {"path": missing.to_str().unwrap(), "type": "Directory"}},
            {"name": "nokey", "configMap": {"name": "cfg", "items": [{"key": "zzz", "path": "z"}]}},
            {"name": "nocm", "configMap": {"name": "absent"}},
            {"name": "optional", "configMap": {"name": "absent", "optional": true}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
        ]),
        json!([{"name": "good", "mountPath": "/g"}]),
    );
    let e = vm
        .mount_pod(&p, &PodRuntimeFacts::default())
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("unmounted volumes=[hp nokey nocm token]"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "MountVolume.SetUp failed for volume \"hp\" : hostPath type check failed: {} is not a directory",
            missing.display()
        )),
        "{text}"
    );
    let mounted = vm.mounted("u1");
    assert!(mounted.contains_key("good") && mounted.contains_key("optional"));
    // Each failure alone, as the pod's FailedMount events say.
    let ctx = SetupContext {
        pod: &p,
        pod_dir: d.path().join("pods/u1"),
        objects: &MemoryObjects::default(),
        facts: &PodRuntimeFacts::default(),
        mountinfo: Path::new(mount::MOUNTINFO),
    };
    let vols = p.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    assert_eq!(
        setup_volume(&ctx, &vols[3]).unwrap_err().to_string(),
        "configmaps \"absent\" not found"
    );
    let objs = MemoryObjects::default();
    objs.put_config_map(cm(json!({"a": "1"})));
    let ctx = SetupContext {
        objects: &objs,
        ..ctx
    };
    assert_eq!(
        setup_volume(&ctx, &vols[2]).unwrap_err().to_string(),
        "configmap references non-existent config key: zzz (in \"cfg\")"
    );
    assert!(setup_volume(&ctx, &vols[5])
        .unwrap_err()
        .to_string()
        .contains("needs a TokenRequest from the API server"));
    // A failed configMap leaves nothing behind.
    assert!(!d
        .path()
        .join("pods/u1/volumes/kubernetes.io~configmap/nokey")
        .exists());
    vm.unmount_pod("u1").await.unwrap();
}

#[tokio::test]
async fn a_mount_of_an_undeclared_volume_is_a_config_error() {
    let d = tempfile::tempdir().unwrap();
    let vm = manager(&d.path().join("pods"), MemoryObjects::default());
    let p = pod(json!([]), json!([{"name": "ghost", "mountPath": "/g"}]));
    vm.mount_pod(&p, &PodRuntimeFacts::default()).await.unwrap();
    let c = p.spec.as_ref().unwrap().containers[0].clone();
    let p2 = p.clone();
    let vm = Arc::new(vm);
    let vm2 = vm.clone();
    let e = tokio::task::spawn_blocking(move || vm2.container_mounts(&p2, &c, &[]))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot find volume \"ghost\" to mount into container \"c\""
    );
    vm.unmount_pod("u1").await.unwrap();
}

#[test]
fn memory_sizes() {
    let p = pod(json!([]), json!([]));
    let src: k8s_openapi::api::core::v1::EmptyDirVolumeSource =
        serde_json::from_value(json!({"medium": "Memory", "sizeLimit": "64Mi"})).unwrap();
    assert_eq!(emptydir::memory_size(&p, &src).unwrap(), Some(64 << 20));
    let unlimited: k8s_openapi::api::core::v1::EmptyDirVolumeSource =
        serde_json::from_value(json!({"medium": "Memory"})).unwrap();
    assert_eq!(emptydir::memory_size(&p, &unlimited).unwrap(), None);
    let limited: Pod =
        serde_json::from_value(json!({"metadata": {"uid": "u"}, "spec": {"containers": [
        {"name": "a", "image": "i", "resources": {"limits": {"memory": "32Mi"}}},
        {"name": "b", "image": "i", "resources": {"limits": {"memory": "32Mi"}}}]}}))
        .unwrap();
    assert_eq!(
        emptydir::memory_size(&limited, &unlimited).unwrap(),
        Some(64 << 20)
    );
}

#[test]
fn a_projected_volume_combines_config_map_secret_and_downward_api_files() {
    let objects = MemoryObjects::default();
    objects.put_config_map(cm(json!({"a": "1", "b": "2"})));
    objects.put_secret(
        serde_json::from_value(json!({
            "metadata": {"name": "creds", "namespace": "ns"},
            "data": {"password": "czNjcjN0"},
            "stringData": {"user": "admin"}
        }))
        .unwrap(),
    );
    let p = pod(
        json!([{"name": "all", "projected": {"defaultMode": 0o640, "sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "a", "path": "conf/a.txt"}]}},
            {"secret": {"name": "creds", "items": [
                {"key": "user", "path": "creds/user"},
                {"key": "password", "path": "creds/password", "mode": 0o400}
            ]}},
            {"downwardAPI": {"items": [
                {"path": "pod/labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "pod/name", "fieldRef": {"fieldPath": "metadata.name"}}
            ]}}
        ]}}]),
        json!([{"name": "all", "mountPath": "/all"}]),
    );
    let d = tempfile::tempdir().unwrap();
    let ctx = SetupContext {
        pod: &p,
        pod_dir: d.path().join("pods/u1"),
        objects: &objects,
        facts: &PodRuntimeFacts::default(),
        mountinfo: Path::new(mount::MOUNTINFO),
    };
    let vol = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    let payload = projected::payload(&ctx, vol.projected.as_ref().unwrap()).unwrap();
    let files: Vec<(&str, &[u8], u32)> = payload
        .iter()
        .map(|(k, f)| (k.as_str(), f.data.as_slice(), f.mode))
        .collect();
    assert_eq!(
        files,
        vec![
            ("conf/a.txt", &b"1"[..], 0o640),
            ("creds/password", &b"s3cr3t"[..], 0o400),
            ("creds/user", &b"admin"[..], 0o640),
            ("pod/labels", &b"app=\"x\""[..], 0o640),
            ("pod/name", &b"p"[..], 0o640),
        ]
    );
    // Written out, every file is there through the `..data` link.
    let dir = d.path().join("vol");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(atomic_writer::write(&dir, &payload).unwrap());
    for (path, data, mode) in files {
        let f = dir.join(path);
        assert_eq!(std::fs::read(&f).unwrap(), data, "{path}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            mode,
            "{path}"
        );
    }
    assert!(dir.join("..data/pod/name").is_file());
}

#[tokio::test]
async fn volumes_are_counted_and_their_operations_timed() {
    let d = tempfile::tempdir().unwrap();
    let host = d.path().join("host-dir");
    let metrics = crate::metrics::Metrics::new("n");
    let vm = manager_with(
        &d.path().join("pods"),
        MemoryObjects::default(),
        Some(metrics.clone()),
    );
    let p = pod(
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "more", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}},
            {"name": "conf", "configMap": {"name": "missing"}}
        ]),
        json!([]),
    );
    // The configMap does not exist: desired, not set up, and a failed mount.
    assert!(vm.mount_pod(&p, &PodRuntimeFacts::default()).await.is_err());
    let text = metrics.encode();
    let has = |line: &str| text.contains(&format!("{line}\n"));
    for line in [
        "volume_manager_total_volumes{plugin_name=\"kubernetes.io/empty-dir\",state=\"desired_state_of_world\"} 2",
        "volume_manager_total_volumes{plugin_name=\"kubernetes.io/empty-dir\",state=\"actual_state_of_world\"} 2",
        "volume_manager_total_volumes{plugin_name=\"kubernetes.io/host-path\",state=\"actual_state_of_world\"} 1",
        "volume_manager_total_volumes{plugin_name=\"kubernetes.io/configmap\",state=\"desired_state_of_world\"} 1",
        "storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_mount\",status=\"success\",volume_plugin=\"kubernetes.io/empty-dir\"} 2",
        "storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_mount\",status=\"fail-unknown\",volume_plugin=\"kubernetes.io/configmap\"} 1",
    ] {
        assert!(has(line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains("plugin_name=\"kubernetes.io/configmap\",state=\"actual_state_of_world\""),
        "{text}"
    );
    vm.unmount_pod("u1").await.unwrap();
    let text = metrics.encode();
    assert!(
        !text.contains("volume_manager_total_volumes{"),
        "no pods, no volumes:\n{text}"
    );
    for line in [
        "storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_unmount\",status=\"success\",volume_plugin=\"kubernetes.io/empty-dir\"} 2",
        "storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_unmount\",status=\"success\",volume_plugin=\"kubernetes.io/host-path\"} 1",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line} missing:\n{text}");
    }
}
