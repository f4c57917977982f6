//! The wire contract (`proto/verdict/v1`), generated at build time.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("verdict.v1");

/// The encoded descriptor set of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/verdict_descriptor.bin"));

/// Traffic among cluster nodes (`proto/verdict/internal`), not a public contract.
pub mod internal {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("verdict.internal");
}
