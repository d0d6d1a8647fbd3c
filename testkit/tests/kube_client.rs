//! The test API server against the `kube` crate (kube-client and kube-runtime's watcher), the
//! client kubelet-rs uses: list/watch with relist on 410, optimistic concurrency, the CSR flow
//! with the bootstrap kubeconfig, TokenRequest and TokenReview, server-side apply, paging,
//! selectors, bookmarks and restarts.

mod common;

use std::path::Path;
use std::time::Duration;

use common::server_with;
use futures_util::StreamExt;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use kube::Client;
use serde_json::json;

async fn client(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

fn cm(name: &str, labels: serde_json::Value, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": data}))
        .unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

async fn next_event<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("an event within 30 s")
        .expect("stream open")
}

/// The next watcher event, skipping the errors it reports while it retries.
async fn next_label(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    loop {
        let e = next_event(rx).await;
        if !e.starts_with("error") {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_lists_watches_and_relists_after_410() {
    let mut s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(
        &PostParams::default(),
        &cm("a", json!({"app": "w"}), json!({"v": "1"})),
    )
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(cms.clone(), watcher::Config::default().labels("app=w"));
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let label = match ev {
                Ok(watcher::Event::Init) => "init".to_string(),
                Ok(watcher::Event::InitApply(o)) => {
                    format!("initapply {}", o.metadata.name.unwrap())
                }
                Ok(watcher::Event::InitDone) => "initdone".to_string(),
                Ok(watcher::Event::Apply(o)) => format!("apply {}", o.metadata.name.unwrap()),
                Ok(watcher::Event::Delete(o)) => format!("delete {}", o.metadata.name.unwrap()),
                Err(e) => format!("error {e}"),
            };
            if tx.send(label).is_err() {
                return;
            }
        }
    });
    assert_eq!(next_label(&mut rx).await, "init");
    assert_eq!(next_label(&mut rx).await, "initapply a");
    assert_eq!(next_label(&mut rx).await, "initdone");
    cms.create(
        &PostParams::default(),
        &cm("b", json!({"app": "w"}), json!({})),
    )
    .await
    .unwrap();
    assert_eq!(next_label(&mut rx).await, "apply b");
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    assert_eq!(next_label(&mut rx).await, "apply a");
    // Leaving the selector is a deletion for this watch.
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    assert_eq!(next_label(&mut rx).await, "delete b");
    // Move the global resourceVersion past what this watch has seen, then restart: the
    // restarted server has no history, so the watch's version is gone (410) and the watcher
    // lists again.
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    tokio::task::block_in_place(|| s.restart()).unwrap();
    assert_eq!(
        next_label(&mut rx).await,
        "init",
        "the watcher relists after 410"
    );
    assert_eq!(next_label(&mut rx).await, "initapply a");
    assert_eq!(next_label(&mut rx).await, "initdone");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_version_is_410_gone() {
    let s = server_with(&["--watch-cache-size=3"]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    for i in 0..6 {
        cms.create(
            &PostParams::default(),
            &cm(&format!("c{i}"), json!({}), json!({})),
        )
        .await
        .unwrap();
    }
    let stream = cms.watch(&WatchParams::default(), "1").await.unwrap();
    let mut stream = std::pin::pin!(stream);
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(WatchEvent::Error(status)))) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
            assert!(
                status.message.starts_with("too old resource version: 1"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // A paged list whose snapshot was compacted is 410 as well.
    let page = cms.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.clone().unwrap();
    for i in 0..4 {
        cms.delete(&format!("c{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let err = api_error(
        cms.list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_update_is_a_409_conflict() {
    let s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    cms.create(
        &PostParams::default(),
        &cm("c", json!({}), json!({"v": "1"})),
    )
    .await
    .unwrap();
    let old = cms.get("c").await.unwrap();
    let mut new = old.clone();
    new.data = Some([("v".to_string(), "2".to_string())].into());
    let updated = cms
        .replace("c", &PostParams::default(), &new)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        old.metadata.resource_version
    );
    let err = api_error(
        cms.replace("c", &PostParams::default(), &old)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A no-op write does not move the resourceVersion.
    let same = cms
        .replace("c", &PostParams::default(), &updated)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        updated.metadata.resource_version
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_flow_with_the_bootstrap_kubeconfig() {
    let s = server_with(&[]);
    let boot = client(&s.bootstrap_kubeconfig()).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:node-9");
    let request = p.serialize_request(&key).unwrap().pem().unwrap();
    let csrs: Api<CertificateSigningRequest> = Api::all(boot.clone());
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("node-csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: "kubernetes.io/kube-apiserver-client-kubelet".into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = csrs.create(&PostParams::default(), &csr).await.unwrap();
    let name = created.metadata.name.clone().unwrap();
    assert!(name.starts_with("node-csr-"));
    let token_id = s.bootstrap_token()[..6].to_string();
    assert_eq!(
        created.spec.username.as_deref(),
        Some(format!("system:bootstrap:{token_id}").as_str())
    );
    assert!(created
        .spec
        .groups
        .as_ref()
        .unwrap()
        .contains(&"system:bootstrappers".to_string()));
    // Watch the CSR (by name, as the kubelet does) until it is signed.
    let cert = kube::runtime::wait::await_condition(
        csrs.clone(),
        &name,
        |o: Option<&CertificateSigningRequest>| {
            o.and_then(|c| c.status.as_ref())
                .and_then(|s| s.certificate.as_ref())
                .is_some()
        },
    );
    let done = tokio::time::timeout(Duration::from_secs(20), cert)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let status = done.status.unwrap();
    assert_eq!(
        status.conditions.as_ref().unwrap()[0].reason.as_deref(),
        Some("AutoApproved")
    );
    let pem = String::from_utf8(status.certificate.unwrap().0).unwrap();
    // The bootstrap token cannot do anything else.
    let pods: Api<Pod> = Api::all(boot);
    assert_eq!(
        api_error(pods.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
    // The signed certificate authenticates as the node.
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca = std::fs::read_to_string(s.ca_cert()).unwrap();
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "n",
        "clusters": [{"name": "c", "cluster": {"server": s.url(), "certificate-authority-data": b64(&ca)}}],
        "users": [{"name": "u", "user": {"client-certificate-data": b64(&pem), "client-key-data": b64(&key.serialize_pem())}}],
        "contexts": [{"name": "n", "context": {"cluster": "c", "user": "u"}}],
    });
    let path = s.data_dir().join("node-9.kubeconfig");
    std::fs::write(&path, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    let node = client(&path).await;
    let nodes: Api<Node> = Api::all(node.clone());
    assert_eq!(
        api_error(nodes.get("node-9").await.unwrap_err()).code,
        404,
        "a node may read nodes"
    );
    let secrets: Api<Secret> = Api::namespaced(node, "kube-system");
    let err = api_error(
        secrets
            .delete("x", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert!(
        err.message
            .contains("User \"system:node:node-9\" cannot delete resource \"secrets\""),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_and_token_review() {
    let s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app"}})).unwrap(),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pod = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
                "serviceAccountName": "app", "schedulerName": "none",
                "containers": [{"name": "c", "image": "busybox"}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let request = |aud: Vec<String>, secs: i64, bound: bool| TokenRequest {
        spec: TokenRequestSpec {
            audiences: aud,
            expiration_seconds: Some(secs),
            bound_object_ref: bound.then(|| BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("p".into()),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let short = sas
        .create_token_request("app", &PostParams::default(), &request(vec![], 599, false))
        .await
        .unwrap_err();
    assert_eq!(api_error(short).code, 422);
    let tr = sas
        .create_token_request(
            "app",
            &PostParams::default(),
            &request(vec!["vault".into()], 3607, true),
        )
        .await
        .unwrap();
    let st = tr.status.unwrap();
    let left = st.expiration_timestamp.0.as_second() - jiff::Timestamp::now().as_second();
    assert!(
        (3590..=3608).contains(&left),
        "expirationTimestamp is now + expirationSeconds: {left}"
    );
    let reviews: Api<TokenReview> = Api::all(c.clone());
    let review = |token: String, aud: &str| {
        let reviews = reviews.clone();
        let aud = aud.to_string();
        async move {
            let r = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token),
                    audiences: Some(vec![aud]),
                },
                ..Default::default()
            };
            reviews
                .create(&PostParams::default(), &r)
                .await
                .unwrap()
                .status
                .unwrap()
        }
    };
    let ok = review(st.token.clone(), "vault").await;
    assert_eq!(ok.authenticated, Some(true));
    let user = ok.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:default:app")
    );
    let extra = user.extra.unwrap();
    assert_eq!(extra["authentication.kubernetes.io/pod-name"], ["p"]);
    assert_eq!(
        review(st.token.clone(), "other").await.authenticated,
        Some(false)
    );
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let gone = review(st.token, "vault").await;
    assert_eq!(
        gone.authenticated,
        Some(false),
        "a token bound to a deleted pod is rejected"
    );

    // An unbound token for the API's own audience is a bearer token for requests.
    let api_token = sas
        .create_token_request("app", &PostParams::default(), &request(vec![], 3600, false))
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let mut cfg = kube::Config::new(s.url().parse().unwrap());
    cfg.root_cert = Some(vec![pem_der(
        &std::fs::read_to_string(s.ca_cert()).unwrap(),
    )]);
    cfg.auth_info.token = Some(api_token.into());
    let as_sa = Client::try_from(cfg).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(as_sa, "default");
    let err = api_error(cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 403);
    assert!(
        err.message
            .contains("User \"system:serviceaccount:default:app\""),
        "{}",
        err.message
    );
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_owns_and_removes_fields() {
    let s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let apply = |data: serde_json::Value| {
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data}),
        )
    };
    let one = PatchParams::apply("one");
    cms.patch("cfg", &one, &apply(json!({"a": "1", "b": "2"})))
        .await
        .unwrap();
    let got = cms
        .patch("cfg", &one, &apply(json!({"a": "1"})))
        .await
        .unwrap();
    assert_eq!(
        got.data.unwrap().keys().collect::<Vec<_>>(),
        ["a"],
        "b was applied before and no longer is"
    );
    let two = PatchParams::apply("two");
    let err = api_error(
        cms.patch("cfg", &two, &apply(json!({"a": "9"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert!(
        err.message.contains("conflict with \"one\""),
        "{}",
        err.message
    );
    let forced = cms
        .patch("cfg", &two.clone().force(), &apply(json!({"a": "9"})))
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["a"], "9");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"two".to_string()), "{managers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_lists_and_selectors() {
    let s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    for (n, tier) in [
        ("a", "web"),
        ("b", "db"),
        ("c", "web"),
        ("d", "cache"),
        ("e", "web"),
    ] {
        cms.create(
            &PostParams::default(),
            &cm(n, json!({"tier": tier}), json!({})),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("tier").limit(2);
    loop {
        let page = cms.list(&lp).await.unwrap();
        assert!(page.items.len() <= 2);
        names.extend(page.items.into_iter().map(|o| o.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(t) if !t.is_empty() => lp = lp.continue_token(&t),
            _ => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    let pick = |sel: &'static str| {
        let cms = cms.clone();
        async move {
            cms.list(&ListParams::default().labels(sel))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|o| o.metadata.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(pick("tier in (db,cache)").await, ["b", "d"]);
    assert_eq!(pick("tier,tier notin (web),tier!=db").await, ["d"]);
    assert_eq!(pick("!tier").await, ["kube-root-ca.crt"]);
    let by_field = cms
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    let err = api_error(
        cms.list(&ListParams::default().fields("spec.nodeName=x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert!(
        err.message
            .contains("field label not supported: spec.nodeName"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_and_bookmarks() {
    let s = server_with(&["--watch-bookmark-interval=1"]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    cms.create(&PostParams::default(), &cm("x", json!({}), json!({})))
        .await
        .unwrap();
    let stream = watcher(cms.clone(), watcher::Config::default().streaming_lists());
    let mut stream = std::pin::pin!(stream);
    let mut seen = Vec::new();
    while seen.last() != Some(&"initdone".to_string()) {
        let ev = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("streaming list completes")
            .unwrap()
            .unwrap();
        seen.push(match ev {
            watcher::Event::Init => "init".into(),
            watcher::Event::InitApply(o) => o.metadata.name.unwrap(),
            watcher::Event::InitDone => "initdone".into(),
            other => format!("{other:?}"),
        });
    }
    assert!(
        seen.contains(&"x".to_string()) && seen.contains(&"kube-root-ca.crt".to_string()),
        "{seen:?}"
    );
    // A raw watch with bookmarks gets one within the configured interval.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let w = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap();
    let mut w = std::pin::pin!(w);
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_objects_and_resource_versions() {
    let mut s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let first = cms
        .create(
            &PostParams::default(),
            &cm("keep", json!({}), json!({"k": "v"})),
        )
        .await
        .unwrap();
    tokio::task::block_in_place(|| s.restart()).unwrap();
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let again = cms.get("keep").await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(again.metadata.uid, first.metadata.uid);
    let next = cms
        .create(&PostParams::default(), &cm("later", json!({}), json!({})))
        .await
        .unwrap();
    let v = |o: &ConfigMap| {
        o.metadata
            .resource_version
            .clone()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(
        v(&next) > v(&first),
        "resourceVersions continue after a restart"
    );
    // A stop with SIGTERM saves the state first.
    tokio::task::block_in_place(|| {
        s.stop().unwrap();
        s.start_again().unwrap();
    });
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    assert!(cms.get("later").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_are_forbidden_and_bad_tokens_unauthorized() {
    let s = server_with(&[]);
    let mut cfg = kube::Config::new(s.url().parse().unwrap());
    cfg.root_cert = Some(vec![pem_der(
        &std::fs::read_to_string(s.ca_cert()).unwrap(),
    )]);
    let anon = Client::try_from(cfg.clone()).unwrap();
    let pods: Api<Pod> = Api::all(anon.clone());
    let err = api_error(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
    let v = anon.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.33.0+testkit");
    cfg.auth_info.token = Some("not-a-token".to_string().into());
    let bad = Client::try_from(cfg).unwrap();
    let pods: Api<Pod> = Api::all(bad);
    let err = api_error(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_owner_references_and_propagation() {
    let s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let held: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    let r = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = r
        .left()
        .expect("the object is returned while a finalizer holds it");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert!(cms.get("held").await.is_ok());
    let err = api_error(
        cms.create(&PostParams::default(), &cm("held", json!({}), json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409, "the name is still taken");
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api_error(cms.get("held").await.unwrap_err()).code,
        404,
        "removing the last finalizer deletes it"
    );

    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!({}), json!({})))
        .await
        .unwrap();
    let owned = |name: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}})).unwrap()
    };
    cms.create(&PostParams::default(), &owned("child"))
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        api_error(cms.get("child").await.unwrap_err()).code,
        404,
        "background propagation"
    );

    let owner = cms
        .create(&PostParams::default(), &cm("owner", json!({}), json!({})))
        .await
        .unwrap();
    let orphan: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "orphan", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}]}}))
        .unwrap();
    cms.create(&PostParams::default(), &orphan).await.unwrap();
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    let kept = cms.get("orphan").await.unwrap();
    assert!(
        kept.metadata.owner_references.is_none(),
        "orphaned dependents lose the reference"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_node_deletion_and_access_reviews() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let mut s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    for name in ["a", "b"] {
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
                "nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    }
    pods.evict("a", &Default::default()).await.unwrap();
    let a = pods.get("a").await.unwrap();
    assert_eq!(
        a.metadata.deletion_grace_period_seconds,
        Some(30),
        "eviction is a graceful delete"
    );
    // Pods of a deleted node go away (podgc).
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(pods.get("a").await.unwrap_err()).code, 404);
    assert_eq!(api_error(pods.get("b").await.unwrap_err()).code, 404);

    let sars: Api<SubjectAccessReview> = Api::all(c.clone());
    let ask = |user: &str, groups: Vec<String>, verb: &str, resource: &str, sub: &str| {
        SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.into()),
                groups: Some(groups),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    resource: Some(resource.into()),
                    subresource: (!sub.is_empty()).then(|| sub.into()),
                    namespace: Some("default".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    };
    let allowed = |r: SubjectAccessReview| r.status.unwrap().allowed;
    let node_groups = vec![
        "system:nodes".to_string(),
        "system:authenticated".to_string(),
    ];
    let r = sars
        .create(
            &PostParams::default(),
            &ask(
                "system:node:n1",
                node_groups.clone(),
                "patch",
                "pods",
                "status",
            ),
        )
        .await
        .unwrap();
    assert!(allowed(r));
    let r = sars
        .create(
            &PostParams::default(),
            &ask("system:node:n1", node_groups, "create", "pods", "exec"),
        )
        .await
        .unwrap();
    assert!(!allowed(r));
    let r = sars
        .create(
            &PostParams::default(),
            &ask(
                "kube-apiserver-kubelet-client",
                vec!["system:masters".into()],
                "get",
                "nodes",
                "proxy",
            ),
        )
        .await
        .unwrap();
    assert!(allowed(r));

    // The admin token is a bearer token for the cluster admin.
    let mut cfg = kube::Config::new(s.url().parse().unwrap());
    cfg.root_cert = Some(vec![pem_der(
        &std::fs::read_to_string(s.ca_cert()).unwrap(),
    )]);
    cfg.auth_info.token = Some(s.admin_token().into());
    let admin = Client::try_from(cfg).unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin, "kube-system");
    let boot = secrets
        .list(&ListParams::default().fields("type=bootstrap.kubernetes.io/token"))
        .await
        .unwrap();
    assert_eq!(boot.items.len(), 1);
    // Requests are counted per user at /metrics.
    let (code, text) = tokio::task::block_in_place(|| s.get("/metrics")).unwrap();
    assert_eq!(code, 200);
    assert!(
        text.contains("testkit_apiserver_requests_total{user=\"kubernetes-admin\",verb=\"list\",resource=\"secrets\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_starts_empty_with_the_same_ca() {
    let mut s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    cms.create(&PostParams::default(), &cm("gone", json!({}), json!({})))
        .await
        .unwrap();
    let ca = std::fs::read_to_string(s.ca_cert()).unwrap();
    let status = tokio::task::block_in_place(|| s.stop()).unwrap().unwrap();
    assert!(status.success(), "SIGTERM is a clean exit: {status}");
    s.args_mut().push("--fresh".into());
    tokio::task::block_in_place(|| s.start_again()).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.ca_cert()).unwrap(),
        ca,
        "the CA is reused"
    );
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    assert_eq!(api_error(cms.get("gone").await.unwrap_err()).code, 404);
    assert!(
        cms.get("kube-root-ca.crt").await.is_ok(),
        "defaults are recreated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_an_older_version_replays_the_changes_since_at_once() {
    let s = server_with(&[]);
    let c = client(&s.admin_kubeconfig()).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for n in ["a", "b"] {
        cms.create(&PostParams::default(), &cm(n, json!({}), json!({})))
            .await
            .unwrap();
    }
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    // Nothing changes any more: the watch must still deliver what happened after `rv`.
    let w = cms.watch(&WatchParams::default(), &rv).await.unwrap();
    let mut w = std::pin::pin!(w);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("replayed without waiting for another change")
            .unwrap()
            .unwrap();
        seen.push(match ev {
            WatchEvent::Added(o) => format!("added {}", o.metadata.name.unwrap()),
            WatchEvent::Deleted(o) => format!("deleted {}", o.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["added a", "added b", "deleted a"]);
}
