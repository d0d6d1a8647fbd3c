//! Pod manifests as the file and URL sources read them: YAML or JSON, a Pod or (from a URL) a
//! PodList, through decoding, the static-pod defaults and validation.
//!
//! Checked: no panic; an accepted pod carries the static-pod identity (name suffixed with the
//! node, UID = config hash, `nodeName` set) and validates again after a JSON round trip.

#![no_main]

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kubelet_rs::sources::file::decode_manifest;
use kubelet_rs::sources::url::decode_url_document;
use kubelet_rs::sources::validation::validate_pod;
use libfuzzer_sys::fuzz_target;

fn check(pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    assert!(name.ends_with("-node-a"), "{name}");
    let ann = pod.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        ann.get("kubernetes.io/config.hash"),
        pod.metadata.uid.as_ref()
    );
    // The pod name takes the node name lowercased; `nodeName` keeps it as given.
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("Node-A")
    );
    let again: Pod = serde_json::from_slice(&serde_json::to_vec(pod).unwrap()).unwrap();
    validate_pod(&again).expect("an accepted pod validates after a round trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode_manifest(data, Path::new("/fuzz/pod.yaml"), "Node-A") {
        check(&d.pod);
    }
    if let Ok(pods) = decode_url_document(data, "http://fuzz/pods", "Node-A") {
        for p in &pods {
            check(p);
        }
    }
});
