//! Compiles the traffic among cluster nodes (`proto/verdict/internal`, not a public contract)
//! with no system `protoc`, as `verdict-sdk` compiles the public contract: `protox` parses, and
//! `tonic-prost-build` generates the messages, client and server.

const INTERNAL: &str = "proto/verdict/internal/raft.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/verdict/internal");
    tonic_prost_build::configure().compile_fds(protox::compile([INTERNAL], ["proto"])?)?;
    Ok(())
}
