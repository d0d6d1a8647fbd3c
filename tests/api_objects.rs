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
        if tokio::task::spawn_blocking(g).await.unwrap() {
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

/// The claims of a JWT (its middle part).
fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .expect("base64url claims");
    serde_json::from_slice(&payload).expect("JSON claims")
}

/// Who the test API server says a token belongs to (TokenReview through kubectl).
fn token_review(s: &TestApiServer, token: &str, audiences: &[&str]) -> serde_json::Value {
    let mut review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "spec": {"token": token}});
    if !audiences.is_empty() {
        review["spec"]["audiences"] = json!(audiences);
    }
    let out = s.kubectl_with_stdin(
        &["create", "-f", "-", "-o", "json"],
        Some(&review.to_string()),
    );
    assert!(out.success(), "TokenReview: {}", out.stderr);
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()["status"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_tokens_are_bound_cached_and_refreshed_at_80_percent() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::SystemTime;

    let s = TestApiServer::start().expect("test-apiserver starts");
    apply(
        &s,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "tok", "namespace": "default"},
               "spec": {"nodeName": "node-a", "automountServiceAccountToken": false,
                        "containers": [{"name": "c", "image": "x"}]}}),
    );
    let api_pod: Pod =
        serde_json::from_str(&s.kubectl(&["get", "pod", "tok", "-o", "json"]).stdout).unwrap();
    let client = kubelet_rs::apiclient::connect(&s.node_kubeconfig("node-a").unwrap())
        .await
        .expect("node client");
    // A clock the test moves: seconds added to the real time.
    let skew = Arc::new(AtomicU64::new(0));
    let sk = skew.clone();
    let tokens = Arc::new(kubelet_rs::tokens::TokenManager::with_clock(
        client.clone(),
        Arc::new(move || SystemTime::now() + Duration::from_secs(sk.load(Ordering::Relaxed))),
    ));
    let objects = Arc::new(ApiObjects::with_tokens(client, tokens.clone()));
    let get = |o: Arc<ApiObjects>, p: Pod| async move {
        tokio::task::spawn_blocking(move || o.service_account_token(&p, "vault", Some(3600)))
            .await
            .unwrap()
            .expect("a token")
    };

    let t1 = get(objects.clone(), api_pod.clone()).await;
    let claims = jwt_claims(&t1);
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["aud"], json!(["vault"]));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "tok");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    let review = token_review(&s, &t1, &["vault"]);
    assert_eq!(review["authenticated"], true, "{review}");
    assert_eq!(
        review["user"]["username"],
        "system:serviceaccount:default:default"
    );

    // Cached while young.
    assert_eq!(get(objects.clone(), api_pod.clone()).await, t1);
    skew.store(2000, Ordering::Relaxed);
    assert_eq!(get(objects.clone(), api_pod.clone()).await, t1);
    // Past 80 % of its life: a new token (issued at least a second later).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    skew.store(2900, Ordering::Relaxed);
    let t2 = get(objects.clone(), api_pod.clone()).await;
    assert_ne!(t2, t1);
    assert!(jwt_claims(&t2)["iat"].as_i64() > claims["iat"].as_i64());
    assert_eq!(token_review(&s, &t2, &["vault"])["authenticated"], true);

    // The pod goes: its tokens go from the cache.
    assert_eq!(tokens.cached(), 1);
    objects.unregister_pod(&api_pod);
    assert_eq!(tokens.cached(), 0);
}

// ---------------------------------------------------------------------------------------------
// End to end: kubelet-rs on the real containerd, pods from the API server (kubectl).
// ---------------------------------------------------------------------------------------------

#[path = "common/mod.rs"]
mod common;

mod e2e {
    use std::time::Duration;

    use super::common::apiserver::Cluster;
    use super::common::*;
    use serde_json::{json, Value};

    const START: Duration = Duration::from_secs(90);

    /// The agent's Node (Ready), until the agent registers its own.
    fn apply(cluster: &Cluster, v: Value) {
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &v.to_string());
        assert!(out.success(), "kubectl apply: {}", out.stderr);
    }

    fn config_map(greeting: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "app-config", "namespace": "default"},
               "data": {"greeting": greeting}})
    }

    /// A Secret-backed env var (the Secret does not exist yet) and a ConfigMap volume: the
    /// container waits in CreateContainerConfigError with the kubelet's message, starts once
    /// the Secret is created, sees the value, and the volume follows `kubectl apply` of the
    /// ConfigMap in place.
    #[test]
    fn secret_env_and_config_map_volume_from_the_api() {
        if !require_runtime() {
            return;
        }
        let cluster = Cluster::start();
        let agent = cluster.agent("api-objects", &[]);
        cluster.wait_node_ready(&agent.node);
        apply(&cluster, config_map("hello"));
        apply(
            &cluster,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "objs", "namespace": "default"},
                "spec": {
                    "nodeName": agent.node,
                    "terminationGracePeriodSeconds": 2,
                    "automountServiceAccountToken": false,
                    "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}],
                    "containers": [{
                        "name": "main", "image": BUSYBOX,
                        "command": ["sh", "-c", "echo S=$S; exec sleep 3600"],
                        "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "pw"}}}],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]
                    }]
                }
            }),
        );
        let uid = cluster.get_json(&["pod", "objs"]).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();

        let waiting = agent.wait(
            "CreateContainerConfigError for the missing Secret",
            START,
            || {
                let p = agent.pod_named("objs")?;
                let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
                (w["reason"] == "CreateContainerConfigError").then_some(w)
            },
        );
        assert_eq!(waiting["message"], "secret \"app-secret\" not found");

        let out = cluster.kubectl(&[
            "create",
            "secret",
            "generic",
            "app-secret",
            "--from-literal=pw=hunter2",
        ]);
        assert!(out.success(), "{}", out.stderr);
        agent.wait("the pod running once its Secret exists", START, || {
            let p = agent.pod_named("objs")?;
            p["status"]["containerStatuses"][0]["state"]["running"]
                .is_object()
                .then_some(())
        });
        let log = std::path::PathBuf::from(format!("/var/log/pods/default_objs_{uid}/main/0.log"));
        agent.wait("the container's output", Duration::from_secs(30), || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|l| l.contains("S=hunter2"))
        });

        let file = agent
            .root
            .join("pods")
            .join(&uid)
            .join("volumes/kubernetes.io~configmap/cfg/greeting");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello");
        apply(&cluster, config_map("bonjour"));
        agent.wait(
            "the ConfigMap volume updated in place",
            Duration::from_secs(60),
            || {
                std::fs::read_to_string(&file)
                    .ok()
                    .filter(|s| s == "bonjour")
            },
        );
        // The pod goes (forced, so it leaves the API at once): the watches of its Secret and
        // ConfigMap are stopped.
        let out = cluster.kubectl(&[
            "delete",
            "pod",
            "objs",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ]);
        assert!(out.success(), "{}", out.stderr);
        for name in ["name=app-secret", "name=app-config"] {
            agent.wait(
                &format!("the watch of {name} stopped"),
                Duration::from_secs(60),
                || {
                    agent
                        .log_text()
                        .lines()
                        .any(|l| l.contains("watch stopped") && l.contains(name))
                        .then_some(())
                },
            );
        }
    }

    /// A pod with the service-account volume the admission adds (`kube-api-access-*`:
    /// a projected token, `kube-root-ca.crt`'s `ca.crt` and the namespace) runs, and the token
    /// in it is one the API server issued for the pod.
    #[test]
    fn the_service_account_volume_holds_a_token_the_server_accepts() {
        if !require_runtime() {
            return;
        }
        let cluster = Cluster::start();
        let agent = cluster.agent("api-satoken", &[]);
        cluster.wait_node_ready(&agent.node);
        apply(
            &cluster,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "sa", "namespace": "default"},
                "spec": {
                    "nodeName": agent.node,
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "main", "image": BUSYBOX,
                        "command": ["sh", "-c", "cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; exec sleep 3600"]}]
                }
            }),
        );
        let api = cluster.get_json(&["pod", "sa"]).unwrap();
        let uid = api["metadata"]["uid"].as_str().unwrap().to_string();
        let volume = api["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|v| {
                v["name"]
                    .as_str()
                    .filter(|n| n.starts_with("kube-api-access-"))
            })
            .expect("the ServiceAccount admission's volume")
            .to_string();
        agent.wait("the pod running with its token volume", START, || {
            let p = agent.pod_named("sa")?;
            p["status"]["containerStatuses"][0]["state"]["running"]
                .is_object()
                .then_some(())
        });
        let dir = agent
            .root
            .join("pods")
            .join(&uid)
            .join("volumes/kubernetes.io~projected")
            .join(&volume);
        let token = std::fs::read_to_string(dir.join("token")).expect("token file");
        let out = cluster.kubectl_stdin(
            &["create", "-f", "-", "-o", "json"],
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                    "spec": {"token": token}})
            .to_string(),
        );
        assert!(out.success(), "{}", out.stderr);
        let review: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(review["status"]["authenticated"], true, "{review}");
        assert_eq!(
            review["status"]["user"]["username"],
            "system:serviceaccount:default:default"
        );
        assert_eq!(
            review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"],
            json!([uid])
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("ca.crt")).unwrap(),
            std::fs::read_to_string(cluster.api.ca_cert()).unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("namespace")).unwrap(),
            "default"
        );
        cluster.kubectl(&["delete", "pod", "sa", "--wait=false"]);
    }
}
