//! The sandbox config of a pod (`kuberuntime_sandbox.go`): identity, hostname, DNS (computed by
//! `dns`), port mappings, log directory, namespaces, seccomp, and the pod cgroup as the cgroup
//! parent.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use proto::cri;

use super::labels;

/// What the sandbox config needs besides the pod.
#[derive(Debug, Clone)]
pub struct SandboxContext<'a> {
    /// The agent's node name (owner label).
    pub node: &'a str,
    /// The pod cgroup (cgroupfs syntax) the sandbox and containers go under.
    pub cgroup_parent: String,
    /// Root of pod log directories, `/var/log/pods`.
    pub log_root: &'a Path,
    /// The pod's resolver settings ([`super::dns::pod_dns`]); the runtime writes them into
    /// the pod's `/etc/resolv.conf`.
    pub dns: cri::DnsConfig,
    /// Seccomp when the pod names no profile, and where `Localhost` profiles live.
    pub seccomp: &'a SeccompPolicy,
}

/// The kubelet's seccomp settings: `seccompDefault`, and `<root-dir>/seccomp` for `Localhost`
/// profiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeccompPolicy {
    pub runtime_default: bool,
    pub root: PathBuf,
}

/// `/var/log/pods/<namespace>_<name>_<uid>`.
pub fn pod_log_dir(log_root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    log_root.join(format!("{namespace}_{name}_{uid}"))
}

fn spec_flag(pod: &Pod, f: impl Fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>) -> bool {
    pod.spec.as_ref().and_then(f).unwrap_or(false)
}

pub fn host_network(pod: &Pod) -> bool {
    spec_flag(pod, |s| s.host_network)
}

/// The pod's hostname as the kubelet derives it: `spec.hostname` or the pod name, cut to 63
/// characters without a trailing `-` or `.`. Host-network pods get none (the runtime keeps the
/// node's).
pub fn pod_hostname(pod: &Pod) -> String {
    if host_network(pod) {
        return String::new();
    }
    let base = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    let mut h: String = base.chars().take(63).collect();
    while h.ends_with('-') || h.ends_with('.') {
        h.pop();
    }
    h
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => cri::Protocol::Udp as i32,
        Some("SCTP") => cri::Protocol::Sctp as i32,
        _ => cri::Protocol::Tcp as i32,
    }
}

/// hostPort mappings of every container.
pub fn port_mappings(pod: &Pod) -> Vec<cri::PortMapping> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) != 0)
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect()
}

/// The namespace modes of the pod (network and IPC shared per pod or with the node; PID per
/// container, per pod with `shareProcessNamespace`, or the node's).
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let node = cri::NamespaceMode::Node as i32;
    cri::NamespaceOption {
        network: if host_network(pod) {
            node
        } else {
            cri::NamespaceMode::Pod as i32
        },
        pid: if spec_flag(pod, |s| s.host_pid) {
            node
        } else if spec_flag(pod, |s| s.share_process_namespace) {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: if spec_flag(pod, |s| s.host_ipc) {
            node
        } else {
            cri::NamespaceMode::Pod as i32
        },
        target_id: String::new(),
        userns_options: None,
    }
}

/// The CRI seccomp profile for a pod's or container's `seccompProfile` (the container's own
/// taking precedence is the caller's business): `RuntimeDefault`, a `Localhost` file under the
/// policy's root, or `Unconfined`; with none given, `RuntimeDefault` when `seccompDefault` is
/// on, as in the kubelet.
pub fn seccomp_profile(
    profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>,
    policy: &SeccompPolicy,
) -> cri::SecurityProfile {
    use cri::security_profile::ProfileType;
    let (profile_type, localhost_ref) = match profile.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => (ProfileType::RuntimeDefault, String::new()),
        Some("Localhost") => (
            ProfileType::Localhost,
            policy
                .root
                .join(
                    profile
                        .and_then(|p| p.localhost_profile.as_deref())
                        .unwrap_or_default(),
                )
                .to_string_lossy()
                .into_owned(),
        ),
        Some(_) => (ProfileType::Unconfined, String::new()),
        None if policy.runtime_default => (ProfileType::RuntimeDefault, String::new()),
        None => (ProfileType::Unconfined, String::new()),
    };
    cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    }
}

/// The full RunPodSandbox config.
pub fn sandbox_config(pod: &Pod, attempt: u32, ctx: &SandboxContext<'_>) -> cri::PodSandboxConfig {
    let m = &pod.metadata;
    let name = m.name.clone().unwrap_or_default();
    let namespace = m.namespace.clone().unwrap_or_else(|| "default".into());
    let uid = m.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let psc = spec.and_then(|s| s.security_context.as_ref());
    let privileged = spec
        .map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .any(|c| {
                    c.security_context
                        .as_ref()
                        .and_then(|sc| sc.privileged)
                        .unwrap_or(false)
                })
        })
        .unwrap_or(false);
    let sysctls = psc
        .and_then(|p| p.sysctls.as_ref())
        .map(|v| {
            v.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt,
        }),
        hostname: pod_hostname(pod),
        log_directory: pod_log_dir(ctx.log_root, &namespace, &name, &uid)
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(ctx.dns.clone()),
        port_mappings: port_mappings(pod),
        labels: labels::sandbox_labels(pod, ctx.node),
        annotations: labels::sandbox_annotations(pod),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: ctx.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: psc
                    .and_then(|p| p.run_as_user)
                    .map(|value| cri::Int64Value { value }),
                run_as_group: psc
                    .and_then(|p| p.run_as_group)
                    .map(|value| cri::Int64Value { value }),
                supplemental_groups: psc
                    .and_then(|p| p.supplemental_groups.clone())
                    .unwrap_or_default(),
                privileged,
                seccomp: Some(seccomp_profile(
                    psc.and_then(|p| p.seccomp_profile.as_ref()),
                    ctx.seccomp,
                )),
                ..Default::default()
            }),
            sysctls,
            overhead: None,
            resources: None,
        }),
        windows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-node1", "namespace": "prod", "uid": "abc", "labels": {"app": "web"}},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn sandbox_config_carries_identity_and_paths() {
        let p = pod(json!({
            "containers": [{"name": "c", "image": "i", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "protocol": "UDP"}
            ]}]
        }));
        let dns = cri::DnsConfig {
            servers: vec!["10.0.0.2".into()],
            searches: vec!["example.com".into()],
            options: vec!["ndots:5".into()],
        };
        let seccomp = SeccompPolicy::default();
        let ctx = SandboxContext {
            node: "node1",
            cgroup_parent: "/kubepods/besteffort/podabc".into(),
            log_root: Path::new("/var/log/pods"),
            dns: dns.clone(),
            seccomp: &seccomp,
        };
        let c = sandbox_config(&p, 2, &ctx);
        let md = c.metadata.unwrap();
        assert_eq!(
            (
                md.name.as_str(),
                md.namespace.as_str(),
                md.uid.as_str(),
                md.attempt
            ),
            ("web-node1", "prod", "abc", 2)
        );
        assert_eq!(c.log_directory, "/var/log/pods/prod_web-node1_abc");
        assert_eq!(c.hostname, "web-node1");
        assert_eq!(c.labels[labels::POD_UID_LABEL], "abc");
        assert_eq!(c.labels["app"], "web");
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!(c.port_mappings[0].host_port, 8080);
        assert_eq!(
            c.dns_config,
            Some(dns),
            "the pod's DNS goes to the runtime as given"
        );
        let linux = c.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/kubepods/besteffort/podabc");
        let sc = linux.security_context.unwrap();
        let ns = sc.namespace_options.unwrap();
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn seccomp_default_and_localhost_profiles() {
        use cri::security_profile::ProfileType;
        let on = SeccompPolicy {
            runtime_default: true,
            root: PathBuf::from("/var/lib/kubelet-rs/seccomp"),
        };
        let off = SeccompPolicy::default();
        assert_eq!(
            seccomp_profile(None, &on).profile_type,
            ProfileType::RuntimeDefault as i32
        );
        assert_eq!(
            seccomp_profile(None, &off).profile_type,
            ProfileType::Unconfined as i32
        );
        let unconfined: k8s_openapi::api::core::v1::SeccompProfile =
            serde_json::from_value(json!({"type": "Unconfined"})).unwrap();
        assert_eq!(
            seccomp_profile(Some(&unconfined), &on).profile_type,
            ProfileType::Unconfined as i32,
            "an explicit profile wins over seccompDefault"
        );
        let local: k8s_openapi::api::core::v1::SeccompProfile = serde_json::from_value(
            json!({"type": "Localhost", "localhostProfile": "p/audit.json"}),
        )
        .unwrap();
        let prof = seccomp_profile(Some(&local), &on);
        assert_eq!(prof.profile_type, ProfileType::Localhost as i32);
        assert_eq!(
            prof.localhost_ref,
            "/var/lib/kubelet-rs/seccomp/p/audit.json"
        );
    }

    #[test]
    fn host_network_pods_get_no_hostname() {
        let p = pod(
            json!({"hostNetwork": true, "hostPID": true, "containers": [{"name": "c", "image": "i"}]}),
        );
        assert_eq!(pod_hostname(&p), "");
        let ns = namespace_options(&p);
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn long_names_are_cut_like_the_kubelet() {
        let long = format!("{}-x", "a".repeat(62));
        let p: Pod =
            serde_json::from_value(json!({"metadata": {"name": long}, "spec": {"containers": []}}))
                .unwrap();
        assert_eq!(pod_hostname(&p), "a".repeat(62));
    }
}
