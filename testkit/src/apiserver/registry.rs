//! The table of served resources: group, version, plural, kind, scope, verbs, short names,
//! subresources, selectable fields and the typed codec of each. Discovery, OpenAPI, routing,
//! decoding and the generic REST handlers all read this one table.

use k8s_openapi::api::{
    authentication::v1 as authn, authorization::v1 as authz, certificates::v1 as certs,
    coordination::v1 as coord, core::v1 as core, policy::v1 as policy,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::errors::Target;
use super::openapi::{trace_root, TypeGraph};

/// A subresource as discovery lists it (`pods/status`, `pods/eviction` of kind
/// `policy/v1 Eviction`, ...).
#[derive(Debug)]
pub struct SubDef {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// How the body of an object is checked: a round trip through the typed `k8s-openapi` struct
/// drops unknown fields and rejects wrong types, as kube-apiserver's decoder does.
pub type DecodeFn = fn(Value) -> Result<Value, String>;
pub type TraceFn = fn(&mut TypeGraph) -> String;

#[derive(Debug)]
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [SubDef],
    /// Kept in the store (false for review-style resources that only answer a create).
    pub stored: bool,
    /// Has a `status` subresource: writes to the main resource keep the stored status and
    /// writes to `/status` keep everything else.
    pub status_subresource: bool,
    /// A PUT of a missing object creates it (`AllowCreateOnUpdate`).
    pub create_on_update: bool,
    /// DELETE answers with the deleted object rather than a `Status`.
    pub return_deleted: bool,
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
    pub decode: DecodeFn,
    pub trace: TraceFn,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn target(&self) -> Target<'static> {
        Target {
            group: self.group,
            resource: self.resource,
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&'static SubDef> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The storage key of the resource (`pods`, `leases.coordination.k8s.io`).
    pub fn key(&self) -> &'static str {
        self.resource
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Decode a body of a given typed struct (subresource bodies such as `Binding`).
pub fn decode_as<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    roundtrip::<T>(v)
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const CONNECT_VERBS: &[&str] = &["create", "get"];
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

macro_rules! sub {
    ($name:expr, $kind:expr, $verbs:expr) => {
        SubDef {
            name: $name,
            group: "",
            version: "",
            kind: $kind,
            verbs: $verbs,
        }
    };
    ($name:expr, $group:expr, $version:expr, $kind:expr, $verbs:expr) => {
        SubDef {
            name: $name,
            group: $group,
            version: $version,
            kind: $kind,
            verbs: $verbs,
        }
    };
}

pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        resource: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        subresources: &[
            sub!("finalize", "Namespace", &["update"]),
            sub!("status", "Namespace", STATUS_VERBS),
        ],
        stored: true,
        status_subresource: true,
        create_on_update: false,
        return_deleted: true,
        field_labels: &["status.phase"],
        decode: roundtrip::<core::Namespace>,
        trace: trace_root::<core::Namespace>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[
            sub!("proxy", "NodeProxyOptions", PROXY_VERBS),
            sub!("status", "Node", STATUS_VERBS),
        ],
        stored: true,
        status_subresource: true,
        create_on_update: false,
        return_deleted: false,
        field_labels: &["spec.unschedulable"],
        decode: roundtrip::<core::Node>,
        trace: trace_root::<core::Node>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            sub!("attach", "PodAttachOptions", CONNECT_VERBS),
            sub!("binding", "Binding", &["create"]),
            sub!("ephemeralcontainers", "Pod", STATUS_VERBS),
            sub!("eviction", "policy", "v1", "Eviction", &["create"]),
            sub!("exec", "PodExecOptions", CONNECT_VERBS),
            sub!("log", "Pod", &["get"]),
            sub!("portforward", "PodPortForwardOptions", CONNECT_VERBS),
            sub!("proxy", "PodProxyOptions", PROXY_VERBS),
            sub!("status", "Pod", STATUS_VERBS),
        ],
        stored: true,
        status_subresource: true,
        create_on_update: false,
        return_deleted: true,
        field_labels: &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        decode: roundtrip::<core::Pod>,
        trace: trace_root::<core::Pod>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        status_subresource: false,
        create_on_update: true,
        return_deleted: false,
        field_labels: &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        decode: roundtrip::<core::Event>,
        trace: trace_root::<core::Event>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &["type"],
        decode: roundtrip::<core::Secret>,
        trace: trace_root::<core::Secret>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<core::ConfigMap>,
        trace: trace_root::<core::ConfigMap>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[sub!(
            "token",
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            &["create"]
        )],
        stored: true,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<core::ServiceAccount>,
        trace: trace_root::<core::ServiceAccount>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            sub!("proxy", "ServiceProxyOptions", PROXY_VERBS),
            sub!("status", "Service", STATUS_VERBS),
        ],
        stored: true,
        status_subresource: true,
        create_on_update: false,
        return_deleted: false,
        field_labels: &["spec.clusterIP", "spec.type"],
        decode: roundtrip::<core::Service>,
        trace: trace_root::<core::Service>,
    },
    ResourceDef {
        group: "",
        version: "v1",
        resource: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        status_subresource: false,
        create_on_update: true,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<core::Endpoints>,
        trace: trace_root::<core::Endpoints>,
    },
    ResourceDef {
        group: "certificates.k8s.io",
        version: "v1",
        resource: "certificatesigningrequests",
        singular: "certificatesigningrequest",
        kind: "CertificateSigningRequest",
        namespaced: false,
        short_names: &["csr"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[
            sub!("approval", "CertificateSigningRequest", STATUS_VERBS),
            sub!("status", "CertificateSigningRequest", STATUS_VERBS),
        ],
        stored: true,
        status_subresource: true,
        create_on_update: false,
        return_deleted: false,
        field_labels: &["spec.signerName"],
        decode: roundtrip::<certs::CertificateSigningRequest>,
        trace: trace_root::<certs::CertificateSigningRequest>,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        resource: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
        stored: true,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<coord::Lease>,
        trace: trace_root::<coord::Lease>,
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        resource: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        stored: false,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<authn::SelfSubjectReview>,
        trace: trace_root::<authn::SelfSubjectReview>,
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        resource: "tokenreviews",
        singular: "tokenreview",
        kind: "TokenReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        stored: false,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<authn::TokenReview>,
        trace: trace_root::<authn::TokenReview>,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        resource: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        stored: false,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<authz::SelfSubjectAccessReview>,
        trace: trace_root::<authz::SelfSubjectAccessReview>,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        resource: "subjectaccessreviews",
        singular: "subjectaccessreview",
        kind: "SubjectAccessReview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: &["create"],
        subresources: &[],
        stored: false,
        status_subresource: false,
        create_on_update: false,
        return_deleted: false,
        field_labels: &[],
        decode: roundtrip::<authz::SubjectAccessReview>,
        trace: trace_root::<authz::SubjectAccessReview>,
    },
];

/// Kinds served only as subresource bodies; they get OpenAPI schemas too.
pub fn subresource_kinds() -> Vec<(&'static str, &'static str, &'static str, TraceFn)> {
    vec![
        ("", "v1", "Binding", trace_root::<core::Binding> as TraceFn),
        ("policy", "v1", "Eviction", trace_root::<policy::Eviction>),
        (
            "authentication.k8s.io",
            "v1",
            "TokenRequest",
            trace_root::<authn::TokenRequest>,
        ),
    ]
}

pub fn decode_binding(v: Value) -> Result<Value, String> {
    roundtrip::<core::Binding>(v)
}

pub fn decode_eviction(v: Value) -> Result<Value, String> {
    roundtrip::<policy::Eviction>(v)
}

pub fn decode_token_request(v: Value) -> Result<Value, String> {
    roundtrip::<authn::TokenRequest>(v)
}

/// The resource served at `group`/`version` under a plural name.
pub fn lookup(group: &str, version: &str, resource: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.resource == resource)
}

pub fn by_kind(group: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

pub fn by_key(key: &str) -> Option<&'static ResourceDef> {
    RESOURCES.iter().find(|r| r.key() == key)
}

/// Served group/versions in discovery order, the legacy core group first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_drops_unknown_fields_and_rejects_wrong_types() {
        let pod = (lookup("", "v1", "pods").unwrap().decode)(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": 1}}}]}
        }))
        .unwrap();
        assert!(pod["metadata"].get("bogus").is_none());
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        let err = (lookup("", "v1", "pods").unwrap().decode)(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": "nope"}
        }))
        .unwrap_err();
        assert!(err.starts_with("spec.containers:"), "{err}");
    }
}
