//! Compiles the public wire contract (`proto/verdict/v1` at the repository root) with no system
//! `protoc`: `protox` parses the files into a descriptor set, `tonic-prost-build` generates
//! messages, clients and servers from it, and the encoded set is kept in `OUT_DIR` for server
//! reflection.

use prost::Message;

const PROTO_ROOT: &str = "../proto";

const PROTOS: &[&str] = &[
    "verdict/v1/bank.proto",
    "verdict/v1/coordinator.proto",
    "verdict/v1/participant.proto",
    "verdict/v1/records.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}/verdict/v1");
    let files = PROTOS.iter().map(|file| format!("{PROTO_ROOT}/{file}"));
    let descriptors = protox::compile(files, [PROTO_ROOT])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("verdict_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
