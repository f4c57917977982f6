//! The wire contract: the public `verdict.v1` (generated in `verdict-sdk`), and the traffic
//! among cluster nodes.

pub use verdict_sdk::proto::*;

/// Traffic among cluster nodes (`proto/verdict/internal`), not a public contract.
pub mod internal {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("verdict.internal");
}
