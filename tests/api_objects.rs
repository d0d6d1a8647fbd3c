//! Secrets, ConfigMaps and tokens from the API server (issue 12 item 7).
//!
//! The object manager is tested against a real test API server through the node's own client
//! certificate (what the agent uses), with `kubectl` changing the objects.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kubelet_rs::objects::api::ApiObjects;
use kubelet_rs::objects::ObjectSource;
use serde_json::json;
use testkit::TestApiServer;

fn pod(name: &str, uid: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": spec,
    }))
    .unwrap()
}

fn kubectl_ok(s: &TestApiServer, args: &[&str]) {
    let out = s.kubectl(args);
    assert!(out.success(), "kubectl {args:?}: {}", out.stderr);
}

fn apply(s: &TestApiServer, manifest: serde_json::Value) {
    let out = s.kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest.to_string()));
    assert!(out.success(), "kubectl apply: {}", out.stderr);
}

/// Waits for the change hook to name `uid`.
async fn woken(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, uid: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("pod {uid} not woken within 30 s"))
            .expect("hook channel open");
        if got == uid {
            return;
        }
    }
}

/// Polls `f` on a blocking thread (lookups may wait for a first sync) until it is true.
async fn eventually(what: &str, f: impl Fn() -> bool + Send + Sync + Clone + 'static) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let g = f.clone();
        if tokio::task::spawn_blocking(move || g()).await.unwrap() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_watches_follow_the_pods_that_reference_them() {
    let s = TestApiServer::start().expect("test-apiserver starts");
    apply(
        &s,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "app", "namespace": "default"},
               "data": {"greeting": "hello"}}),
    );
    let client = kubelet_rs::apiclient::connect(&s.node_kubeconfig("node-a").unwrap())
        .await
        .expect("node client");
    let objects = std::sync::Arc::new(ApiObjects::new(client));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    objects.set_on_change(std::sync::Arc::new(move |uid: &str| {
        let _ = tx.send(uid.to_string());
    }));

    // Nothing registered: no watch, and lookups find nothing.
    assert_eq!(objects.watches(), 0);
    let o = objects.clone();
    assert!(
        tokio::task::spawn_blocking(move || o.config_map("default", "app"))
            .await
            .unwrap()
            .is_none()
    );

    let p1 = pod(
        "p1",
        "uid-1",
        json!({
            "volumes": [{"name": "cfg", "configMap": {"name": "app"}}],
            "containers": [{"name": "c", "image": "x", "env": [
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}}
            ]}]
        }),
    );
    objects.register_pod(&p1);
    assert_eq!(objects.watches(), 2, "one watch per referenced object");
    let o = objects.clone();
    let cm = tokio::task::spawn_blocking(move || o.config_map("default", "app"))
        .await
        .unwrap()
        .expect("the ConfigMap, read through its watch");
    assert_eq!(cm.data.unwrap()["greeting"], "hello");
    let o = objects.clone();
    assert!(
        tokio::task::spawn_blocking(move || o.secret("default", "later"))
            .await
            .unwrap()
            .is_none()
    );

    // The Secret appears: the pod is woken and the lookup finds it.
    while rx.try_recv().is_ok() {}
    kubectl_ok(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "later",
            "--from-literal=k=v1",
        ],
    );
    woken(&mut rx, "uid-1").await;
    let o = objects.clone();
    eventually("the new Secret is served", move || {
        o.secret("default", "later")
            .and_then(|s| s.data)
            .is_some_and(|d| d["k"].0 == b"v1")
    })
    .await;

    // The ConfigMap is updated with kubectl apply: woken again, new contents served.
    apply(
        &s,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "app", "namespace": "default"},
               "data": {"greeting": "bonjour"}}),
    );
    woken(&mut rx, "uid-1").await;
    let o = objects.clone();
    eventually("the updated ConfigMap is served", move || {
        o.config_map("default", "app")
            .and_then(|c| c.data)
            .is_some_and(|d| d["greeting"] == "bonjour")
    })
    .await;

    // A second pod shares the ConfigMap: still one watch for it.
    let p2 = pod(
        "p2",
        "uid-2",
        json!({"containers": [{"name": "c", "image": "x",
                "envFrom": [{"configMapRef": {"name": "app"}}]}]}),
    );
    objects.register_pod(&p2);
    assert_eq!(objects.watches(), 2);
    // The first pod goes: the Secret's watch goes with it, the shared ConfigMap's stays.
    objects.unregister_pod(&p1);
    assert_eq!(objects.watches(), 1);
    assert_eq!(objects.secrets.referenced(), 0);
    // An updated pod that no longer references the ConfigMap releases it.
    let p2b = pod(
        "p2",
        "uid-2",
        json!({"containers": [{"name": "c", "image": "x"}]}),
    );
    objects.register_pod(&p2b);
    assert_eq!(objects.watches(), 0, "no pod references anything any more");

    // Immutable objects are read once and then not watched.
    apply(
        &s,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "frozen", "namespace": "default"},
               "immutable": true, "data": {"a": "1"}}),
    );
    let p3 = pod(
        "p3",
        "uid-3",
        json!({"volumes": [{"name": "f", "configMap": {"name": "frozen"}}],
               "containers": [{"name": "c", "image": "x"}]}),
    );
    objects.register_pod(&p3);
    let o = objects.clone();
    eventually("the immutable ConfigMap is served", move || {
        o.config_map("default", "frozen").is_some()
    })
    .await;
    let o = objects.clone();
    eventually("the immutable ConfigMap's watch stops", move || {
        o.watches() == 0
    })
    .await;
    assert_eq!(objects.config_maps.referenced(), 1);
    objects.unregister_pod(&p3);
    assert_eq!(objects.config_maps.referenced(), 0);
}
