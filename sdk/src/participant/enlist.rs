//! Enlisting: a participant's application-facing service, asked to stage work for a
//! transaction, first enlists the participant with the coordinator — so the coordinator will
//! prepare it — and learns the transaction's deadline, past which staged work that was never
//! prepared can be discarded.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;

use crate::client::Client;
use crate::TxnId;

/// A participant as it enlists: its name and `verdict.v1.Participant` endpoint, and the
/// coordinator it enlists with.
pub struct Enlister {
    coordinator: Client,
    name: String,
    endpoint: String,
}

impl Enlister {
    pub fn new(coordinator: Client, name: String, endpoint: String) -> Self {
        Enlister {
            coordinator,
            name,
            endpoint,
        }
    }

    /// Enlists in `txn` (again, harmlessly, on a retry); returns when the transaction's deadline
    /// passes, on this machine's clock. A refusal keeps the coordinator's code, its message
    /// prefixed with what was being done.
    pub async fn enlist(&self, txn: TxnId) -> Result<Instant, Status> {
        let enlisted = self
            .coordinator
            .enlist(txn, &self.name, &self.endpoint)
            .await
            .map_err(|status| {
                Status::new(
                    status.code(),
                    format!("enlisting in {txn} failed: {}", status.message()),
                )
            })?;
        Ok(instant_of(enlisted.deadline_unix_ms))
    }
}

/// The local instant of a deadline given in Unix milliseconds.
fn instant_of(deadline_unix_ms: u64) -> Instant {
    let now_ms = crate::world::now_unix_ms();
    Instant::now() + Duration::from_millis(deadline_unix_ms.saturating_sub(now_ms))
}
