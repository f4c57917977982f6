//! The wire contract (`proto/verdict/v1`), generated at build time, and the metadata keys it
//! names.

#![allow(missing_docs, clippy::all)]

tonic::include_proto!("verdict.v1");

/// The encoded descriptor set of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/verdict_descriptor.bin"));

/// The trailing metadata key that names the leader's URL in an `UNAVAILABLE` answer.
pub const LEADER_METADATA: &str = "verdict-leader";

/// The metadata key of a `RESOURCE_EXHAUSTED` answer (a full coordinator, a rate limit) that
/// says how long to wait before sending the request again, in milliseconds.
pub const RETRY_AFTER_METADATA: &str = "retry-after-ms";

/// The W3C Trace Context header: read from the application's Begin and Commit, carried into
/// every Prepare, Commit and Abort sent to the transaction's participants.
pub const TRACEPARENT: &str = "traceparent";
