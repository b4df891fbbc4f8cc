//! With the `grpc` feature, generates the client of tusd's gRPC hook
//! protocol (proto/hook.proto) with tonic; needs `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/hook.proto");
    #[cfg(feature = "grpc")]
    tonic_prost_build::configure()
        .build_server(false)
        .compile_protos(&["proto/hook.proto"], &["proto"])?;
    Ok(())
}
