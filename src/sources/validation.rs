//! Pod validation for pods that reach this node without passing through an API server (static
//! pods read from files or a URL).
//!
//! It follows the API server's core validation (`pkg/apis/core/validation`) for everything a node
//! relies on: object names, containers, images, resources, ports, environment variables,
//! volumes and their mounts, probes and lifecycle handlers, and the pod-level policies. Each
//! problem is a [`FieldError`] whose text reads as the API server prints it, for example
//! `spec.containers[1].image: Required value` or
//! `spec.containers[0].resources.limits[memory]: Invalid value: "12Q": quantities must match the
//! regular expression '…'`. [`validate_pod`] returns all of them at once.
//!
//! The name and label checks (`is_dns1123_label`, `is_qualified_name`, …) are public: the
//! configuration reuses them for `--node-labels` and the node name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, Lifecycle, LifecycleHandler, Pod, PodSpec, Probe,
    ResourceRequirements, Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::resource::{parse_k8s_quantity, Quantity};
use crate::volumemanager::hostpath::TYPES as HOST_PATH_TYPES;

/// One problem with one field, worded like the API server's `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// A required field is missing or empty.
    #[error("{field}: Required value{}", detail_suffix(.detail))]
    Required { field: String, detail: String },
    /// The value is malformed. `value` is rendered as the API server renders it (strings quoted).
    #[error("{field}: Invalid value: {value}: {detail}")]
    Invalid {
        field: String,
        value: String,
        detail: String,
    },
    /// The value repeats one that must be unique.
    #[error("{field}: Duplicate value: {value}")]
    Duplicate { field: String, value: String },
    /// The value refers to something that does not exist (a volume mount naming no volume).
    #[error("{field}: Not found: {value}")]
    NotFound { field: String, value: String },
    /// The value is not one of a closed set.
    #[error("{field}: Unsupported value: {value}: supported values: {supported}")]
    NotSupported {
        field: String,
        value: String,
        supported: String,
    },
    /// The field may not be set here.
    #[error("{field}: Forbidden: {detail}")]
    Forbidden { field: String, detail: String },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl FieldError {
    /// The field path (`spec.containers[0].image`).
    pub fn field(&self) -> &str {
        match self {
            Self::Required { field, .. }
            | Self::Invalid { field, .. }
            | Self::Duplicate { field, .. }
            | Self::NotFound { field, .. }
            | Self::NotSupported { field, .. }
            | Self::Forbidden { field, .. } => field,
        }
    }

    fn required(field: impl fmt::Display) -> Self {
        Self::Required {
            field: field.to_string(),
            detail: String::new(),
        }
    }

    fn required_because(field: impl fmt::Display, detail: impl Into<String>) -> Self {
        Self::Required {
            field: field.to_string(),
            detail: detail.into(),
        }
    }

    fn invalid_str(field: impl fmt::Display, value: &str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_string(),
            value: format!("{value:?}"),
            detail: detail.into(),
        }
    }

    fn invalid_int(field: impl fmt::Display, value: i64, detail: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_string(),
            value: value.to_string(),
            detail: detail.into(),
        }
    }

    fn duplicate(field: impl fmt::Display, value: &str) -> Self {
        Self::Duplicate {
            field: field.to_string(),
            value: format!("{value:?}"),
        }
    }

    fn not_supported(field: impl fmt::Display, value: &str, supported: &[&str]) -> Self {
        Self::NotSupported {
            field: field.to_string(),
            value: format!("{value:?}"),
            supported: supported
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn forbidden(field: impl fmt::Display, detail: impl Into<String>) -> Self {
        Self::Forbidden {
            field: field.to_string(),
            detail: detail.into(),
        }
    }
}

/// Every problem found in one object. Displays as the API server's aggregate: the error alone
/// when there is one, `[e1, e2, …]` otherwise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_list(.0))]
pub struct ValidationError(pub Vec<FieldError>);

fn render_list(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl ValidationError {
    /// The individual field errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether some error concerns exactly `field`.
    pub fn has_field(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field() == field)
    }
}

impl From<FieldError> for ValidationError {
    fn from(e: FieldError) -> Self {
        Self(vec![e])
    }
}

/// A field path under construction: `spec`, `.containers`, `[0]`, `.image`.
#[derive(Debug, Clone)]
struct FieldPath(String);

impl FieldPath {
    fn new(root: &str) -> Self {
        Self(root.to_string())
    }
    fn child(&self, name: &str) -> Self {
        Self(format!("{}.{name}", self.0))
    }
    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
    fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k}]", self.0))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Names, labels and other string formats (apimachinery's `util/validation`).

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const PORT_NAME_MAX: usize = 15;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case \
    alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. \
    'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
    alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
    (e.g. 'example.com', regex used for validation is \
    '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
    must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
    '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric \
    characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
    'MyValue',  or 'my_value',  or '12345', regex used for validation is \
    '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const ENV_VAR_NAME_MSG: &str = "a valid environment variable name must consist of alphabetic \
    characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  \
    or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";
const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";

fn max_len_msg(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_label_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// Checks an RFC 1123 label (container names, namespaces, volume names). Returns the reasons
/// it is invalid; empty when valid.
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !is_label_shaped(s) {
        errs.push(DNS1123_LABEL_MSG.to_string());
    }
    errs
}

/// Checks an RFC 1123 subdomain (object names, node names, label prefixes).
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX));
    }
    if s.is_empty() || !s.split('.').all(is_label_shaped) {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Checks a qualified name (`[prefix/]name`: label and annotation keys, resource names).
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            name
        }
        _ => {
            errs.push(format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and \
                 '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_msg(QUALIFIED_NAME_MAX)));
    }
    if !name.is_empty() && !is_qualified_name_part(name) {
        errs.push(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    errs
}

/// Checks a label value (empty is allowed).
pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len_msg(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    errs
}

/// Checks an environment variable name.
pub fn is_env_var_name(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let shaped = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    let mut errs = Vec::new();
    if !shaped {
        errs.push(ENV_VAR_NAME_MSG.to_string());
    }
    if s == "." {
        errs.push("must not be '.'".to_string());
    } else if s == ".." {
        errs.push("must not be '..'".to_string());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// Checks a port name (an IANA_SVC_NAME, RFC 6335).
pub fn is_valid_port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > PORT_NAME_MAX {
        errs.push(max_len_msg(PORT_NAME_MAX));
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// The pod.

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const MOUNT_PROPAGATION: &[&str] = &["None", "HostToContainer", "Bidirectional"];
const MODE_RANGE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// What is wrong with a path that must stay inside a volume (item paths, subPathExpr).
fn relative_path_problem(p: &str) -> Option<&'static str> {
    if p.starts_with('/') {
        Some("must be a relative path")
    } else if p.split('/').any(|seg| seg == "..") {
        Some("must not contain '..'")
    } else if p.starts_with("..") {
        Some("must not start with '..'")
    } else {
        None
    }
}
/// Resources that may not be overcommitted: their request must equal their limit.
const HUGEPAGES_PREFIX: &str = "hugepages-";
/// Most bytes all annotations of one object may take (the API server's limit).
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Validates a pod the way the API server would on create, for everything that matters to a
/// node. Returns every problem found.
pub fn validate_pod(pod: &Pod) -> Result<(), ValidationError> {
    let mut v = Validator::default();
    v.metadata(pod);
    let spec_path = FieldPath::new("spec");
    match &pod.spec {
        Some(spec) => v.spec(spec, &spec_path),
        None => v
            .errs
            .push(FieldError::required(spec_path.child("containers"))),
    }
    if v.errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationError(v.errs))
    }
}

#[derive(Default)]
struct Validator {
    errs: Vec<FieldError>,
}

impl Validator {
    fn push_all(&mut self, field: &FieldPath, value: &str, reasons: Vec<String>) {
        for reason in reasons {
            self.errs
                .push(FieldError::invalid_str(field, value, reason));
        }
    }

    fn metadata(&mut self, pod: &Pod) {
        let meta = &pod.metadata;
        let path = FieldPath::new("metadata");
        match meta.name.as_deref() {
            None | Some("") => self.errs.push(FieldError::required_because(
                path.child("name"),
                "name or generateName is required",
            )),
            Some(name) => self.push_all(&path.child("name"), name, is_dns1123_subdomain(name)),
        }
        if let Some(ns) = meta.namespace.as_deref() {
            if !ns.is_empty() {
                self.push_all(&path.child("namespace"), ns, is_dns1123_label(ns));
            }
        }
        if let Some(labels) = &meta.labels {
            let lpath = path.child("labels");
            for (k, val) in labels {
                self.push_all(&lpath, k, is_qualified_name(k));
                self.push_all(&lpath, val, is_valid_label_value(val));
            }
        }
        if let Some(annotations) = &meta.annotations {
            let apath = path.child("annotations");
            let mut total = 0;
            for (k, val) in annotations {
                self.push_all(
                    &apath,
                    &k.to_lowercase(),
                    is_qualified_name(&k.to_lowercase()),
                );
                total += k.len() + val.len();
            }
            if total > TOTAL_ANNOTATION_SIZE_LIMIT {
                self.errs.push(FieldError::Invalid {
                    field: apath.to_string(),
                    value: String::new(),
                    detail: format!(
                        "Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"
                    ),
                });
            }
        }
    }

    fn spec(&mut self, spec: &PodSpec, path: &FieldPath) {
        // Volumes first: mounts are checked against them.
        let volumes = self.volumes(
            spec.volumes.as_deref().unwrap_or(&[]),
            &path.child("volumes"),
        );
        let host_network = spec.host_network.unwrap_or(false);

        let mut names = HashSet::new();
        let mut host_ports = HashSet::new();
        let init = spec.init_containers.as_deref().unwrap_or(&[]);
        let init_path = path.child("initContainers");
        for (i, c) in init.iter().enumerate() {
            let cpath = init_path.index(i);
            self.container(c, &cpath, &volumes, host_network, true);
            self.unique_name(&c.name, &cpath, &mut names);
            self.host_ports(c, &cpath, &mut host_ports);
        }
        let cpath_root = path.child("containers");
        if spec.containers.is_empty() {
            self.errs.push(FieldError::required(&cpath_root));
        }
        for (i, c) in spec.containers.iter().enumerate() {
            let cpath = cpath_root.index(i);
            self.container(c, &cpath, &volumes, host_network, false);
            self.unique_name(&c.name, &cpath, &mut names);
            self.host_ports(c, &cpath, &mut host_ports);
        }

        if let Some(policy) = spec.restart_policy.as_deref() {
            if !RESTART_POLICIES.contains(&policy) {
                self.errs.push(FieldError::not_supported(
                    path.child("restartPolicy"),
                    policy,
                    RESTART_POLICIES,
                ));
            }
        }
        if let Some(policy) = spec.dns_policy.as_deref() {
            if !DNS_POLICIES.contains(&policy) {
                self.errs.push(FieldError::not_supported(
                    path.child("dnsPolicy"),
                    policy,
                    DNS_POLICIES,
                ));
            } else if policy == "None" && spec.dns_config.is_none() {
                self.errs.push(FieldError::required_because(
                    path.child("dnsConfig"),
                    "must provide `dnsConfig` when `dnsPolicy` is None",
                ));
            }
        }
        if let Some(g) = spec.termination_grace_period_seconds {
            if g < 0 {
                self.errs.push(FieldError::invalid_int(
                    path.child("terminationGracePeriodSeconds"),
                    g,
                    "must be greater than or equal to 0",
                ));
            }
        }
        if let Some(d) = spec.active_deadline_seconds {
            if d <= 0 {
                self.errs.push(FieldError::invalid_int(
                    path.child("activeDeadlineSeconds"),
                    d,
                    "must be between 1 and 2147483647, inclusive",
                ));
            }
        }
        for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                self.push_all(&path.child(field), value, is_dns1123_label(value));
            }
        }
        if let Some(tolerations) = &spec.tolerations {
            let tpath = path.child("tolerations");
            for (i, t) in tolerations.iter().enumerate() {
                let p = tpath.index(i);
                if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
                    self.push_all(&p.child("key"), key, is_qualified_name(key));
                }
                match t.operator.as_deref() {
                    None | Some("") | Some("Equal") => {}
                    Some("Exists") => {
                        if t.value.as_deref().is_some_and(|v| !v.is_empty()) {
                            self.errs.push(FieldError::invalid_str(
                                p.child("operator"),
                                t.value.as_deref().unwrap_or_default(),
                                "value must be empty when `operator` is 'Exists'",
                            ));
                        }
                    }
                    Some(op) => self.errs.push(FieldError::not_supported(
                        p.child("operator"),
                        op,
                        &["Equal", "Exists"],
                    )),
                }
                if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
                    const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
                    if !EFFECTS.contains(&effect) {
                        self.errs.push(FieldError::not_supported(
                            p.child("effect"),
                            effect,
                            EFFECTS,
                        ));
                    }
                }
            }
        }
    }

    fn unique_name(&mut self, name: &str, cpath: &FieldPath, seen: &mut HashSet<String>) {
        if !name.is_empty() && !seen.insert(name.to_string()) {
            self.errs
                .push(FieldError::duplicate(cpath.child("name"), name));
        }
    }

    fn host_ports(&mut self, c: &Container, cpath: &FieldPath, seen: &mut HashSet<String>) {
        for (i, port) in c.ports.iter().flatten().enumerate() {
            let Some(hp) = port.host_port.filter(|&p| p != 0) else {
                continue;
            };
            let proto = port.protocol.as_deref().unwrap_or("TCP");
            let ip = port.host_ip.as_deref().unwrap_or("");
            let key = format!("{ip}/{hp}/{proto}");
            if !seen.insert(key) {
                self.errs.push(FieldError::duplicate(
                    cpath.child("ports").index(i).child("hostPort"),
                    &format!("{hp}/{proto}"),
                ));
            }
        }
    }

    fn volumes(&mut self, volumes: &[Volume], path: &FieldPath) -> HashSet<String> {
        let mut names = HashSet::new();
        for (i, vol) in volumes.iter().enumerate() {
            let vpath = path.index(i);
            if vol.name.is_empty() {
                self.errs.push(FieldError::required(vpath.child("name")));
            } else {
                self.push_all(&vpath.child("name"), &vol.name, is_dns1123_label(&vol.name));
                if !names.insert(vol.name.clone()) {
                    self.errs
                        .push(FieldError::duplicate(vpath.child("name"), &vol.name));
                }
            }
            // Count the volume sources without listing the thirty-odd of them: every key of the
            // serialized volume other than `name` is one.
            let sources: Vec<String> = serde_json::to_value(vol)
                .ok()
                .and_then(|v| {
                    v.as_object()
                        .map(|m| m.keys().cloned().collect::<Vec<String>>())
                })
                .unwrap_or_default()
                .into_iter()
                .filter(|k| k != "name")
                .collect();
            match sources.len() {
                0 => self.errs.push(FieldError::required_because(
                    &vpath,
                    "must specify a volume type",
                )),
                1 => {}
                _ => {
                    for s in &sources[1..] {
                        self.errs.push(FieldError::forbidden(
                            vpath.child(s),
                            "may not specify more than 1 volume type",
                        ));
                    }
                }
            }
            if let Some(hp) = &vol.host_path {
                let p = vpath.child("hostPath");
                if hp.path.is_empty() {
                    self.errs.push(FieldError::required(p.child("path")));
                } else if hp.path.split('/').any(|seg| seg == "..") {
                    self.errs.push(FieldError::invalid_str(
                        p.child("path"),
                        &hp.path,
                        "must not contain '..'",
                    ));
                }
                if let Some(t) = hp.type_.as_deref() {
                    if !HOST_PATH_TYPES.contains(&t) {
                        self.errs.push(FieldError::not_supported(
                            p.child("type"),
                            t,
                            HOST_PATH_TYPES,
                        ));
                    }
                }
            }
            self.projections(vol, &vpath);
            if let Some(ed) = &vol.empty_dir {
                if let Some(limit) = &ed.size_limit {
                    self.quantity(&vpath.child("emptyDir").child("sizeLimit"), limit);
                }
                if let Some(m) = ed.medium.as_deref() {
                    const MEDIA: &[&str] = &["", "Memory", "HugePages"];
                    if !MEDIA.contains(&m) && !m.starts_with("HugePages-") {
                        self.errs.push(FieldError::not_supported(
                            vpath.child("emptyDir").child("medium"),
                            m,
                            MEDIA,
                        ));
                    }
                }
            }
        }
        names
    }

    /// configMap, secret, downwardAPI and projected volumes: modes and item paths (the files
    /// the atomic writer creates must stay inside the volume).
    fn projections(&mut self, vol: &Volume, vpath: &FieldPath) {
        let mut items: Vec<(FieldPath, Option<&str>, &str, Option<i32>)> = Vec::new();
        let mut modes: Vec<(FieldPath, Option<i32>)> = Vec::new();
        if let Some(c) = &vol.config_map {
            let p = vpath.child("configMap");
            modes.push((p.child("defaultMode"), c.default_mode));
            for (i, it) in c.items.iter().flatten().enumerate() {
                items.push((p.child("items").index(i), Some(&it.key), &it.path, it.mode));
            }
        }
        if let Some(c) = &vol.secret {
            let p = vpath.child("secret");
            modes.push((p.child("defaultMode"), c.default_mode));
            for (i, it) in c.items.iter().flatten().enumerate() {
                items.push((p.child("items").index(i), Some(&it.key), &it.path, it.mode));
            }
        }
        if let Some(d) = &vol.downward_api {
            let p = vpath.child("downwardAPI");
            modes.push((p.child("defaultMode"), d.default_mode));
            for (i, it) in d.items.iter().flatten().enumerate() {
                let ip = p.child("items").index(i);
                self.downward_item(it, &ip);
                items.push((ip, None, &it.path, it.mode));
            }
        }
        if let Some(pr) = &vol.projected {
            let p = vpath.child("projected");
            modes.push((p.child("defaultMode"), pr.default_mode));
            for (si, src) in pr.sources.iter().flatten().enumerate() {
                let sp = p.child("sources").index(si);
                if let Some(c) = &src.config_map {
                    for (i, it) in c.items.iter().flatten().enumerate() {
                        let ip = sp.child("configMap").child("items").index(i);
                        items.push((ip, Some(&it.key), &it.path, it.mode));
                    }
                }
                if let Some(c) = &src.secret {
                    for (i, it) in c.items.iter().flatten().enumerate() {
                        let ip = sp.child("secret").child("items").index(i);
                        items.push((ip, Some(&it.key), &it.path, it.mode));
                    }
                }
                if let Some(d) = &src.downward_api {
                    for (i, it) in d.items.iter().flatten().enumerate() {
                        let ip = sp.child("downwardAPI").child("items").index(i);
                        self.downward_item(it, &ip);
                        items.push((ip, None, &it.path, it.mode));
                    }
                }
                if let Some(t) = &src.service_account_token {
                    if let Some(reason) = relative_path_problem(&t.path) {
                        self.errs.push(FieldError::invalid_str(
                            sp.child("serviceAccountToken").child("path"),
                            &t.path,
                            reason,
                        ));
                    }
                }
            }
        }
        for (path, mode) in modes {
            if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
                self.errs
                    .push(FieldError::invalid_int(path, m.into(), MODE_RANGE_MSG));
            }
        }
        for (path, key, file, mode) in items {
            if key == Some("") {
                self.errs.push(FieldError::required(path.child("key")));
            }
            if file.is_empty() {
                self.errs.push(FieldError::required(path.child("path")));
            } else if let Some(reason) = relative_path_problem(file) {
                self.errs
                    .push(FieldError::invalid_str(path.child("path"), file, reason));
            }
            if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
                self.errs.push(FieldError::invalid_int(
                    path.child("mode"),
                    m.into(),
                    MODE_RANGE_MSG,
                ));
            }
        }
    }

    fn downward_item(
        &mut self,
        it: &k8s_openapi::api::core::v1::DownwardAPIVolumeFile,
        path: &FieldPath,
    ) {
        match (&it.field_ref, &it.resource_field_ref) {
            (Some(_), Some(_)) => self.errs.push(FieldError::invalid_str(
                path,
                "",
                "fieldRef and resourceFieldRef can not be specified simultaneously",
            )),
            (None, None) => self.errs.push(FieldError::required_because(
                path,
                "one of fieldRef and resourceFieldRef is required",
            )),
            (None, Some(r)) => {
                if r.container_name.as_deref().unwrap_or("").is_empty() {
                    self.errs.push(FieldError::required(
                        path.child("resourceFieldRef").child("containerName"),
                    ));
                }
            }
            (Some(_), None) => {}
        }
    }

    fn container(
        &mut self,
        c: &Container,
        path: &FieldPath,
        volumes: &HashSet<String>,
        host_network: bool,
        is_init: bool,
    ) {
        if c.name.is_empty() {
            self.errs.push(FieldError::required(path.child("name")));
        } else {
            self.push_all(&path.child("name"), &c.name, is_dns1123_label(&c.name));
        }
        match c.image.as_deref() {
            None | Some("") => self.errs.push(FieldError::required(path.child("image"))),
            Some(image) if image.trim() != image => self.errs.push(FieldError::invalid_str(
                path.child("image"),
                image,
                "must not have leading or trailing whitespace",
            )),
            Some(_) => {}
        }
        if let Some(p) = c.image_pull_policy.as_deref() {
            if !PULL_POLICIES.contains(&p) {
                self.errs.push(FieldError::not_supported(
                    path.child("imagePullPolicy"),
                    p,
                    PULL_POLICIES,
                ));
            }
        }
        if let Some(p) = c.termination_message_policy.as_deref() {
            if !TERMINATION_MESSAGE_POLICIES.contains(&p) {
                self.errs.push(FieldError::not_supported(
                    path.child("terminationMessagePolicy"),
                    p,
                    TERMINATION_MESSAGE_POLICIES,
                ));
            }
        }
        let port_names = self.ports(
            c.ports.as_deref().unwrap_or(&[]),
            &path.child("ports"),
            host_network,
        );
        self.env(c.env.as_deref().unwrap_or(&[]), &path.child("env"));
        if let Some(r) = &c.resources {
            self.resources(r, &path.child("resources"));
        }
        self.volume_mounts(c, &path.child("volumeMounts"), volumes);

        let restartable = is_init && c.restart_policy.as_deref() == Some("Always");
        if let Some(policy) = c.restart_policy.as_deref() {
            if is_init && policy != "Always" {
                self.errs.push(FieldError::not_supported(
                    path.child("restartPolicy"),
                    policy,
                    &["Always"],
                ));
            } else if !is_init {
                self.errs.push(FieldError::forbidden(
                    path.child("restartPolicy"),
                    "may not be set for non-init containers",
                ));
            }
        }
        let probes = [
            ("livenessProbe", &c.liveness_probe),
            ("readinessProbe", &c.readiness_probe),
            ("startupProbe", &c.startup_probe),
        ];
        for (name, probe) in probes {
            let Some(probe) = probe else { continue };
            let ppath = path.child(name);
            if is_init && !restartable {
                self.errs.push(FieldError::forbidden(
                    &ppath,
                    "may not be set for init containers without restartPolicy=Always",
                ));
                continue;
            }
            self.probe(probe, &ppath, name != "readinessProbe", &port_names);
        }
        if let Some(lc) = &c.lifecycle {
            if is_init && !restartable {
                self.errs.push(FieldError::forbidden(
                    path.child("lifecycle"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            } else {
                self.lifecycle(lc, &path.child("lifecycle"), &port_names);
            }
        }
    }

    fn ports(
        &mut self,
        ports: &[ContainerPort],
        path: &FieldPath,
        host_network: bool,
    ) -> HashSet<String> {
        let mut names = HashSet::new();
        for (i, port) in ports.iter().enumerate() {
            let p = path.index(i);
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                self.push_all(&p.child("name"), name, is_valid_port_name(name));
                if !names.insert(name.to_string()) {
                    self.errs.push(FieldError::duplicate(p.child("name"), name));
                }
            }
            if port.container_port == 0 {
                self.errs
                    .push(FieldError::required(p.child("containerPort")));
            } else if !(1..=65535).contains(&port.container_port) {
                self.errs.push(FieldError::invalid_int(
                    p.child("containerPort"),
                    port.container_port.into(),
                    PORT_RANGE_MSG,
                ));
            }
            if let Some(hp) = port.host_port.filter(|&hp| hp != 0) {
                if !(1..=65535).contains(&hp) {
                    self.errs.push(FieldError::invalid_int(
                        p.child("hostPort"),
                        hp.into(),
                        PORT_RANGE_MSG,
                    ));
                } else if host_network && hp != port.container_port {
                    self.errs.push(FieldError::invalid_int(
                        p.child("containerPort"),
                        port.container_port.into(),
                        "must match `hostPort` when `hostNetwork` is true",
                    ));
                }
            }
            match port.protocol.as_deref() {
                None => {}
                Some(proto) if PROTOCOLS.contains(&proto) => {}
                Some(proto) => self.errs.push(FieldError::not_supported(
                    p.child("protocol"),
                    proto,
                    PROTOCOLS,
                )),
            }
            if let Some(ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    self.errs.push(FieldError::invalid_str(
                        p.child("hostIP"),
                        ip,
                        "must be a valid IP address",
                    ));
                }
            }
        }
        names
    }

    fn env(&mut self, env: &[EnvVar], path: &FieldPath) {
        for (i, var) in env.iter().enumerate() {
            let p = path.index(i);
            if var.name.is_empty() {
                self.errs.push(FieldError::required(p.child("name")));
            } else {
                self.push_all(&p.child("name"), &var.name, is_env_var_name(&var.name));
            }
            if let Some(from) = &var.value_from {
                let fpath = p.child("valueFrom");
                if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
                    self.errs.push(FieldError::invalid_str(
                        &fpath,
                        "",
                        "may not be specified when `value` is not empty",
                    ));
                }
                let count = [
                    from.field_ref.is_some(),
                    from.resource_field_ref.is_some(),
                    from.config_map_key_ref.is_some(),
                    from.secret_key_ref.is_some(),
                ]
                .into_iter()
                .filter(|&b| b)
                .count();
                if count == 0 {
                    self.errs.push(FieldError::invalid_str(
                        &fpath,
                        "",
                        "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` \
                         or `secretKeyRef`",
                    ));
                } else if count > 1 {
                    self.errs.push(FieldError::invalid_str(
                        &fpath,
                        "",
                        "may not have more than one field specified at a time",
                    ));
                }
                if let Some(fr) = &from.field_ref {
                    if fr.field_path.is_empty() {
                        self.errs.push(FieldError::required(
                            fpath.child("fieldRef").child("fieldPath"),
                        ));
                    }
                }
                if let Some(rr) = &from.resource_field_ref {
                    if rr.resource.is_empty() {
                        self.errs.push(FieldError::required(
                            fpath.child("resourceFieldRef").child("resource"),
                        ));
                    }
                }
            }
        }
    }

    /// Parses one quantity, recording an error at `path` when it does not parse.
    fn quantity(
        &mut self,
        path: &FieldPath,
        q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    ) -> Option<Quantity> {
        match parse_k8s_quantity(q) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errs
                    .push(FieldError::invalid_str(path, &q.0, e.reason()));
                None
            }
        }
    }

    fn resources(&mut self, r: &ResourceRequirements, path: &FieldPath) {
        let mut parsed: [HashMap<&str, Quantity>; 2] = [HashMap::new(), HashMap::new()];
        for (slot, (field, list)) in [("limits", &r.limits), ("requests", &r.requests)]
            .into_iter()
            .enumerate()
        {
            let lpath = path.child(field);
            for (name, q) in list.iter().flatten() {
                let p = lpath.key(name);
                let errs = is_qualified_name(name);
                if !errs.is_empty() {
                    self.push_all(&p, name, errs);
                    continue;
                }
                if let Some(v) = self.quantity(&p, q) {
                    if v.is_negative() {
                        self.errs.push(FieldError::invalid_str(
                            &p,
                            &q.0,
                            "must be greater than or equal to 0",
                        ));
                    }
                    parsed[slot].insert(name.as_str(), v);
                }
            }
        }
        let [limits, requests] = &parsed;
        let rpath = path.child("requests");
        let mut names: BTreeSet<&str> = requests.keys().copied().collect();
        names.extend(limits.keys().copied());
        for name in names {
            let (Some(req), Some(lim)) = (requests.get(name), limits.get(name)) else {
                if name.starts_with(HUGEPAGES_PREFIX) && requests.contains_key(name) {
                    self.errs.push(FieldError::forbidden(
                        rpath.key(name),
                        "hugepages require a limit",
                    ));
                }
                continue;
            };
            if req > lim {
                self.errs.push(FieldError::invalid_str(
                    rpath.key(name),
                    req.as_str(),
                    format!("must be less than or equal to {name} limit of {lim}"),
                ));
            } else if name.starts_with(HUGEPAGES_PREFIX) && req != lim {
                self.errs.push(FieldError::invalid_str(
                    rpath.key(name),
                    req.as_str(),
                    format!("must be equal to {name} limit of {lim}"),
                ));
            }
        }
    }

    fn volume_mounts(&mut self, c: &Container, path: &FieldPath, volumes: &HashSet<String>) {
        let mut mount_paths = HashSet::new();
        for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
            let p = path.index(i);
            if m.name.is_empty() {
                self.errs.push(FieldError::required(p.child("name")));
            } else if !volumes.contains(&m.name) {
                self.errs.push(FieldError::NotFound {
                    field: p.child("name").to_string(),
                    value: format!("{:?}", m.name),
                });
            }
            if m.mount_path.is_empty() {
                self.errs.push(FieldError::required(p.child("mountPath")));
            } else if !mount_paths.insert(m.mount_path.clone()) {
                self.errs.push(FieldError::invalid_str(
                    p.child("mountPath"),
                    &m.mount_path,
                    "must be unique",
                ));
            }
            if let Some(expr) = m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                if m.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
                    self.errs.push(FieldError::invalid_str(
                        p.child("subPathExpr"),
                        expr,
                        "subPathExpr and subPath are mutually exclusive",
                    ));
                } else if let Some(reason) = relative_path_problem(expr) {
                    self.errs.push(FieldError::invalid_str(
                        p.child("subPathExpr"),
                        expr,
                        reason,
                    ));
                }
            }
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sub.starts_with('/') {
                    self.errs.push(FieldError::invalid_str(
                        p.child("subPath"),
                        sub,
                        "must be a relative path",
                    ));
                } else if sub.split('/').any(|seg| seg == "..") {
                    self.errs.push(FieldError::invalid_str(
                        p.child("subPath"),
                        sub,
                        "must not contain '..'",
                    ));
                }
            }
            if let Some(mp) = m.mount_propagation.as_deref() {
                if !MOUNT_PROPAGATION.contains(&mp) {
                    self.errs.push(FieldError::not_supported(
                        p.child("mountPropagation"),
                        mp,
                        MOUNT_PROPAGATION,
                    ));
                }
            }
        }
    }

    fn probe(
        &mut self,
        probe: &Probe,
        path: &FieldPath,
        success_must_be_one: bool,
        port_names: &HashSet<String>,
    ) {
        let handlers: Vec<&str> = [
            ("exec", probe.exec.is_some()),
            ("httpGet", probe.http_get.is_some()),
            ("tcpSocket", probe.tcp_socket.is_some()),
            ("grpc", probe.grpc.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect();
        self.handler_count(&handlers, path);
        if let Some(h) = &probe.http_get {
            self.port_ref(&h.port, &path.child("httpGet").child("port"), port_names);
            if let Some(s) = h.scheme.as_deref() {
                if s != "HTTP" && s != "HTTPS" {
                    self.errs.push(FieldError::not_supported(
                        path.child("httpGet").child("scheme"),
                        s,
                        &["HTTP", "HTTPS"],
                    ));
                }
            }
        }
        if let Some(t) = &probe.tcp_socket {
            self.port_ref(&t.port, &path.child("tcpSocket").child("port"), port_names);
        }
        if let Some(g) = &probe.grpc {
            if !(1..=65535).contains(&g.port) {
                self.errs.push(FieldError::invalid_int(
                    path.child("grpc").child("port"),
                    g.port.into(),
                    PORT_RANGE_MSG,
                ));
            }
        }
        if let Some(exec) = &probe.exec {
            if exec.command.as_deref().unwrap_or(&[]).is_empty() {
                self.errs
                    .push(FieldError::required(path.child("exec").child("command")));
            }
        }
        for (field, value) in [
            ("initialDelaySeconds", probe.initial_delay_seconds),
            ("timeoutSeconds", probe.timeout_seconds),
            ("periodSeconds", probe.period_seconds),
            ("successThreshold", probe.success_threshold),
            ("failureThreshold", probe.failure_threshold),
        ] {
            if let Some(v) = value.filter(|&v| v < 0) {
                self.errs.push(FieldError::invalid_int(
                    path.child(field),
                    v.into(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        if let Some(g) = probe.termination_grace_period_seconds.filter(|&g| g <= 0) {
            self.errs.push(FieldError::invalid_int(
                path.child("terminationGracePeriodSeconds"),
                g,
                "must be greater than 0",
            ));
        }
        if success_must_be_one {
            if let Some(s) = probe.success_threshold.filter(|&s| s != 1) {
                self.errs.push(FieldError::invalid_int(
                    path.child("successThreshold"),
                    s.into(),
                    "must be 1",
                ));
            }
        }
    }

    fn lifecycle(&mut self, lc: &Lifecycle, path: &FieldPath, port_names: &HashSet<String>) {
        let hooks: [(&str, &Option<LifecycleHandler>); 2] =
            [("postStart", &lc.post_start), ("preStop", &lc.pre_stop)];
        for (name, handler) in hooks {
            let Some(h) = handler else { continue };
            let p = path.child(name);
            let handlers: Vec<&str> = [
                ("exec", h.exec.is_some()),
                ("httpGet", h.http_get.is_some()),
                ("tcpSocket", h.tcp_socket.is_some()),
                ("sleep", h.sleep.is_some()),
            ]
            .into_iter()
            .filter_map(|(n, set)| set.then_some(n))
            .collect();
            self.handler_count(&handlers, &p);
            if let Some(g) = &h.http_get {
                self.port_ref(&g.port, &p.child("httpGet").child("port"), port_names);
            }
            if let Some(t) = &h.tcp_socket {
                self.port_ref(&t.port, &p.child("tcpSocket").child("port"), port_names);
            }
            if let Some(s) = &h.sleep {
                if s.seconds < 0 {
                    self.errs.push(FieldError::invalid_int(
                        p.child("sleep").child("seconds"),
                        s.seconds,
                        "must be non-negative integer",
                    ));
                }
            }
        }
    }

    fn handler_count(&mut self, handlers: &[&str], path: &FieldPath) {
        match handlers {
            [] => self.errs.push(FieldError::required_because(
                path,
                "must specify a handler type",
            )),
            [_] => {}
            [_, rest @ ..] => {
                for h in rest {
                    self.errs.push(FieldError::forbidden(
                        path.child(h),
                        "may not specify more than 1 handler type",
                    ));
                }
            }
        }
    }

    fn port_ref(&mut self, port: &IntOrString, path: &FieldPath, port_names: &HashSet<String>) {
        match port {
            IntOrString::Int(n) => {
                if !(1..=65535).contains(n) {
                    self.errs
                        .push(FieldError::invalid_int(path, (*n).into(), PORT_RANGE_MSG));
                }
            }
            IntOrString::String(name) => {
                let errs = is_valid_port_name(name);
                if !errs.is_empty() {
                    self.push_all(path, name, errs);
                } else if !port_names.contains(name) {
                    // The API server accepts an unknown name; the kubelet then fails the probe.
                    // Say so now rather than at every probe.
                    self.errs.push(FieldError::invalid_str(
                        path,
                        name,
                        "must be the name of a port of this container",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn good() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.35"}]}
        })
    }

    fn errors_of(v: serde_json::Value) -> Vec<String> {
        match validate_pod(&pod(v)) {
            Ok(()) => vec![],
            Err(e) => e.errors().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_minimal_pod_is_valid() {
        assert_eq!(errors_of(good()), Vec::<String>::new());
    }

    #[test]
    fn names() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(!is_dns1123_label("My-name").is_empty());
        assert!(!is_dns1123_label("-a").is_empty());
        assert!(!is_dns1123_label(&"a".repeat(64)).is_empty());
        assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!is_dns1123_subdomain("a..b").is_empty());
        assert!(!is_dns1123_subdomain("").is_empty());
        assert!(is_qualified_name("example.com/My_name").is_empty());
        assert!(is_qualified_name("kubernetes.io/hostname").is_empty());
        assert!(!is_qualified_name("/a").is_empty());
        assert!(!is_qualified_name("a/b/c").is_empty());
        assert!(!is_qualified_name("Example.com/a").is_empty());
        assert!(is_valid_label_value("").is_empty());
        assert!(!is_valid_label_value("a b").is_empty());
        assert!(is_env_var_name("MY_ENV.name-1").is_empty());
        assert!(!is_env_var_name("1ABC").is_empty());
        assert!(!is_env_var_name("A=B").is_empty());
        assert!(is_valid_port_name("http-alt").is_empty());
        assert!(!is_valid_port_name("8080").is_empty());
        assert!(!is_valid_port_name("a--b").is_empty());
    }

    #[test]
    fn missing_image_and_duplicate_names() {
        let mut v = good();
        v["spec"]["containers"] = json!([
            {"name": "app", "image": "busybox"},
            {"name": "app"}
        ]);
        v["spec"]["initContainers"] =
            json!([{"name": "init", "image": "x"}, {"name": "app", "image": "x"}]);
        let errs = errors_of(v);
        assert!(
            errs.contains(&"spec.containers[1].image: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.containers[0].name: Duplicate value: \"app\"".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.containers[1].name: Duplicate value: \"app\"".to_string()),
            "{errs:?}"
        );
    }

    #[test]
    fn no_containers() {
        let mut v = good();
        v["spec"]["containers"] = json!([]);
        assert_eq!(errors_of(v), ["spec.containers: Required value"]);
        let mut v = good();
        v.as_object_mut().unwrap().remove("spec");
        assert_eq!(errors_of(v), ["spec.containers: Required value"]);
    }

    #[test]
    fn bad_quantities_and_requests_over_limits() {
        let mut v = good();
        v["spec"]["containers"][0]["resources"] = json!({
            "limits": {"memory": "12Q", "cpu": "1"},
            "requests": {"cpu": "2", "memory": "1Mi", "Bad Name": "1"}
        });
        let errs = errors_of(v);
        assert!(
            errs.contains(
                &"spec.containers[0].resources.limits[memory]: Invalid value: \"12Q\": quantities \
                  must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less \
                  than or equal to cpu limit of 1"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.containers[0].resources.requests[Bad Name]")),
            "{errs:?}"
        );
    }

    #[test]
    fn invalid_names() {
        let mut v = good();
        v["metadata"]["name"] = json!("Bad_Name");
        v["metadata"]["namespace"] = json!("Kube.System");
        v["spec"]["containers"][0]["name"] = json!("App");
        let errs = errors_of(v);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with(
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
        ));
        assert!(errs[1].starts_with(
            "metadata.namespace: Invalid value: \"Kube.System\": a lowercase RFC 1123 label"
        ));
        assert!(errs[2].starts_with("spec.containers[0].name: Invalid value: \"App\""));
    }

    #[test]
    fn ports_env_and_policies() {
        let mut v = good();
        v["spec"]["restartPolicy"] = json!("Sometimes");
        v["spec"]["containers"][0]["ports"] = json!([
            {"containerPort": 70000},
            {"containerPort": 80, "protocol": "HTTP", "name": "http"},
            {"containerPort": 81, "name": "http", "hostPort": 8080}
        ]);
        v["spec"]["containers"][0]["env"] = json!([{"name": "1BAD", "value": "x"}, {"name": ""}]);
        v["spec"]["containers"].as_array_mut().unwrap().push(json!({
            "name": "other", "image": "x", "ports": [{"containerPort": 82, "hostPort": 8080}]
        }));
        let errs = errors_of(v);
        let expect = [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            "spec.containers[0].ports[2].name: Duplicate value: \"http\"",
            "spec.containers[0].env[1].name: Required value",
            "spec.containers[1].ports[0].hostPort: Duplicate value: \"8080/TCP\"",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ];
        for e in expect {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
        assert!(errs
            .iter()
            .any(|e| e.starts_with("spec.containers[0].env[0].name: Invalid value: \"1BAD\"")));
    }

    #[test]
    fn volumes_and_mounts() {
        let mut v = good();
        v["spec"]["volumes"] = json!([
            {"name": "data", "emptyDir": {}},
            {"name": "data", "hostPath": {"path": "/tmp"}},
            {"name": "both", "emptyDir": {}, "hostPath": {"path": "/x"}},
            {"name": "none"}
        ]);
        v["spec"]["containers"][0]["volumeMounts"] = json!([
            {"name": "data", "mountPath": "/data"},
            {"name": "missing", "mountPath": "/data"}
        ]);
        let errs = errors_of(v);
        let expect = [
            "spec.volumes[1].name: Duplicate value: \"data\"",
            "spec.volumes[2].hostPath: Forbidden: may not specify more than 1 volume type",
            "spec.volumes[3]: Required value: must specify a volume type",
            "spec.containers[0].volumeMounts[1].name: Not found: \"missing\"",
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/data\": must be unique",
        ];
        for e in expect {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
    }

    #[test]
    fn projected_files_and_sub_path_exprs() {
        let mut v = good();
        v["spec"]["volumes"] = json!([
            {"name": "cm", "configMap": {"name": "c", "defaultMode": 0o1000,
                "items": [{"key": "k", "path": "../x"}, {"key": "", "path": "ok", "mode": -1}]}},
            {"name": "dapi", "downwardAPI": {"items": [
                {"path": "/abs", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "r", "resourceFieldRef": {"resource": "limits.cpu"}},
                {"path": "n"}]}},
            {"name": "pr", "projected": {"sources": [{"secret": {"name": "s", "items": [{"key": "k", "path": "..hidden"}]}}]}}
        ]);
        v["spec"]["containers"][0]["volumeMounts"] = json!([
            {"name": "cm", "mountPath": "/a", "subPath": "x", "subPathExpr": "$(Y)"},
            {"name": "cm", "mountPath": "/b", "subPathExpr": "../$(Y)"}
        ]);
        let errs = errors_of(v);
        let expect = [
            "spec.volumes[0].configMap.defaultMode: Invalid value: 512: must be a number between 0 and 0777 (octal), both inclusive",
            "spec.volumes[0].configMap.items[0].path: Invalid value: \"../x\": must not contain '..'",
            "spec.volumes[0].configMap.items[1].key: Required value",
            "spec.volumes[0].configMap.items[1].mode: Invalid value: -1: must be a number between 0 and 0777 (octal), both inclusive",
            "spec.volumes[1].downwardAPI.items[0].path: Invalid value: \"/abs\": must be a relative path",
            "spec.volumes[1].downwardAPI.items[1].resourceFieldRef.containerName: Required value",
            "spec.volumes[1].downwardAPI.items[2]: Required value: one of fieldRef and resourceFieldRef is required",
            "spec.volumes[2].projected.sources[0].secret.items[0].path: Invalid value: \"..hidden\": must not start with '..'",
            "spec.containers[0].volumeMounts[0].subPathExpr: Invalid value: \"$(Y)\": subPathExpr and subPath are mutually exclusive",
            "spec.containers[0].volumeMounts[1].subPathExpr: Invalid value: \"../$(Y)\": must not contain '..'",
        ];
        for e in expect {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
    }

    #[test]
    fn probes_need_exactly_one_handler() {
        let mut v = good();
        v["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "name": "http"}]);
        v["spec"]["containers"][0]["livenessProbe"] = json!({"successThreshold": 2});
        v["spec"]["containers"][0]["readinessProbe"] = json!({
            "httpGet": {"port": "http"}, "tcpSocket": {"port": 80}
        });
        v["spec"]["containers"][0]["startupProbe"] = json!({"tcpSocket": {"port": "nope"}});
        let errs = errors_of(v);
        let expect = [
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            "spec.containers[0].startupProbe.tcpSocket.port: Invalid value: \"nope\": must be the name of a port of this container",
        ];
        for e in expect {
            assert!(errs.contains(&e.to_string()), "missing {e} in {errs:#?}");
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn aggregate_display() {
        let one = ValidationError(vec![FieldError::required("spec.containers")]);
        assert_eq!(one.to_string(), "spec.containers: Required value");
        let two = ValidationError(vec![
            FieldError::required("a"),
            FieldError::duplicate("b", "x"),
        ]);
        assert_eq!(
            two.to_string(),
            "[a: Required value, b: Duplicate value: \"x\"]"
        );
        assert!(two.has_field("b"));
    }
}
