//! Compiles the wire contract in `proto/` with no system `protoc`: `protox` parses the files into
//! a descriptor set, `tonic-prost-build` generates messages, clients and servers from it, and the
//! encoded set is kept in `OUT_DIR` for server reflection.

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/verdict/v1/bank.proto",
    "proto/verdict/v1/coordinator.proto",
    "proto/verdict/v1/participant.proto",
];

const INTERNAL: &str = "proto/verdict/internal/raft.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("verdict_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    // Traffic among cluster nodes: generated the same way, but kept out of reflection.
    tonic_prost_build::configure().compile_fds(protox::compile([INTERNAL], ["proto"])?)?;
    Ok(())
}
