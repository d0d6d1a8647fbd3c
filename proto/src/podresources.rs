//! The PodResources API v1 (`k8s.io/kubelet/pkg/apis/podresources/v1`): which devices the
//! node's pods and containers hold, and which the node can hand out. Generated from
//! `protos/podresources/v1/api.proto`.

tonic::include_proto!("v1");
