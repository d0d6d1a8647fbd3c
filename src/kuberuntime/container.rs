//! The CRI config of one container (`kuberuntime_container.go`, `kuberuntime_container_linux.go`):
//! command and args with `$(VAR)` expansion, the environment (literal, downward API,
//! ConfigMap/Secret keys, `envFrom`), resources mapped to `LinuxContainerResources` as the
//! kubelet maps them, the security context, mounts and the log path.

use std::collections::BTreeMap;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use proto::cri;

use super::labels;
use super::sandbox::{namespace_options, seccomp_profile, SeccompPolicy};
use crate::cm::{self, QosClass};
use crate::fieldpath::{self, PodRuntimeFacts};
use crate::objects::ObjectSource;

/// A container whose config cannot be built (the kubelet's `CreateContainerConfigError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerConfigError {
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        kind: &'static str,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("{kind} \"{name}\" not found")]
    MissingObject { kind: &'static str, name: String },
    #[error("env {var}: {source}")]
    FieldRef {
        var: String,
        source: fieldpath::FieldPathError,
    },
}

/// Everything besides the pod and container that goes into the config.
pub struct ContainerContext<'a> {
    pub node: &'a str,
    /// The image reference the runtime resolved (`PullImage`/`ImageStatus` id).
    pub image_ref: &'a str,
    pub restart_count: i32,
    pub init: bool,
    pub qos: QosClass,
    pub facts: &'a PodRuntimeFacts,
    pub objects: &'a dyn ObjectSource,
    /// Mounts from the volume manager plus the kubelet-managed files (etc-hosts, termination log).
    pub mounts: Vec<cri::Mount>,
    /// CPU limits as CFS quota (`cpuCFSQuota`, `cpuCFSQuotaPeriod`).
    pub cfs: cm::CfsQuota,
    /// Seccomp when neither container nor pod names a profile (`seccompDefault`).
    pub seccomp: &'a SeccompPolicy,
}

/// The default masked and read-only paths the kubelet passes for the default proc mount.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Kubernetes `$(VAR)` expansion: a defined `$(VAR)` is replaced, an undefined one is kept as
/// written, `$$` is an escaped `$`.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            out.push_str(&input[last..i]);
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                }
                b'(' => match input[i + 2..].find(')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                    }
                    None => {
                        out.push_str(&input[i..]);
                        i = bytes.len();
                    }
                },
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&input[last.min(input.len())..]);
    out
}

/// The container's environment in order, as the kubelet's `makeEnvironmentVariables` builds it:
/// `envFrom` first, then `env`, each value expanded against what came before.
pub fn environment(
    pod: &Pod,
    container: &Container,
    facts: &PodRuntimeFacts,
    objects: &dyn ObjectSource,
) -> Result<Vec<(String, String)>, ContainerConfigError> {
    environment_reporting(pod, container, facts, objects, &mut |_| {})
}

/// The kubelet's event reason for `envFrom` keys that are not variable names.
pub const INVALID_ENV_NAMES: &str = "InvalidEnvironmentVariableNames";

/// Whether `name` is an environment variable name (`IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// [`environment`], handing `warn` the message of each `envFrom` source whose keys were
/// skipped as invalid names (the kubelet's `InvalidEnvironmentVariableNames` event).
pub fn environment_reporting(
    pod: &Pod,
    container: &Container,
    facts: &PodRuntimeFacts,
    objects: &dyn ObjectSource,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<(String, String)>, ContainerConfigError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut order: Vec<String> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    let set =
        |k: String, v: String, order: &mut Vec<String>, vars: &mut HashMap<String, String>| {
            if !vars.contains_key(&k) {
                order.push(k.clone());
            }
            vars.insert(k, v);
        };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        // Each source's entries (None: the object is missing), in the kubelet's order: the
        // configMap's, then the secret's; with the kind as the not-found error and as the
        // skipped-keys event spell it.
        type Source<'a> = (
            &'static str,
            &'static str,
            &'a str,
            bool,
            Option<Vec<(String, String)>>,
        );
        let mut sources: Vec<Source> = Vec::new();
        if let Some(r) = &from.config_map_ref {
            let entries = objects
                .config_map(&ns, &r.name)
                .map(|cm| cm.data.unwrap_or_default().into_iter().collect());
            sources.push((
                "configmap",
                "configMap",
                &r.name,
                r.optional.unwrap_or(false),
                entries,
            ));
        }
        if let Some(r) = &from.secret_ref {
            let entries = objects.secret(&ns, &r.name).map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .chain(s.string_data.unwrap_or_default())
                    .collect()
            });
            sources.push((
                "secret",
                "secret",
                &r.name,
                r.optional.unwrap_or(false),
                entries,
            ));
        }
        for (kind, event_kind, name, optional, entries) in sources {
            let Some(entries) = entries else {
                if optional {
                    continue;
                }
                return Err(ContainerConfigError::MissingObject {
                    kind,
                    name: name.to_string(),
                });
            };
            let mut invalid = Vec::new();
            for (k, v) in entries {
                let k = format!("{prefix}{k}");
                if is_env_var_name(&k) {
                    set(k, v, &mut order, &mut vars);
                } else {
                    invalid.push(k);
                }
            }
            if !invalid.is_empty() {
                invalid.sort();
                warn(format!("Keys [{}] from the EnvFrom {event_kind} {ns}/{name} were skipped since they are considered invalid environment variable names.", invalid.join(", ")));
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                fieldpath::field_value(pod, &f.field_path, facts).map_err(|source| {
                    ContainerConfigError::FieldRef {
                        var: e.name.clone(),
                        source,
                    }
                })?
            } else if let Some(r) = &src.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => {
                        find_container(pod, name).ok_or_else(|| ContainerConfigError::FieldRef {
                            var: e.name.clone(),
                            source: fieldpath::FieldPathError::NoSuchContainer(name.into()),
                        })?
                    }
                    None => container,
                };
                fieldpath::resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    facts,
                )
                .map_err(|source| ContainerConfigError::FieldRef {
                    var: e.name.clone(),
                    source,
                })?
            } else if let Some(k) = &src.config_map_key_ref {
                let optional = k.optional.unwrap_or(false);
                match objects.config_map(&ns, &k.name) {
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&k.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(ContainerConfigError::MissingKey {
                                kind: "ConfigMap",
                                namespace: ns,
                                name: k.name.clone(),
                                key: k.key.clone(),
                            })
                        }
                    },
                    None if optional => continue,
                    None => {
                        return Err(ContainerConfigError::MissingObject {
                            kind: "configmap",
                            name: k.name.clone(),
                        })
                    }
                }
            } else if let Some(k) = &src.secret_key_ref {
                let optional = k.optional.unwrap_or(false);
                match objects.secret(&ns, &k.name) {
                    Some(s) => match s.data.as_ref().and_then(|d| d.get(&k.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(ContainerConfigError::MissingKey {
                                kind: "Secret",
                                namespace: ns,
                                name: k.name.clone(),
                                key: k.key.clone(),
                            })
                        }
                    },
                    None if optional => continue,
                    None => {
                        return Err(ContainerConfigError::MissingObject {
                            kind: "secret",
                            name: k.name.clone(),
                        })
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(e.name.clone(), value, &mut order, &mut vars);
    }
    Ok(order
        .into_iter()
        .map(|k| {
            let v = vars.get(&k).cloned().unwrap_or_default();
            (k, v)
        })
        .collect())
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// The kubelet's OOM score adjustment for a container of `qos`: Guaranteed -997, BestEffort
/// 1000, Burstable scaled by the memory request's share of the node.
pub fn oom_score_adj(qos: QosClass, memory_request: i64, memory_capacity: i64) -> i64 {
    match qos {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            if memory_capacity <= 0 {
                return 999;
            }
            let adj = 1000 - (1000 * memory_request) / memory_capacity;
            adj.clamp(2, 999)
        }
    }
}

/// Resources as the kubelet's `calculateLinuxResources` maps them: a CPU limit becomes a CFS
/// quota over `cfs.period_us`, or no quota at all when `cpuCFSQuota` is off.
pub fn linux_resources(
    c: &Container,
    qos: QosClass,
    memory_capacity: i64,
    cfs: cm::CfsQuota,
) -> cri::LinuxContainerResources {
    let (cpu_req, cpu_lim) = cm::qos::container_request_limit(c, "cpu");
    let (mem_req, mem_lim) = cm::qos::container_request_limit(c, "memory");
    // An unset request with a set limit takes the limit (API defaulting).
    let shares = if cpu_req == 0 && cpu_lim != 0 {
        cm::milli_cpu_to_shares(cpu_lim)
    } else {
        cm::milli_cpu_to_shares(cpu_req)
    };
    let mut r = cri::LinuxContainerResources {
        cpu_shares: shares as i64,
        memory_limit_in_bytes: mem_lim,
        oom_score_adj: oom_score_adj(qos, mem_req, memory_capacity),
        ..Default::default()
    };
    if cpu_lim != 0 && cfs.enforce {
        r.cpu_period = cfs.period_us as i64;
        r.cpu_quota = cm::milli_cpu_to_quota(cpu_lim, cfs.period_us);
    }
    r
}

fn security_context(
    pod: &Pod,
    c: &Container,
    seccomp: &SeccompPolicy,
) -> cri::LinuxContainerSecurityContext {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|p| p.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|p| p.run_as_group));
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    let seccomp = seccomp_profile(
        sc.and_then(|s| s.seccomp_profile.as_ref())
            .or_else(|| psc.and_then(|p| p.seccomp_profile.as_ref())),
        seccomp,
    );
    cri::LinuxContainerSecurityContext {
        capabilities: caps.map(|c| cri::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: psc
            .and_then(|p| p.supplemental_groups.clone())
            .unwrap_or_default(),
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        masked_paths: if privileged || unmasked {
            Vec::new()
        } else {
            MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if privileged || unmasked {
            Vec::new()
        } else {
            READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        },
        seccomp: Some(seccomp),
        ..Default::default()
    }
}

/// The full CreateContainer config.
pub fn container_config(
    pod: &Pod,
    c: &Container,
    ctx: &ContainerContext<'_>,
    memory_capacity: i64,
) -> Result<cri::ContainerConfig, ContainerConfigError> {
    let env = environment(pod, c, ctx.facts, ctx.objects)?;
    Ok(container_config_with_env(pod, c, ctx, memory_capacity, env))
}

/// [`container_config`] with the container's [`environment`] already computed (the pod sync
/// computes it once for the mounts' `subPathExpr` and the config).
pub fn container_config_with_env(
    pod: &Pod,
    c: &Container,
    ctx: &ContainerContext<'_>,
    memory_capacity: i64,
    env: Vec<(String, String)>,
) -> cri::ContainerConfig {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let command = c
        .command
        .iter()
        .flatten()
        .map(|s| expand(s, &vars))
        .collect();
    let args = c.args.iter().flatten().map(|s| expand(s, &vars)).collect();
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: ctx.restart_count.max(0) as u32,
        }),
        image: Some(cri::ImageSpec {
            image: ctx.image_ref.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| cri::KeyValue { key, value })
            .collect(),
        mounts: ctx.mounts.clone(),
        devices: Vec::new(),
        labels: labels::container_labels(pod, c, ctx.init, ctx.node),
        annotations: labels::container_annotations(pod, c, ctx.restart_count),
        log_path: format!("{}/{}.log", c.name, ctx.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(c, ctx.qos, memory_capacity, ctx.cfs)),
            security_context: Some(security_context(pod, c, ctx.seccomp)),
        }),
        windows: None,
        cdi_devices: Vec::new(),
    }
}

/// Sorted map helper for tests and debugging output.
pub fn env_map(cfg: &cri::ContainerConfig) -> BTreeMap<String, String> {
    cfg.envs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::MemoryObjects;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars = HashMap::from([
            ("A".to_string(), "x".to_string()),
            ("B".to_string(), "y".to_string()),
        ]);
        assert_eq!(expand("$(A)-$(B)", &vars), "x-y");
        assert_eq!(expand("$(MISSING)", &vars), "$(MISSING)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("a$b", &vars), "a$b");
        assert_eq!(expand("$(A", &vars), "$(A");
        assert_eq!(expand("end$", &vars), "end$");
        assert_eq!(expand("héllo $(A)", &vars), "héllo x");
    }

    fn pod(container: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [container]}
        }))
        .unwrap()
    }

    #[test]
    fn config_maps_resources_and_env() {
        let p = pod(json!({
            "name": "app", "image": "img:1", "command": ["sh", "-c"], "args": ["echo $(GREETING) $(POD)"],
            "env": [
                {"name": "GREETING", "value": "hi"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "BOTH", "value": "$(GREETING)-$(POD)"},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}
            ],
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}}
        }));
        let objects = MemoryObjects::default();
        objects.put_config_map(
            serde_json::from_value(
                json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "v"}}),
            )
            .unwrap(),
        );
        let facts = PodRuntimeFacts::default();
        let ctx = ContainerContext {
            node: "n",
            image_ref: "sha256:abc",
            restart_count: 2,
            init: false,
            qos: QosClass::Burstable,
            facts: &facts,
            objects: &objects,
            mounts: vec![],
            cfs: cm::CfsQuota::default(),
            seccomp: &SeccompPolicy::default(),
        };
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&p, c, &ctx, 1 << 30).unwrap();
        assert_eq!(cfg.args, vec!["echo hi p"]);
        let env = env_map(&cfg);
        assert_eq!(env["BOTH"], "hi-p");
        assert_eq!(env["MEM"], "64");
        assert_eq!(env["CM"], "v");
        assert_eq!(cfg.log_path, "app/2.log");
        assert_eq!(cfg.metadata.as_ref().unwrap().attempt, 2);
        assert_eq!(cfg.image.as_ref().unwrap().image, "sha256:abc");
        let r = cfg.linux.as_ref().unwrap().resources.clone().unwrap();
        assert_eq!(r.cpu_shares, 102);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        // 1000 - 1000*32Mi/1Gi = 969
        assert_eq!(r.oom_score_adj, 969);
        assert_eq!(
            cfg.annotations[labels::CONTAINER_RESTART_COUNT_ANNOTATION],
            "2"
        );
        // With the environment computed beforehand, nothing is looked up again.
        let env = environment(&p, c, &facts, &objects).unwrap();
        objects.remove_config_map("ns", "cfg");
        assert!(container_config(&p, c, &ctx, 1 << 30).is_err());
        assert_eq!(container_config_with_env(&p, c, &ctx, 1 << 30, env), cfg);
    }

    #[test]
    fn secret_and_config_map_env_with_the_kubelets_messages() {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let objects = MemoryObjects::default();
        objects.put_secret(
            serde_json::from_value::<Secret>(json!({
                "metadata": {"name": "s", "namespace": "ns"},
                "data": {"pw": "aHVudGVyMg==", "1bad": "eA==", "ok.key": "eQ=="}
            }))
            .unwrap(),
        );
        objects.put_config_map(
            serde_json::from_value::<ConfigMap>(json!({
                "metadata": {"name": "c", "namespace": "ns"},
                "data": {"mode": "fast", "has space": "x", "2nd": "y"}
            }))
            .unwrap(),
        );
        let facts = PodRuntimeFacts::default();
        let p = pod(json!({"name": "app", "image": "i",
        "envFrom": [{"configMapRef": {"name": "c"}}, {"prefix": "S_", "secretRef": {"name": "s"}}],
        "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope", "optional": true}}},
            {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "mode"}}}
        ]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mut warnings = Vec::new();
        let env: HashMap<_, _> =
            environment_reporting(&p, c, &facts, &objects, &mut |w| warnings.push(w))
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(env["PW"], "hunter2");
        assert_eq!(env["M"], "fast");
        assert_eq!(env["mode"], "fast");
        assert_eq!(env["S_1bad"], "x", "a prefix can make a key valid");
        assert_eq!(env["S_ok.key"], "y");
        assert!(!env.contains_key("GONE"));
        assert_eq!(
            warnings,
            vec!["Keys [2nd, has space] from the EnvFrom configMap ns/c were skipped since they are considered invalid environment variable names."]
        );
        let missing_key = pod(json!({"name": "app", "image": "i", "env": [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}));
        let c = &missing_key.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            environment(&missing_key, c, &facts, &objects)
                .unwrap_err()
                .to_string(),
            "couldn't find key k in Secret ns/s"
        );
        let missing = pod(json!({"name": "app", "image": "i", "envFrom": [
            {"secretRef": {"name": "absent"}}]}));
        let c = &missing.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            environment(&missing, c, &facts, &objects)
                .unwrap_err()
                .to_string(),
            "secret \"absent\" not found"
        );
    }

    #[test]
    fn missing_config_map_key_is_a_config_error() {
        let p = pod(json!({"name": "app", "image": "i", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k"}}}]}));
        let objects = MemoryObjects::default();
        let facts = PodRuntimeFacts::default();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let err = environment(&p, c, &facts, &objects).unwrap_err();
        assert_eq!(err.to_string(), "configmap \"absent\" not found");
        let optional = pod(json!({"name": "app", "image": "i", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}}]}));
        let c = &optional.spec.as_ref().unwrap().containers[0];
        assert!(environment(&optional, c, &facts, &objects)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn cpu_quota_follows_cpu_cfs_quota_and_its_period() {
        let p = pod(json!({"name": "app", "image": "i",
            "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}}}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let qos = QosClass::Guaranteed;
        let on = linux_resources(c, qos, 1 << 30, cm::CfsQuota::default());
        assert_eq!((on.cpu_period, on.cpu_quota), (100_000, 25_000));
        let period = cm::CfsQuota {
            enforce: true,
            period_us: 50_000,
        };
        let r = linux_resources(c, qos, 1 << 30, period);
        assert_eq!((r.cpu_period, r.cpu_quota), (50_000, 12_500));
        let off = cm::CfsQuota {
            enforce: false,
            period_us: 100_000,
        };
        let r = linux_resources(c, qos, 1 << 30, off);
        assert_eq!((r.cpu_period, r.cpu_quota), (0, 0), "no quota at all");
        assert_eq!(r.cpu_shares, on.cpu_shares, "shares stay");
        // The pod cgroup: the same period, and an unlimited quota when quota is off.
        let pr = cm::pod_resources(&p, -1, period);
        assert_eq!((pr.cpu_period, pr.cpu_quota), (Some(50_000), Some(12_500)));
        let pr = cm::pod_resources(&p, -1, off);
        assert_eq!((pr.cpu_period, pr.cpu_quota), (Some(100_000), Some(-1)));
        let pr = cm::pod_resources(&p, -1, cm::CfsQuota::default());
        assert_eq!(pr.cpu_quota, Some(25_000));
    }

    #[test]
    fn seccomp_default_applies_to_containers_without_a_profile() {
        let p = pod(json!({"name": "app", "image": "i"}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let on = SeccompPolicy {
            runtime_default: true,
            root: "/r/seccomp".into(),
        };
        let sc = security_context(&p, c, &on);
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::RuntimeDefault as i32
        );
        let sc = security_context(&p, c, &SeccompPolicy::default());
        assert_eq!(
            sc.seccomp.unwrap().profile_type,
            cri::security_profile::ProfileType::Unconfined as i32
        );
    }

    #[test]
    fn oom_scores_by_qos() {
        assert_eq!(oom_score_adj(QosClass::Guaranteed, 0, 1), -997);
        assert_eq!(oom_score_adj(QosClass::BestEffort, 0, 1), 1000);
        assert_eq!(oom_score_adj(QosClass::Burstable, 1 << 30, 1 << 30), 2);
        assert_eq!(oom_score_adj(QosClass::Burstable, 0, 1 << 30), 999);
    }
}
