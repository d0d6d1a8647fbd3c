//! Generates the device-plugin (v1beta1) and PodResources (v1) gRPC code from `protos/` with
//! `protoc` (Debian's `protobuf-compiler`, which `scripts/runtime up` installs).

fn main() -> std::io::Result<()> {
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Allocate's envs and annotations in a stable order (checkpoint, CRI config).
        .btree_map(".v1beta1")
        .compile_protos(
            &[
                "protos/deviceplugin/v1beta1/api.proto",
                "protos/podresources/v1/api.proto",
            ],
            &["protos"],
        )
}
