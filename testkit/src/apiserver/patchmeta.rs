//! Patch metadata of the served types, hand-written from the Go API types' struct tags
//! (`patchStrategy`, `patchMergeKey`, `+listType`, `+listMapKey`): which lists merge by key
//! (containers by name, conditions by type, addresses by type, ...), which merge as sets
//! (finalizers) and which are replaced whole. Strategic merge patch, server-side apply and the
//! OpenAPI extensions all read it.

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Merged element by element, matched on `key` (`+listType=map`).
    Map {
        key: &'static str,
        map_keys: &'static [&'static str],
    },
    /// Merged as a set of scalars (`+listType=set` with `patchStrategy:"merge"`).
    Set,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta {
    pub list: ListKind,
    /// `patchStrategy:"merge,retainKeys"`.
    pub retain_keys: bool,
}

const fn map(key: &'static str, map_keys: &'static [&'static str]) -> FieldMeta {
    FieldMeta {
        list: ListKind::Map { key, map_keys },
        retain_keys: false,
    }
}

const fn map_retain(key: &'static str) -> FieldMeta {
    FieldMeta {
        list: ListKind::Map { key, map_keys: &[] },
        retain_keys: true,
    }
}

const SET: FieldMeta = FieldMeta {
    list: ListKind::Set,
    retain_keys: false,
};

/// (type, field) → merge behaviour. Lists not named here are atomic: a patch replaces them.
static TABLE: &[(&str, &str, FieldMeta)] = &[
    ("ObjectMeta", "finalizers", SET),
    ("ObjectMeta", "ownerReferences", map("uid", &["uid"])),
    ("PodSpec", "volumes", map_retain("name")),
    ("PodSpec", "initContainers", map("name", &["name"])),
    ("PodSpec", "containers", map("name", &["name"])),
    ("PodSpec", "ephemeralContainers", map("name", &["name"])),
    ("PodSpec", "imagePullSecrets", map("name", &["name"])),
    ("PodSpec", "hostAliases", map("ip", &["ip"])),
    (
        "PodSpec",
        "topologySpreadConstraints",
        map("topologyKey", &["topologyKey", "whenUnsatisfiable"]),
    ),
    ("PodSpec", "schedulingGates", map("name", &["name"])),
    ("PodSpec", "resourceClaims", map_retain("name")),
    (
        "Container",
        "ports",
        map("containerPort", &["containerPort", "protocol"]),
    ),
    ("Container", "env", map("name", &["name"])),
    (
        "Container",
        "volumeMounts",
        map("mountPath", &["mountPath"]),
    ),
    (
        "Container",
        "volumeDevices",
        map("devicePath", &["devicePath"]),
    ),
    (
        "EphemeralContainer",
        "ports",
        map("containerPort", &["containerPort", "protocol"]),
    ),
    ("EphemeralContainer", "env", map("name", &["name"])),
    (
        "EphemeralContainer",
        "volumeMounts",
        map("mountPath", &["mountPath"]),
    ),
    (
        "EphemeralContainer",
        "volumeDevices",
        map("devicePath", &["devicePath"]),
    ),
    ("PodStatus", "conditions", map("type", &["type"])),
    ("PodStatus", "podIPs", map("ip", &["ip"])),
    ("PodStatus", "hostIPs", map("ip", &["ip"])),
    ("PodStatus", "resourceClaimStatuses", map_retain("name")),
    ("NodeSpec", "podCIDRs", SET),
    ("NodeStatus", "conditions", map("type", &["type"])),
    ("NodeStatus", "addresses", map("type", &["type"])),
    ("NamespaceStatus", "conditions", map("type", &["type"])),
    ("ServiceSpec", "ports", map("port", &["port", "protocol"])),
    ("ServiceStatus", "conditions", map("type", &["type"])),
    ("ServiceAccount", "secrets", map("name", &["name"])),
];

pub fn field_meta(type_name: &str, field: &str) -> Option<FieldMeta> {
    TABLE
        .iter()
        .find(|(t, f, _)| *t == type_name && *f == field)
        .map(|(_, _, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name_and_tolerations_are_atomic() {
        assert_eq!(
            field_meta("PodSpec", "containers").unwrap().list,
            ListKind::Map {
                key: "name",
                map_keys: &["name"]
            }
        );
        assert!(field_meta("PodSpec", "tolerations").is_none());
        assert!(field_meta("PodSpec", "volumes").unwrap().retain_keys);
    }
}
