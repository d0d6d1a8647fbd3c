//! Image GC on the real runtime: an unused image is removed from containerd, the images in use
//! (busybox, run by a pod) and the pause image stay.
//!
//! The test builds a throwaway image (busybox's OCI layout with one extra config label, so it
//! has an ID of its own and deleting it never touches busybox), pushes it to the local
//! registry, pulls it through CRI, and starts an agent whose thresholds force collection
//! (`--image-gc-high-threshold 1 --image-gc-low-threshold 0 --minimum-image-ttl-duration 1s`).
//! Whatever happens, the throwaway image is removed from the registry and the runtime at the
//! end.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{busybox_pod, http_get, require_runtime, Agent, BUSYBOX, CONTAINERD_SOCK};
use proto::cri;

const PAUSE: &str = "127.0.0.1:5000/kubelet-rs/pause:3.10";
const BUSYBOX_LAYOUT: &str = "/var/lib/kubelet-rs/images/busybox";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn images() -> cri::ImageClient {
    let ch = proto::cri::connect(Path::new(CONTAINERD_SOCK))
        .await
        .unwrap();
    cri::ImageClient::new(ch)
}

fn image_present(image: &str) -> bool {
    block_on(async {
        images()
            .await
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .is_some()
    })
}

/// The throwaway image: removed from the registry and the runtime when dropped.
struct Throwaway {
    reference: String,
    _dir: tempfile::TempDir,
}

impl Throwaway {
    fn build(tag: &str) -> Throwaway {
        assert!(
            Path::new(BUSYBOX_LAYOUT).join("index.json").exists(),
            "{BUSYBOX_LAYOUT} is missing: run `scripts/runtime up`"
        );
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        run(Command::new("cp")
            .arg("-a")
            .arg(BUSYBOX_LAYOUT)
            .arg(&layout));
        let image = format!("{}:latest", layout.display());
        run(Command::new("umoci").args([
            "config",
            "--image",
            &image,
            "--config.label",
            &format!("kubelet-rs.test.gc={tag}"),
        ]));
        let reference = format!("127.0.0.1:5000/kubelet-rs/gc-probe:{tag}");
        run(Command::new("skopeo").args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{image}"),
            &format!("docker://{reference}"),
        ]));
        Throwaway {
            reference,
            _dir: dir,
        }
    }

    fn pull(&self) {
        block_on(async {
            images()
                .await
                .pull_image(cri::PullImageRequest {
                    image: Some(cri::ImageSpec {
                        image: self.reference.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .unwrap()
        });
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = Command::new("skopeo")
            .args([
                "delete",
                "--tls-verify=false",
                &format!("docker://{}", self.reference),
            ])
            .output();
        let r = self.reference.clone();
        block_on(async move {
            let _ = images()
                .await
                .remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: r,
                        ..Default::default()
                    }),
                })
                .await;
        });
    }
}

#[test]
fn image_gc_removes_an_unused_image_and_keeps_those_in_use() {
    if !require_runtime() {
        return;
    }
    let throwaway = Throwaway::build(&common::unique("gc"));
    let agent = Agent::start_with(
        "gc-images",
        &[
            "--image-gc-high-threshold",
            "1",
            "--image-gc-low-threshold",
            "0",
            "--minimum-image-ttl-duration",
            "1s",
            // Only the memory threshold: no disk-pressure evictions on a full test machine.
            "--eviction-hard",
            "memory.available<100Mi",
        ],
    );
    // busybox in use before the first collection can take it.
    agent.write_manifest("keep.yaml", &busybox_pod("keep", "exec sleep 3600", ""));
    agent.wait_running("keep", Duration::from_secs(60));

    throwaway.pull();
    assert!(image_present(&throwaway.reference));
    let deadline = Instant::now() + Duration::from_secs(120);
    while image_present(&throwaway.reference) {
        assert!(
            Instant::now() < deadline,
            "the unused image was not collected\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(image_present(BUSYBOX), "the image in use stays");
    assert!(image_present(PAUSE), "the pause image stays");
    let p = agent.pod("keep").unwrap();
    assert_eq!(p["status"]["phase"], "Running", "{p}");
    // Collections could not get usage down to 0%: the kubelet's event says so.
    let (_, events) = http_get(agent.read_only_port, "/events").unwrap();
    assert!(events.contains("\"FreeDiskSpaceFailed\""), "{events}");
    assert!(
        agent.log_text().contains("removing image to free bytes"),
        "{}",
        agent.log_tail()
    );
}
