use super::*;
use serde_json::json;

fn manager(devices: &[(&str, bool)]) -> (tempfile::TempDir, DeviceManager) {
    let root = tempfile::tempdir().unwrap();
    let dm = DeviceManager::new(root.path()).unwrap();
    {
        let mut st = dm.state.lock();
        let r = st.resources.entry("example.com/widget".into()).or_default();
        for (id, healthy) in devices {
            r.devices.insert(
                id.to_string(),
                DeviceInfo {
                    healthy: *healthy,
                    numa_nodes: vec![],
                },
            );
        }
    }
    (root, dm)
}

fn pod(uid: &str, widgets: u32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": uid, "namespace": "default", "uid": uid},
        "spec": {"containers": [{"name": "main", "image": "x",
            "resources": {"limits": {"example.com/widget": widgets.to_string(), "cpu": "1"}}}]}
    }))
    .unwrap()
}

fn ids(dm: &DeviceManager, uid: &str) -> Vec<String> {
    dm.container_devices(uid, "main")
        .remove("example.com/widget")
        .map(|m| m.into_keys().collect())
        .unwrap_or_default()
}

#[test]
fn admission_reserves_distinct_healthy_devices_and_refuses_beyond() {
    let (_root, dm) = manager(&[("w0", true), ("w1", false), ("w2", true), ("w3", true)]);
    let active: HashSet<String> = ["a".to_string()].into();
    dm.admit(&pod("a", 2), Some(&HashSet::new())).unwrap();
    assert_eq!(ids(&dm, "a"), ["w0", "w2"]);
    // Admitting again (a restart) keeps the allocation.
    dm.admit(&pod("a", 2), Some(&HashSet::new())).unwrap();
    assert_eq!(ids(&dm, "a"), ["w0", "w2"]);
    let err = dm.admit(&pod("b", 2), Some(&active)).unwrap_err();
    let (reason, msg) = refusal(&err);
    assert_eq!(reason, "UnexpectedAdmissionError");
    assert_eq!(
        msg,
        "Allocate failed due to requested number of devices unavailable for example.com/widget. Requested: 2, Available: 1, which is unexpected"
    );
    assert!(ids(&dm, "b").is_empty(), "a refused pod holds nothing");
    // Before the sources are ready nothing is released.
    dm.admit(&pod("c", 2), None).unwrap_err();
    assert_eq!(ids(&dm, "a"), ["w0", "w2"]);
    // Once pod a is gone, its devices are free again.
    dm.admit(&pod("b", 3), Some(&HashSet::new())).unwrap();
    assert_eq!(ids(&dm, "b"), ["w0", "w2", "w3"]);
    assert!(ids(&dm, "a").is_empty());
}

#[test]
fn unknown_extended_resources_are_not_the_device_managers() {
    let (_root, dm) = manager(&[("w0", true)]);
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "uid": "p"},
        "spec": {"containers": [{"name": "main", "resources": {"limits": {"other.io/thing": "9"}}}]}
    }))
    .unwrap();
    dm.admit(&p, Some(&HashSet::new())).unwrap();
}

#[test]
fn capacity_counts_every_device_and_allocatable_the_healthy_ones() {
    let (_root, dm) = manager(&[("w0", true), ("w1", false), ("w2", true), ("w3", true)]);
    let c = dm.capacity();
    assert_eq!(c.capacity["example.com/widget"], 4);
    assert_eq!(c.allocatable["example.com/widget"], 3);
    // A plugin that stops: all unhealthy at once, removed after the grace period.
    {
        let mut st = dm.state.lock();
        st.generation = 7;
    }
    let (client, abort) = {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _g = rt.enter();
        let ch = tonic::transport::Endpoint::from_static("http://[::1]:1").connect_lazy();
        let task = rt.spawn(async {});
        (DevicePluginClient::new(ch), task.abort_handle())
    };
    dm.set_endpoint("example.com/widget", client, Default::default(), 7, abort);
    dm.endpoint_stopped("example.com/widget", 6); // an older stream: ignored
    assert_eq!(dm.capacity().allocatable["example.com/widget"], 3);
    dm.endpoint_stopped("example.com/widget", 7);
    let now = Instant::now();
    let c = dm.capacity_at(now);
    assert_eq!(c.capacity["example.com/widget"], 4);
    assert_eq!(c.allocatable["example.com/widget"], 0);
    let c = dm.capacity_at(now + ENDPOINT_GRACE + Duration::from_secs(1));
    assert_eq!(c.capacity["example.com/widget"], 0);
    assert_eq!(c.allocatable["example.com/widget"], 0);
    // Removed and holding no allocation: no longer a device-plugin resource.
    dm.admit(&pod("z", 1), Some(&HashSet::new())).unwrap();
    assert!(ids(&dm, "z").is_empty());
}

#[test]
fn a_resource_known_only_from_allocations_is_unregistered() {
    let (_root, dm) = manager(&[("w0", true)]);
    dm.admit(&pod("a", 1), Some(&HashSet::new())).unwrap();
    dm.state.lock().resources.clear();
    let err = dm
        .admit(&pod("b", 1), Some(&["a".to_string()].into()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot allocate unregistered device example.com/widget"
    );
}

#[test]
fn allocations_survive_a_new_manager_through_the_checkpoint() {
    let (root, dm) = manager(&[("w0", true), ("w1", true)]);
    dm.admit(&pod("a", 1), Some(&HashSet::new())).unwrap();
    drop(dm);
    let again = DeviceManager::new(root.path()).unwrap();
    assert_eq!(ids(&again, "a"), ["w0"]);
    // Known from the checkpoint, but no healthy device until the plugin registers again.
    let c = again.capacity();
    assert_eq!(c.capacity["example.com/widget"], 2);
    assert_eq!(c.allocatable["example.com/widget"], 0);
    let err = again
        .admit(&pod("b", 1), Some(&["a".to_string()].into()))
        .unwrap_err();
    assert!(err.to_string().contains("Available: 0"), "{err}");
}

#[test]
fn allocate_answers_apply_to_the_container_config() {
    let mut opts = ContainerDeviceOptions::default();
    opts.add(&ContainerAllocateResponse {
        envs: [
            ("WIDGETS".to_string(), "w0".to_string()),
            ("A".into(), "dev".into()),
        ]
        .into(),
        mounts: vec![proto::deviceplugin::Mount {
            container_path: "/widgets".into(),
            host_path: "/tmp/w".into(),
            read_only: true,
        }],
        devices: vec![proto::deviceplugin::DeviceSpec {
            container_path: "/dev/widget0".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }],
        annotations: [("example.com/a".to_string(), "1".to_string())].into(),
        cdi_devices: vec![proto::deviceplugin::CdiDevice {
            name: "example.com/widget=w0".into(),
        }],
    });
    let mut cfg = cri::ContainerConfig {
        envs: vec![cri::KeyValue {
            key: "A".into(),
            value: "mine".into(),
        }],
        ..Default::default()
    };
    opts.apply(&mut cfg);
    let envs: Vec<(&str, &str)> = cfg
        .envs
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(envs, [("WIDGETS", "w0"), ("A", "mine")]);
    assert_eq!(cfg.mounts[0].container_path, "/widgets");
    assert!(cfg.mounts[0].readonly);
    assert_eq!(cfg.devices[0].host_path, "/dev/null");
    assert_eq!(cfg.annotations["example.com/a"], "1");
    assert_eq!(cfg.cdi_devices[0].name, "example.com/widget=w0");
}

#[test]
fn registration_checks_with_the_kubelets_messages() {
    let ok = proto::deviceplugin::RegisterRequest {
        version: "v1beta1".into(),
        endpoint: "widget.sock".into(),
        resource_name: "example.com/widget".into(),
        options: None,
    };
    assert!(server::validate(&ok).is_ok());
    let bad = |f: &dyn Fn(&mut proto::deviceplugin::RegisterRequest)| {
        let mut r = ok.clone();
        f(&mut r);
        server::validate(&r).unwrap_err()
    };
    assert_eq!(
        bad(&|r| r.version = "v1alpha".into()),
        r#"requested API version "v1alpha" is not supported by kubelet. Supported versions are ["v1beta1"]"#
    );
    assert_eq!(
        bad(&|r| r.resource_name = "widget".into()),
        r#"the ResourceName "widget" is invalid"#
    );
    assert!(bad(&|r| r.resource_name = "kubernetes.io/widget".into()).contains("invalid"));
    assert!(bad(&|r| r.endpoint = "../x.sock".into()).contains("../x.sock"));
}

#[test]
fn extended_resource_names() {
    for ok in ["example.com/widget", "nvidia.com/gpu", "a.b/c_d.e"] {
        assert!(is_extended_resource_name(ok), "{ok}");
    }
    for bad in [
        "cpu",
        "kubernetes.io/x",
        "requests.example.com/x",
        "Example.com/x",
        "a/",
        "/x",
    ] {
        assert!(!is_extended_resource_name(bad), "{bad}");
    }
}
