//! Test infrastructure for kubelet-rs, never shipped: `test-apiserver`, a single-process,
//! in-memory Kubernetes API server that the real `kubectl` and the `kube` crate accept
//! ([`apiserver`]), and [`TestApiServer`], a harness that starts it for a test, runs `kubectl`
//! against it, restarts it and cleans up ([`harness`]).

pub mod apiserver;
pub mod harness;

pub use harness::{KubectlOutput, Options, TestApiServer, KUBECTL};
