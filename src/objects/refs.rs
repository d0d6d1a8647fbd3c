//! The Secrets and ConfigMaps a pod references (`podutil.VisitPodSecretNames` and
//! `VisitPodConfigmapNames`): volumes (secret, configMap, projected sources), every container's
//! (init, regular, ephemeral) `env[].valueFrom` and `envFrom`, and `imagePullSecrets`.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, Pod};

/// The names a pod references, in its own namespace.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodReferences {
    pub secrets: HashSet<String>,
    pub config_maps: HashSet<String>,
}

/// A container's `env` and `envFrom`.
type EnvOf<'a> = (Option<&'a Vec<EnvVar>>, Option<&'a Vec<EnvFromSource>>);

pub fn pod_references(pod: &Pod) -> PodReferences {
    let mut r = PodReferences::default();
    let Some(spec) = &pod.spec else {
        return r;
    };
    let add = |set: &mut HashSet<String>, name: &str| {
        if !name.is_empty() {
            set.insert(name.to_string());
        }
    };
    for s in spec.image_pull_secrets.iter().flatten() {
        add(&mut r.secrets, &s.name);
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = &v.secret {
            add(&mut r.secrets, s.secret_name.as_deref().unwrap_or(""));
        }
        if let Some(c) = &v.config_map {
            add(&mut r.config_maps, &c.name);
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                add(&mut r.secrets, &s.name);
            }
            if let Some(c) = &src.config_map {
                add(&mut r.config_maps, &c.name);
            }
        }
    }
    let env_sets: Vec<EnvOf<'_>> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| (c.env.as_ref(), c.env_from.as_ref()))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.env.as_ref(), c.env_from.as_ref())),
        )
        .collect();
    for (env, env_from) in env_sets {
        for e in env.into_iter().flatten() {
            if let Some(vf) = &e.value_from {
                if let Some(k) = &vf.secret_key_ref {
                    add(&mut r.secrets, &k.name);
                }
                if let Some(k) = &vf.config_map_key_ref {
                    add(&mut r.config_maps, &k.name);
                }
            }
        }
        for f in env_from.into_iter().flatten() {
            if let Some(s) = &f.secret_ref {
                add(&mut r.secrets, &s.name);
            }
            if let Some(c) = &f.config_map_ref {
                add(&mut r.config_maps, &c.name);
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_place_a_pod_names_an_object_is_found() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "vol-secret"}},
                    {"name": "b", "configMap": {"name": "vol-cm"}},
                    {"name": "c", "projected": {"sources": [
                        {"secret": {"name": "proj-secret"}},
                        {"configMap": {"name": "proj-cm"}},
                        {"serviceAccountToken": {"path": "token"}}
                    ]}},
                    {"name": "d", "emptyDir": {}}
                ],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-from"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                    {"name": "C", "value": "x"}
                ], "envFrom": [{"configMapRef": {"name": "from-cm"}}]}],
                "ephemeralContainers": [{"name": "e", "envFrom": [{"secretRef": {"name": "eph"}}]}]
            }
        }))
        .unwrap();
        let r = pod_references(&pod);
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        assert_eq!(
            r.secrets,
            set(&[
                "pull",
                "vol-secret",
                "proj-secret",
                "init-from",
                "env-secret",
                "eph"
            ])
        );
        assert_eq!(
            r.config_maps,
            set(&["vol-cm", "proj-cm", "env-cm", "from-cm"])
        );
    }
}
