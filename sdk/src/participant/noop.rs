//! A participant with nothing to do: it votes YES to every transaction (the runtime still
//! journals the YES and the commit, forced), for measuring the protocol's own cost.

use crate::participant::{Resource, ResourceError};
use crate::{TxnId, Vote};

/// Votes YES; commits and aborts nothing.
pub struct Noop;

impl Resource for Noop {
    async fn prepare(&self, _txn: TxnId) -> Result<Vote, ResourceError> {
        Ok(Vote::Yes)
    }

    async fn commit(&self, _txn: TxnId) -> Result<(), ResourceError> {
        Ok(())
    }

    async fn abort(&self, _txn: TxnId) -> Result<(), ResourceError> {
        Ok(())
    }

    async fn prepared(&self) -> Result<Vec<TxnId>, ResourceError> {
        Ok(Vec::new())
    }
}
