//! Lean `ListPodSandbox` / `ListContainers` responses, for callers that list often and read
//! little (the PLEG relists every second and reads only IDs and states).
//!
//! The messages here are hand-written prost messages that declare a few fields of
//! `runtime.v1.PodSandbox` and `runtime.v1.Container`, with the tags of the CRI's `api.proto`.
//! The runtime sends the full objects as usual; prost skips every undeclared field (labels,
//! annotations, image, metadata of containers) on the wire without allocating, where decoding
//! into the generated types builds a `HashMap<String, String>` per label and annotation map.
//! Containers carry no pod UID here: it is their sandbox's `metadata.uid` (the kubelet sets it
//! to the pod's UID, as it does the `io.kubernetes.pod.uid` label).
//!
//! The RPCs are the ordinary ones (`/runtime.v1.RuntimeService/ListPodSandbox`, ...), sent over
//! the caller's channel with the same requests; only the response type differs.

use std::collections::HashMap;

use tonic::client::Grpc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::{ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter};

/// `runtime.v1.PodSandboxMetadata`, UID only (`uid` = 2; name = 1, namespace = 3 and
/// attempt = 4 are skipped).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PodSandboxMetadata {
    /// The pod's UID.
    #[prost(string, tag = "2")]
    pub uid: String,
}

/// `runtime.v1.PodSandbox` without labels (5), annotations (6) and runtime handler (7).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// A `runtime.v1.PodSandboxState`.
    #[prost(int32, tag = "3")]
    pub state: i32,
    /// Nanoseconds since the epoch.
    #[prost(int64, tag = "4")]
    pub created_at: i64,
}

impl PodSandbox {
    /// The pod UID from the sandbox metadata, empty when the runtime sent none.
    pub fn pod_uid(&self) -> &str {
        self.metadata.as_ref().map_or("", |m| m.uid.as_str())
    }
}

/// `runtime.v1.Container` without metadata (3), image (4), image_ref (5), labels (8),
/// annotations (9) and image_id (10).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    /// A `runtime.v1.ContainerState`.
    #[prost(int32, tag = "6")]
    pub state: i32,
    /// Nanoseconds since the epoch.
    #[prost(int64, tag = "7")]
    pub created_at: i64,
}

/// `runtime.v1.ListPodSandboxResponse` of lean sandboxes.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

/// `runtime.v1.ListContainersResponse` of lean containers.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<Container>,
}

const LIST_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/ListPodSandbox";
const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";

/// The two list RPCs of `runtime.v1.RuntimeService`, answered with lean responses. Cheap to
/// clone (it shares the channel).
#[derive(Clone, Debug)]
pub struct LeanClient {
    grpc: Grpc<Channel>,
}

impl LeanClient {
    pub fn new(channel: Channel) -> Self {
        Self {
            grpc: Grpc::new(channel),
        }
    }

    /// Limits the size of a decoded response (tonic's default is 4 MiB).
    pub fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.grpc = self.grpc.max_decoding_message_size(limit);
        self
    }

    async fn unary<Req, Resp>(
        &mut self,
        request: Req,
        path: &'static str,
    ) -> Result<Response<Resp>, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        // As the generated clients do: a channel that cannot take a request is `Unknown`.
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
        self.grpc
            .unary(
                Request::new(request),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Req, Resp>::default(),
            )
            .await
    }

    /// `ListPodSandbox`, lean.
    pub async fn list_pod_sandbox(
        &mut self,
        request: ListPodSandboxRequest,
    ) -> Result<Response<ListPodSandboxResponse>, Status> {
        self.unary(request, LIST_POD_SANDBOX).await
    }

    /// `ListContainers`, lean.
    pub async fn list_containers(
        &mut self,
        request: ListContainersRequest,
    ) -> Result<Response<ListContainersResponse>, Status> {
        self.unary(request, LIST_CONTAINERS).await
    }
}

/// The sandboxes and containers matching `label_selector`, both lists at once, over `channel`.
pub async fn list(
    channel: &Channel,
    label_selector: &HashMap<String, String>,
) -> Result<(Vec<PodSandbox>, Vec<Container>), Status> {
    let mut sb = LeanClient::new(channel.clone());
    let mut ct = sb.clone();
    let (sandboxes, containers) = tokio::try_join!(
        sb.list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: label_selector.clone(),
                ..Default::default()
            }),
        }),
        ct.list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                label_selector: label_selector.clone(),
                ..Default::default()
            }),
        }),
    )?;
    Ok((
        sandboxes.into_inner().items,
        containers.into_inner().containers,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message;

    use super::*;
    use crate::cri;

    fn labels(uid: &str) -> HashMap<String, String> {
        HashMap::from([
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
            ("io.kubernetes.pod.name".to_string(), "web".to_string()),
        ])
    }

    /// A full response decodes into the lean one with the fields it declares, and the tags
    /// match the CRI's: a wrong tag would decode as a default value here.
    #[test]
    fn full_responses_decode_lean() {
        let sandboxes = cri::ListPodSandboxResponse {
            items: vec![cri::PodSandbox {
                id: "sb1".into(),
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u1".into(),
                    namespace: "default".into(),
                    attempt: 3,
                }),
                state: cri::PodSandboxState::SandboxNotready as i32,
                created_at: 42,
                labels: labels("u1"),
                annotations: labels("x"),
                runtime_handler: "runc".into(),
            }],
        };
        let lean = ListPodSandboxResponse::decode(sandboxes.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            lean.items,
            vec![PodSandbox {
                id: "sb1".into(),
                metadata: Some(PodSandboxMetadata { uid: "u1".into() }),
                state: cri::PodSandboxState::SandboxNotready as i32,
                created_at: 42,
            }]
        );
        assert_eq!(lean.items[0].pod_uid(), "u1");

        let containers = cri::ListContainersResponse {
            containers: vec![cri::Container {
                id: "c1".into(),
                pod_sandbox_id: "sb1".into(),
                metadata: Some(cri::ContainerMetadata {
                    name: "main".into(),
                    attempt: 1,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                image_ref: "sha256:00".into(),
                state: cri::ContainerState::ContainerExited as i32,
                created_at: 7,
                labels: labels("u1"),
                annotations: labels("y"),
                image_id: "sha256:00".into(),
            }],
        };
        let lean = ListContainersResponse::decode(containers.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            lean.containers,
            vec![Container {
                id: "c1".into(),
                pod_sandbox_id: "sb1".into(),
                state: cri::ContainerState::ContainerExited as i32,
                created_at: 7,
            }]
        );
        assert_eq!(PodSandbox::default().pod_uid(), "");
    }
}
