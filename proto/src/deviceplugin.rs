//! The device plugin API v1beta1 (`k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1`): the
//! kubelet's `Registration` service and the plugins' `DevicePlugin` service, generated from
//! `protos/deviceplugin/v1beta1/api.proto`, plus the API's constants.

tonic::include_proto!("v1beta1");

/// The API version a plugin must register with.
pub const VERSION: &str = "v1beta1";
/// The kubelet's registration socket's file name in the device-plugins directory.
pub const KUBELET_SOCKET: &str = "kubelet.sock";
/// `Device.health` of a usable device.
pub const HEALTHY: &str = "Healthy";
/// `Device.health` of a device that must not be handed out.
pub const UNHEALTHY: &str = "Unhealthy";
