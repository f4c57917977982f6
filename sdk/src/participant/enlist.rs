//! Enlisting: a participant's application-facing service, asked to stage work for a
//! transaction, first enlists the participant with the coordinator — so the coordinator will
//! prepare it — and learns the transaction's deadline, past which staged work that was never
//! prepared can be discarded. An application that enlisted the participant itself (named it at
//! Begin) may say so instead, with the deadline, sparing the participant that round trip.

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

    /// The participant's name, as it enlists.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The participant's `verdict.v1.Participant` endpoint, as it enlists.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// As [`Enlister::enlist`], unless the application says it has enlisted this participant in
    /// `txn` already by giving the transaction's deadline (`deadline_unix_ms` above 0): then
    /// that deadline is taken as it is. One further ahead than any transaction may last is
    /// refused with `INVALID_ARGUMENT`.
    pub async fn enlist_unless_enlisted(
        &self,
        txn: TxnId,
        deadline_unix_ms: u64,
    ) -> Result<Instant, Status> {
        if deadline_unix_ms == 0 {
            return self.enlist(txn).await;
        }
        let ahead = deadline_unix_ms.saturating_sub(crate::world::now_unix_ms());
        if ahead > MAX_DEADLINE_AHEAD.as_millis() as u64 {
            return Err(Status::invalid_argument(format!(
                "the deadline given for {txn} is {ahead} ms ahead, more than a transaction may \
                 last ({} h): pass the deadline_unix_ms Begin answered, or 0 to have the \
                 participant enlist itself",
                MAX_DEADLINE_AHEAD.as_secs() / 3600
            )));
        }
        Ok(instant_of(deadline_unix_ms))
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

/// The furthest ahead a deadline given by an application may be.
const MAX_DEADLINE_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// The local instant of a deadline given in Unix milliseconds.
fn instant_of(deadline_unix_ms: u64) -> Instant {
    let now_ms = crate::world::now_unix_ms();
    Instant::now() + Duration::from_millis(deadline_unix_ms.saturating_sub(now_ms))
}
