//! Exec round trip (issue 13): how long one short command (`true`) takes from a client's
//! request to its exit status, through the kubelet API (TLS with a client certificate on
//! 127.0.0.1, a fresh connection per exec as kubectl makes) against raw CRI on the same
//! container, on the real containerd.
//!
//! Modes, in order: raw CRI `ExecSync` (the floor of `/run`); raw CRI `Exec` plus a SPDY
//! session straight to containerd's streaming URL (the floor of every streaming exec); `/run`;
//! `/exec` over SPDY (passed through); `/exec` over websocket `v4.channel.k8s.io` (passed
//! through); `/exec` over websocket `v5.channel.k8s.io` (translated to SPDY by the kubelet).
//! Each mode runs `--iters` times after 5 warm-up runs; reported: median, p90 and mean.
//!
//! Run: `cargo bench --bench exec_roundtrip -- --iters 200` (root, `scripts/runtime up`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::kubeletapi::KubeletApi;
use common::streaming::{upgrade, upgrade_runtime, ws_headers, ws_read_all, SpdyClient};
use common::{busybox_pod, Agent};
use kubelet_rs::server::streaming::spdy::Frame;
use proto::cri;

const WARMUP: usize = 5;

/// Reads a SPDY v4 exec session to its end; returns the status JSON on the error stream.
fn spdy_exec<S: std::io::Read + std::io::Write>(mut c: SpdyClient<S>) -> String {
    c.open(1, &[("streamtype", "error")]);
    c.open(3, &[("streamtype", "stdout")]);
    let mut status = Vec::new();
    while let Some(f) = c.next() {
        if let Frame::Data {
            stream: 1, data, ..
        } = f
        {
            status.extend_from_slice(&data);
        }
    }
    String::from_utf8_lossy(&status).into_owned()
}

fn spdy_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
    ]
}

fn measure(name: &str, iters: usize, mut f: impl FnMut() -> Result<(), String>) {
    for _ in 0..WARMUP {
        if let Err(e) = f() {
            println!("{name:<44} failed: {e}");
            return;
        }
    }
    let mut d = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        if let Err(e) = f() {
            println!("{name:<44} failed: {e}");
            return;
        }
        d.push(t.elapsed());
    }
    d.sort();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    let mean = d.iter().sum::<Duration>() / d.len() as u32;
    println!(
        "{name:<44} {:>8.2} {:>8.2} {:>8.2}",
        ms(d[d.len() / 2]),
        ms(d[d.len() * 9 / 10]),
        ms(mean)
    );
}

fn main() {
    let mut iters = 100usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--iters" {
            iters = args
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| {
                    eprintln!("--iters needs a positive number");
                    std::process::exit(2)
                });
        }
    }
    if !common::require_runtime() {
        eprintln!("skipped: the runtime is not up (scripts/runtime up)");
        return;
    }
    let (agent, pki) = Agent::start_secure("bench-exec", &[]);
    agent.write_manifest("app.yaml", &busybox_pod("app", "sleep 3600", ""));
    let pod = agent.wait_running("app", Duration::from_secs(90));
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cid = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .and_then(|s| s.split_once("://"))
        .map(|(_, id)| id.to_string())
        .unwrap_or_default();
    let api: KubeletApi = agent.kubelet_api(Some(&pki.client));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut client = rt
        .block_on(common::cri_client())
        .expect("a CRI client of the test containerd");

    println!("exec of `true`, {iters} runs per mode (ms)");
    println!("{:<44} {:>8} {:>8} {:>8}", "mode", "median", "p90", "mean");
    measure("CRI ExecSync (raw)", iters, || {
        let r = rt
            .block_on(client.exec_sync(cri::ExecSyncRequest {
                container_id: cid.clone(),
                cmd: vec!["true".into()],
                timeout: 10,
            }))
            .map_err(|e| e.to_string())?;
        (r.get_ref().exit_code == 0)
            .then_some(())
            .ok_or("nonzero exit".into())
    });
    measure("CRI Exec + SPDY to containerd (raw)", iters, || {
        let url = rt
            .block_on(client.exec(cri::ExecRequest {
                container_id: cid.clone(),
                cmd: vec!["true".into()],
                stdout: true,
                ..Default::default()
            }))
            .map_err(|e| e.to_string())?
            .into_inner()
            .url;
        let s = upgrade_runtime(&url, "v4.channel.k8s.io")?;
        let status = spdy_exec(SpdyClient::new(s, false));
        status.contains("Success").then_some(()).ok_or(status)
    });
    measure("kubelet /run (ExecSync)", iters, || {
        let r = api
            .request(
                "POST",
                &format!("/run/default/{name}/main?cmd=true"),
                &[],
                b"",
            )
            .map_err(|e| e.to_string())?;
        (r.status == 200).then_some(()).ok_or(r.text())
    });
    let path = format!("/exec/default/{name}/main?command=true&output=1");
    measure("kubelet /exec SPDY (pass-through)", iters, || {
        let (code, head, s) = upgrade(&api, "POST", &path, &spdy_headers());
        if code != 101 {
            return Err(head);
        }
        let status = spdy_exec(SpdyClient::new(s, false));
        status.contains("Success").then_some(()).ok_or(status)
    });
    for (label, protocol) in [
        (
            "kubelet /exec websocket v4 (pass-through)",
            "v4.channel.k8s.io",
        ),
        (
            "kubelet /exec websocket v5 (translated)",
            "v5.channel.k8s.io",
        ),
    ] {
        measure(label, iters, || {
            let (code, head, mut s) = upgrade(&api, "GET", &path, &ws_headers(protocol));
            if code != 101 {
                return Err(head);
            }
            let session = ws_read_all(&mut s);
            (session.status()["status"] == "Success")
                .then_some(())
                .ok_or(session.text(3))
        });
    }
    drop(agent);
}
