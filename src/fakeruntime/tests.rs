//! Unit tests of the fake runtime through a real gRPC client on a Unix socket.

use std::collections::HashMap;
use std::time::Duration;

use proto::cri::{self, ImageClient, RuntimeClient};
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use super::state::{hex_id, State};
use super::*;

struct Fixture {
    fake: FakeRuntime,
    rt: RuntimeClient,
    img: ImageClient,
    _task: JoinHandle<Result<(), FakeError>>,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("fake.sock");
    let (fake, task) = serve(&sock).await.unwrap();
    let ch = proto::cri::connect(&sock).await.unwrap();
    Fixture {
        fake,
        rt: RuntimeClient::new(ch.clone()),
        img: ImageClient::new(ch),
        _task: task,
        _dir: dir,
    }
}

fn sandbox_config(name: &str, uid: &str, attempt: u32) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt,
        }),
        log_directory: format!("/var/log/pods/default_{name}_{uid}"),
        labels: HashMap::from([
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ("node".to_string(), "n1".to_string()),
        ]),
        ..Default::default()
    }
}

fn container_config(name: &str, image: &str, uid: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ("io.kubernetes.container.name".to_string(), name.to_string()),
        ]),
        mounts: vec![cri::Mount {
            container_path: "/etc/hosts".into(),
            host_path: "/tmp/hosts".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn run_pod(f: &mut Fixture, name: &str, uid: &str) -> (String, String) {
    let sb =
        f.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config(name, uid, 0)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let c =
        f.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(container_config("main", "busybox:1.35", uid)),
            sandbox_config: Some(sandbox_config(name, uid, 0)),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    f.rt.start_container(cri::StartContainerRequest {
        container_id: c.clone(),
    })
    .await
    .unwrap();
    (sb, c)
}

async fn cstatus(f: &mut Fixture, id: &str) -> Result<cri::ContainerStatus, Status> {
    f.rt.container_status(cri::ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .map(|r| r.into_inner().status.unwrap())
}

#[test]
fn ids_are_64_hex_distinct_and_deterministic() {
    let a: Vec<String> = (1..1000).map(hex_id).collect();
    assert!(a
        .iter()
        .all(|i| i.len() == 64 && i.chars().all(|c| c.is_ascii_hexdigit())));
    let short: std::collections::HashSet<&str> = a.iter().map(|i| &i[..12]).collect();
    assert_eq!(short.len(), a.len(), "12-character prefixes collide");
    assert_eq!(hex_id(7), hex_id(7));
}

#[test]
fn image_names_normalize_like_docker() {
    assert_eq!(
        normalize_image("busybox"),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(normalize_image("x/y:1"), "docker.io/x/y:1");
    assert_eq!(
        normalize_image("127.0.0.1:5000/k/pause:3.10"),
        "127.0.0.1:5000/k/pause:3.10"
    );
    assert_eq!(normalize_image("localhost/a"), "localhost/a:latest");
    assert_eq!(
        normalize_image("a@sha256:00"),
        "docker.io/library/a@sha256:00"
    );
    assert_eq!(normalize_image("sha256:abc"), "sha256:abc");
}

#[test]
fn pod_ips_are_handed_out_in_order_within_the_range() {
    let mut s = State::new();
    assert_eq!(s.next_pod_ip(), "10.250.0.1");
    assert_eq!(s.next_pod_ip(), "10.250.0.2");
    s.next_ip = 254;
    assert_eq!(s.next_pod_ip(), "10.250.1.1");
    s.next_ip = 256 * 254 - 1;
    assert_eq!(s.next_pod_ip(), "10.250.255.254");
    assert_eq!(s.next_pod_ip(), "10.250.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_and_container_lifecycle() {
    let mut f = fixture().await;
    let v =
        f.rt.version(cri::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
    assert_eq!(v.runtime_name, "fake");
    assert_eq!(v.runtime_api_version, "v1");
    f.fake.preload_image("busybox:1.35");
    let (sb, c) = run_pod(&mut f, "p", "u1").await;
    assert_eq!(sb.len(), 64);

    let st =
        f.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sb.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    assert!(st.network.as_ref().unwrap().ip.starts_with("10.250."));
    assert_eq!(st.labels["io.kubernetes.pod.uid"], "u1");
    assert_eq!(st.metadata.as_ref().unwrap().name, "p");
    assert!(st.created_at > 0);
    assert!(st.linux.is_some());

    let cs = cstatus(&mut f, &c).await.unwrap();
    assert_eq!(cs.state, cri::ContainerState::ContainerRunning as i32);
    assert!(cs.started_at >= cs.created_at && cs.started_at > 0);
    assert_eq!(
        cs.image.as_ref().unwrap().image,
        "docker.io/library/busybox:1.35"
    );
    assert!(
        cs.image_ref
            .starts_with("docker.io/library/busybox@sha256:"),
        "{}",
        cs.image_ref
    );
    assert!(cs.image_id.starts_with("sha256:"));
    assert_eq!(cs.log_path, "/var/log/pods/default_p_u1/main/0.log");
    assert_eq!(cs.mounts.len(), 1);
    assert_eq!(cs.labels["io.kubernetes.container.name"], "main");

    // A test makes the process exit; a second exit is refused.
    f.fake.exit_container(&c, 3).unwrap();
    let cs = cstatus(&mut f, &c).await.unwrap();
    assert_eq!(cs.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!((cs.exit_code, cs.reason.as_str()), (3, "Error"));
    assert!(cs.finished_at > cs.started_at);
    assert!(matches!(
        f.fake.exit_container(&c, 1),
        Err(FakeError::NotRunning { .. })
    ));
    assert!(matches!(
        f.fake.exit_container("nope", 1),
        Err(FakeError::NoSuchContainer { .. })
    ));

    // Stopping the sandbox kills what still runs (137) and makes it NOTREADY.
    let c2 =
        f.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(container_config("side", "busybox:1.35", "u1")),
            sandbox_config: Some(sandbox_config("p", "u1", 0)),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    f.rt.start_container(cri::StartContainerRequest {
        container_id: c2.clone(),
    })
    .await
    .unwrap();
    f.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    })
    .await
    .unwrap();
    let cs2 = cstatus(&mut f, &c2).await.unwrap();
    assert_eq!(
        (cs2.state, cs2.exit_code),
        (cri::ContainerState::ContainerExited as i32, 137)
    );
    let err =
        f.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(container_config("late", "busybox:1.35", "u1")),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err:?}");

    // Removal takes the containers with it and is idempotent.
    f.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        cstatus(&mut f, &c).await.unwrap_err().code(),
        Code::NotFound
    );
    f.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sb.clone(),
    })
    .await
    .unwrap();
    f.rt.remove_container(cri::RemoveContainerRequest {
        container_id: c.clone(),
    })
    .await
    .unwrap();
    let err =
        f.rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: sb })
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(f.fake.sandboxes().is_empty() && f.fake.containers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_names_and_state_rules() {
    let mut f = fixture().await;
    f.fake.preload_image("busybox:1.35");
    let (sb, c) = run_pod(&mut f, "p", "u1").await;
    // Starting twice is refused; stopping gives 137/Error; stopping again is a no-op.
    let err =
        f.rt.start_container(cri::StartContainerRequest {
            container_id: c.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: c.clone(),
        timeout: 30,
    })
    .await
    .unwrap();
    let cs = cstatus(&mut f, &c).await.unwrap();
    assert_eq!((cs.exit_code, cs.reason.as_str()), (137, "Error"));
    f.rt.stop_container(cri::StopContainerRequest {
        container_id: c.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    // The container name stays reserved until the container is removed.
    let again = cri::CreateContainerRequest {
        pod_sandbox_id: sb.clone(),
        config: Some(container_config("main", "busybox:1.35", "u1")),
        sandbox_config: Some(sandbox_config("p", "u1", 0)),
    };
    let err = f.rt.create_container(again.clone()).await.unwrap_err();
    assert!(err.message().contains("is reserved for"), "{err:?}");
    f.rt.remove_container(cri::RemoveContainerRequest { container_id: c })
        .await
        .unwrap();
    f.rt.create_container(again).await.unwrap();
    // So is the sandbox name, per attempt.
    let err =
        f.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config("p", "u1", 0)),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("is reserved for"), "{err:?}");
    f.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(sandbox_config("p", "u1", 1)),
        runtime_handler: String::new(),
    })
    .await
    .unwrap();
    // A missing image fails CreateContainer with NotFound.
    let err =
        f.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb,
            config: Some(container_config("x", "nothere:1", "u1")),
            sandbox_config: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Missing objects.
    assert_eq!(
        cstatus(&mut f, "0123").await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_follow_containerd() {
    let mut f = fixture().await;
    f.fake.preload_image("busybox:1.35");
    let (sb1, c1) = run_pod(&mut f, "a", "ua").await;
    let (_sb2, c2) = run_pod(&mut f, "b", "ub").await;
    f.fake.exit_container(&c2, 0).unwrap();
    let list = |filter: cri::ContainerFilter| {
        let mut rt = f.rt.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_containers(cri::ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![c1.clone(), c2.clone()];
    both.sort();
    assert_eq!(list(cri::ContainerFilter::default()).await, both);
    let by_label = cri::ContainerFilter {
        label_selector: HashMap::from([("io.kubernetes.pod.uid".to_string(), "ua".to_string())]),
        ..Default::default()
    };
    assert_eq!(list(by_label).await, vec![c1.clone()]);
    let two_labels = cri::ContainerFilter {
        label_selector: HashMap::from([
            ("io.kubernetes.pod.uid".to_string(), "ua".to_string()),
            (
                "io.kubernetes.container.name".to_string(),
                "other".to_string(),
            ),
        ]),
        ..Default::default()
    };
    assert!(list(two_labels).await.is_empty());
    let running = cri::ContainerFilter {
        state: Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    };
    assert_eq!(list(running).await, vec![c1.clone()]);
    let by_sandbox_prefix = cri::ContainerFilter {
        pod_sandbox_id: sb1[..12].to_string(),
        ..Default::default()
    };
    assert_eq!(list(by_sandbox_prefix).await, vec![c1.clone()]);
    let by_id_prefix = cri::ContainerFilter {
        id: c2[..8].to_string(),
        ..Default::default()
    };
    assert_eq!(list(by_id_prefix).await, vec![c2.clone()]);
    let unknown_id = cri::ContainerFilter {
        id: "ffffffffffffffffffff".into(),
        ..Default::default()
    };
    assert!(list(unknown_id).await.is_empty());

    let sandboxes =
        f.rt.list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: HashMap::from([("node".to_string(), "n1".to_string())]),
                state: Some(cri::PodSandboxStateValue {
                    state: cri::PodSandboxState::SandboxReady as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(sandboxes.len(), 2);
    assert!(sandboxes[0].created_at < sandboxes[1].created_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_status_pull_list_remove() {
    let mut f = fixture().await;
    let spec = |i: &str| {
        Some(cri::ImageSpec {
            image: i.into(),
            ..Default::default()
        })
    };
    let st = f
        .img
        .image_status(cri::ImageStatusRequest {
            image: spec("busybox"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_none(), "a missing image is an empty answer");
    let pulled = f
        .img
        .pull_image(cri::PullImageRequest {
            image: spec("busybox"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert!(
        pulled.starts_with("sha256:") && pulled.len() == 71,
        "{pulled}"
    );
    let img = f
        .img
        .image_status(cri::ImageStatusRequest {
            image: spec("docker.io/library/busybox:latest"),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(img.id, pulled);
    assert_eq!(
        img.repo_tags,
        vec!["docker.io/library/busybox:latest".to_string()]
    );
    // Pulling again keeps the ID; status by ID works.
    let again = f
        .img
        .pull_image(cri::PullImageRequest {
            image: spec("busybox:latest"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    assert_eq!(again, pulled);
    f.fake
        .preload_image_with_size("127.0.0.1:5000/x/pause:3.10", 1000);
    let all = f
        .img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(all.len(), 2);
    let fs = f
        .img
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert_eq!(
        usage.used_bytes.as_ref().unwrap().value,
        DEFAULT_IMAGE_SIZE + 1000
    );
    assert_eq!(usage.inodes_used.as_ref().unwrap().value, 2);
    f.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&pulled),
        })
        .await
        .unwrap();
    f.img
        .remove_image(cri::RemoveImageRequest {
            image: spec(&pulled),
        })
        .await
        .unwrap();
    assert_eq!(
        f.fake.images(),
        vec!["127.0.0.1:5000/x/pause:3.10".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_down_and_unimplemented() {
    let mut f = fixture().await;
    // Fail the next two pulls of one image only.
    f.fake.inject(
        Fault::fail(Op::PullImage, Code::NotFound)
            .times(2)
            .matching(Matcher::image("busybox"))
            .message("pull access denied"),
    );
    let pull = |i: &str| cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: i.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    f.img.pull_image(pull("other:1")).await.unwrap();
    for _ in 0..2 {
        let e = f
            .img
            .pull_image(pull("docker.io/library/busybox:latest"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (Code::NotFound, "pull access denied")
        );
    }
    f.img.pull_image(pull("busybox")).await.unwrap();
    assert_eq!(f.fake.calls(Op::PullImage), 4);

    // A fault on every call, removed by its ID.
    let id = f
        .fake
        .inject(Fault::fail(Op::ListContainers, Code::Internal));
    let e =
        f.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    f.fake.remove_rule(id);
    f.rt.list_containers(cri::ListContainersRequest::default())
        .await
        .unwrap();

    // Down: everything is Unavailable, then back.
    f.fake.set_down(true);
    let e =
        f.rt.version(cri::VersionRequest::default())
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let e = f
        .img
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    f.fake.set_down(false);
    f.rt.version(cri::VersionRequest::default()).await.unwrap();

    let e =
        f.rt.get_container_events(cri::GetEventsRequest::default())
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e =
        f.rt.list_container_stats(cri::ListContainerStatsRequest::default())
            .await
            .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);

    let st =
        f.rt.status(cri::StatusRequest::default())
            .await
            .unwrap()
            .into_inner();
    let conds = st.status.unwrap().conditions;
    assert!(conds.iter().all(|c| c.status), "{conds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_hold_only_matching_calls_until_released() {
    let f = fixture().await;
    f.fake.inject(
        Fault::delay(Op::RunPodSandbox, Duration::from_secs(3600))
            .matching(Matcher::pod_name("slow")),
    );
    let mut rt = f.rt.clone();
    let slow = tokio::spawn(async move {
        rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config("slow", "us", 0)),
            runtime_handler: String::new(),
        })
        .await
    });
    let mut rt = f.rt.clone();
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(sandbox_config("fast", "uf", 0)),
        runtime_handler: String::new(),
    })
    .await
    .unwrap();
    while f.fake.delayed_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        f.fake.sandboxes().len(),
        1,
        "the slow sandbox is still held"
    );
    assert!(!slow.is_finished());
    f.fake.release_delays();
    slow.await.unwrap().unwrap();
    let names: Vec<String> = f.fake.sandboxes().into_iter().map(|s| s.pod_name).collect();
    assert_eq!(names, vec!["fast".to_string(), "slow".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_rules_and_exec() {
    let mut f = fixture().await;
    f.fake.preload_image("busybox:1.35");
    f.fake
        .on_start(Matcher::pod_name("crash"), Lifecycle::exit(1));
    f.fake.on_start(
        Matcher::pod_name("oom"),
        Lifecycle::Exit {
            code: 137,
            after: Duration::from_millis(1),
            reason: Some("OOMKilled".into()),
        },
    );
    let (_, c) = run_pod(&mut f, "crash", "u1").await;
    let cs = cstatus(&mut f, &c).await.unwrap();
    assert_eq!(
        (cs.state, cs.exit_code),
        (cri::ContainerState::ContainerExited as i32, 1)
    );
    let (_, c) = run_pod(&mut f, "oom", "u2").await;
    let cs = loop {
        let cs = cstatus(&mut f, &c).await.unwrap();
        if cs.state == cri::ContainerState::ContainerExited as i32 {
            break cs;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!((cs.exit_code, cs.reason.as_str()), (137, "OOMKilled"));

    let (_, c) = run_pod(&mut f, "ok", "u3").await;
    f.fake.set_exec(|info, cmd| cri::ExecSyncResponse {
        stdout: format!("{} {}", info.container_name, cmd.join(" ")).into_bytes(),
        stderr: Vec::new(),
        exit_code: 7,
    });
    let r =
        f.rt.exec_sync(cri::ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec!["true".into()],
            timeout: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.exit_code, r.stdout.as_slice()),
        (7, b"main true".as_slice())
    );
    f.fake.exit_container(&c, 0).unwrap();
    let e =
        f.rt.exec_sync(cri::ExecSyncRequest {
            container_id: c,
            cmd: vec!["true".into()],
            timeout: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unknown);
}

#[test]
fn serve_on_thread_reports_cpu_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("t.sock");
    let fake = FakeRuntime::new();
    let t = fake.serve_on_thread(&sock).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ch = proto::cri::lazy_channel(&sock);
        let mut c = RuntimeClient::new(ch);
        for _ in 0..20 {
            c.version(cri::VersionRequest::default()).await.unwrap();
        }
    });
    assert!(t.cpu_time() > Duration::ZERO);
    assert_eq!(fake.calls(Op::Version), 20);
    drop(t);
    drop(rt);
}
