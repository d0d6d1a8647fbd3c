//! The downward API: values of `fieldRef` and `resourceFieldRef` selectors, shared by container
//! environment variables and `downwardAPI` volumes (`pkg/fieldpath`, `pkg/api/v1/resource`).

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::resource::parse_quantity;

/// A selector that cannot be resolved; it names the selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    #[error("unsupported fieldPath {0:?}")]
    UnsupportedField(String),
    #[error("unsupported resource {0:?} in resourceFieldRef")]
    UnsupportedResource(String),
    #[error("resourceFieldRef names container {0:?}, which the pod does not have")]
    NoSuchContainer(String),
    #[error("invalid divisor {divisor:?} for resource {resource}: {reason}")]
    BadDivisor {
        resource: String,
        divisor: String,
        reason: String,
    },
}

/// Runtime facts the pod object alone does not carry.
#[derive(Debug, Clone, Default)]
pub struct PodRuntimeFacts {
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    /// Node allocatable CPU in millicores and memory and ephemeral storage in bytes, the default
    /// for `limits.*` when a container sets no limit.
    pub node_cpu_milli: i64,
    pub node_memory: i64,
    pub node_ephemeral_storage: i64,
}

/// Extracts `metadata.labels['key']` style subscripts.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    let rest = rest.strip_prefix("['")?.strip_suffix("']")?;
    Some(rest)
}

/// The value of a `fieldRef.fieldPath`.
pub fn field_value(
    pod: &Pod,
    path: &str,
    facts: &PodRuntimeFacts,
) -> Result<String, FieldPathError> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    if let Some(k) = subscript(path, "metadata.labels") {
        return Ok(m
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(k) = subscript(path, "metadata.annotations") {
        return Ok(m
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .cloned()
            .unwrap_or_default());
    }
    let fmt_map = |map: Option<&std::collections::BTreeMap<String, String>>| {
        map.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => fmt_map(m.labels.as_ref()),
        "metadata.annotations" => fmt_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => facts.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => facts.pod_ips.join(","),
        "status.hostIP" => facts.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => facts.host_ips.join(","),
        other => return Err(FieldPathError::UnsupportedField(other.to_string())),
    })
}

/// Go's `strconv.Quote` for the label/annotation file format.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// The value of a `resourceFieldRef` for `container` (`limits.cpu`, `requests.memory`, ...),
/// divided by `divisor` and rounded up as the kubelet does. An unset limit defaults to the
/// node's allocatable amount.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    facts: &PodRuntimeFacts,
) -> Result<String, FieldPathError> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| FieldPathError::UnsupportedResource(resource.to_string()))?;
    let supported = matches!(kind, "limits" | "requests")
        && (matches!(name, "cpu" | "memory" | "ephemeral-storage")
            || name.starts_with("hugepages-"));
    if !supported {
        return Err(FieldPathError::UnsupportedResource(resource.to_string()));
    }
    let res = container.resources.as_ref();
    let map = if kind == "limits" {
        res.and_then(|r| r.limits.as_ref())
    } else {
        res.and_then(|r| r.requests.as_ref())
    };
    let set = map
        .and_then(|m| m.get(name))
        .and_then(|q| parse_quantity(&q.0).ok());
    let is_cpu = name == "cpu";
    // Amount in millis for cpu, units otherwise.
    let amount: i64 = match set {
        Some(q) => {
            if is_cpu {
                q.milli_value()
            } else {
                q.value()
            }
        }
        None if kind == "limits" => match name {
            "cpu" => facts.node_cpu_milli,
            "memory" => facts.node_memory,
            "ephemeral-storage" => facts.node_ephemeral_storage,
            _ => 0,
        },
        None => 0,
    };
    let divisor_s = divisor.filter(|d| !d.is_empty()).unwrap_or("1");
    let d = parse_quantity(divisor_s).map_err(|e| FieldPathError::BadDivisor {
        resource: resource.to_string(),
        divisor: divisor_s.to_string(),
        reason: e.to_string(),
    })?;
    let d_units = if is_cpu { d.milli_value() } else { d.value() };
    if d_units <= 0 {
        return Err(FieldPathError::BadDivisor {
            resource: resource.to_string(),
            divisor: divisor_s.to_string(),
            reason: "must be positive".into(),
        });
    }
    let v = (amount + d_units - 1) / d_units;
    Ok(v.max(if is_cpu && amount > 0 { 1 } else { 0 }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                         "labels": {"app": "web", "tier": "fe"}, "annotations": {"a": "1"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn field_paths() {
        let p = pod();
        let f = PodRuntimeFacts {
            pod_ips: vec!["10.88.0.5".into()],
            host_ips: vec!["192.0.2.1".into()],
            ..Default::default()
        };
        assert_eq!(field_value(&p, "metadata.name", &f).unwrap(), "p");
        assert_eq!(
            field_value(&p, "metadata.labels['app']", &f).unwrap(),
            "web"
        );
        assert_eq!(
            field_value(&p, "metadata.labels", &f).unwrap(),
            "app=\"web\"\ntier=\"fe\""
        );
        assert_eq!(field_value(&p, "status.podIP", &f).unwrap(), "10.88.0.5");
        assert_eq!(field_value(&p, "spec.nodeName", &f).unwrap(), "n1");
        assert_eq!(
            field_value(&p, "spec.bogus", &f).unwrap_err(),
            FieldPathError::UnsupportedField("spec.bogus".into())
        );
    }

    #[test]
    fn resource_fields_round_up() {
        let p = pod();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let f = PodRuntimeFacts {
            node_cpu_milli: 2000,
            node_memory: 8 << 30,
            ..Default::default()
        };
        assert_eq!(resource_value(&c, "limits.cpu", None, &f).unwrap(), "1");
        assert_eq!(
            resource_value(&c, "limits.cpu", Some("1m"), &f).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(&c, "limits.memory", Some("1Mi"), &f).unwrap(),
            "64"
        );
        assert_eq!(
            resource_value(&c, "requests.cpu", Some("1m"), &f).unwrap(),
            "100"
        );
        let mut c2 = c.clone();
        c2.resources = None;
        assert_eq!(
            resource_value(&c2, "limits.memory", None, &f).unwrap(),
            (8u64 << 30).to_string()
        );
        assert!(resource_value(&c, "limits.gpu", None, &f).is_err());
        assert!(resource_value(&c, "limits.cpu", Some("0"), &f).is_err());
    }
}
