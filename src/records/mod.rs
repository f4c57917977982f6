//! The records participant: records under unique keys, inserted by Verdict transactions — an
//! order under its order id, a courier's assignment under the courier's name (at most one order
//! per courier). Reached by applications through `verdict.v1.Records` and by the coordinator
//! through `verdict.v1.Participant`; `verdict participant records`.
//!
//! - [`store`]: the records on the embedded [`KvResource`](crate::kv::KvResource): an insertion
//!   is staged, takes the first free of its keys when it prepares (or votes NO), and becomes
//!   visible when it commits.
//! - [`service`]: `verdict.v1.Records` over gRPC; `Insert` enlists the service in the
//!   transaction.

pub mod service;
pub mod store;

use std::future::Future;

use crate::participant::server::ParticipantOptions;
use crate::staging;
pub use store::{Record, RecordStore, Wanted};

/// Runs a records participant until `shutdown`; `item` names what a key stands for ("order",
/// "courier") in the reasons it votes NO with.
pub async fn run(
    options: ParticipantOptions,
    item: String,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let open = |db| Ok(RecordStore::open(db)?);
    let add = |participant, enlister, router: tonic::transport::server::Router| {
        let records = service::RecordsService::new(participant, enlister, item);
        router.add_service(records.into_server())
    };
    staging::run(options, "records", open, add, shutdown).await
}
