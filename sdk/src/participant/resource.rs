//! The trait a participant author implements.

use std::future::Future;

use crate::{TxnId, Vote};

/// A failure of the resource (its storage, its database connection…). Answered to the
/// coordinator as an error: a failed prepare counts as no vote, a failed commit is retried.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResourceError(pub String);

/// The NO a resource that takes no work in Prepare votes when handed some.
pub const TAKES_NO_HANDED_WORK: &str = "this participant takes no work in Prepare: stage its \
     work through its own API before Commit";

/// A transactional resource. The [`Participant`](super::Participant) runtime calls it at most
/// once at a time per transaction, and never prepares a transaction it already has a vote for.
pub trait Resource: Send + Sync + 'static {
    /// Makes the transaction's changes ready to commit and votes. Before answering
    /// [`Vote::Yes`] the changes must survive a crash: either written to the
    /// [`DurableDb`](crate::durable::DurableDb) the runtime's journal uses (its forced flush,
    /// made before the YES is sent, covers them), or made durable by the resource itself. A YES
    /// also keeps whatever locks keep the changes valid until commit or abort.
    fn prepare(&self, txn: TxnId) -> impl Future<Output = Result<Vote, ResourceError>> + Send;

    /// Stages the work an application handed the coordinator for this participant
    /// (`CommitRequest.work`, arriving in `PrepareRequest.work` in the participant's own
    /// format), just before [`Resource::prepare`] is called. `Err` is the reason to vote NO
    /// with. By default a resource takes no work this way, so such a transaction aborts rather
    /// than commit without its work.
    fn stage_handed(
        &self,
        txn: TxnId,
        work: Vec<u8>,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (txn, work);
        async { Err(TAKES_NO_HANDED_WORK.to_owned()) }
    }

    /// Makes a prepared transaction's changes visible. Idempotent: committing a transaction
    /// already committed does nothing.
    fn commit(&self, txn: TxnId) -> impl Future<Output = Result<(), ResourceError>> + Send;

    /// Discards a transaction's changes, prepared or only staged. Idempotent, and succeeds for a
    /// transaction the resource does not know.
    fn abort(&self, txn: TxnId) -> impl Future<Output = Result<(), ResourceError>> + Send;

    /// The transactions the resource holds prepared, for recovery after a restart.
    fn prepared(&self) -> impl Future<Output = Result<Vec<TxnId>, ResourceError>> + Send;

    /// Whether a YES from [`Resource::prepare`] is durable by itself, and a commit too, with
    /// [`Resource::prepared`] finding what is prepared after any crash — a database with its
    /// own two-phase commit. The runtime then does not wait for its journal before a YES to
    /// the configured coordinator, nor after a commit: whatever the journal loses in a crash,
    /// recovery finds in the resource and resolves with that coordinator.
    fn prepares_durably(&self) -> bool {
        false
    }
}
