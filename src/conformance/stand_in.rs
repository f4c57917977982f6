//! The coordinator the kit stands in for: it accepts every `Enlist` (staging work enlists the
//! participant), answers `Resolve` as the rule being checked wants, and remembers every
//! `Resolve` asked, so a rule can see whether and when the participant asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::coordinator::validate;
use crate::core::TxnId;
use crate::proto::coordinator_server::{Coordinator, CoordinatorServer};
use crate::proto::{self, Outcome};

/// What the stand-in knows and has been asked. Clones share it.
#[derive(Clone, Default)]
pub struct StandIn {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    asked: Notify,
}

#[derive(Default)]
struct State {
    /// The answer to `Resolve` per transaction; PENDING for any other.
    answers: HashMap<TxnId, Outcome>,
    /// When each transaction's `Resolve` calls came.
    asked: HashMap<TxnId, Vec<Instant>>,
}

impl StandIn {
    pub fn into_server(self) -> CoordinatorServer<Self> {
        CoordinatorServer::new(self)
    }

    /// From now on, `Resolve` of `txn` answers `outcome`.
    pub fn answer(&self, txn: TxnId, outcome: Outcome) {
        let mut state = self.inner.state.lock().expect("lock");
        state.answers.insert(txn, outcome);
    }

    /// When `Resolve` of `txn` was asked, in order.
    pub fn asked(&self, txn: TxnId) -> Vec<Instant> {
        let state = self.inner.state.lock().expect("lock");
        state.asked.get(&txn).cloned().unwrap_or_default()
    }

    /// Waits until `Resolve` of `txn` has been asked more than `count` times, or `until`.
    /// Returns the times it was asked.
    pub async fn await_asked(&self, txn: TxnId, count: usize, until: Instant) -> Vec<Instant> {
        loop {
            let asked = self.inner.asked.notified();
            let times = self.asked(txn);
            if times.len() > count || Instant::now() >= until {
                return times;
            }
            let _ = tokio::time::timeout_at(until, asked).await;
        }
    }
}

fn kit_only(method: &str) -> Status {
    Status::unimplemented(format!(
        "{method}: this is the conformance kit standing in for the coordinator; it answers only \
         Enlist and Resolve"
    ))
}

#[tonic::async_trait]
impl Coordinator for StandIn {
    async fn begin(
        &self,
        _: Request<proto::BeginRequest>,
    ) -> Result<Response<proto::BeginResponse>, Status> {
        Err(kit_only("Begin"))
    }

    async fn enlist(
        &self,
        request: Request<proto::EnlistRequest>,
    ) -> Result<Response<proto::EnlistResponse>, Status> {
        // Any transaction may be enlisted in: the kit makes up its ids itself.
        let request = request.into_inner();
        validate::txn_id(&request.txn_id)?;
        validate::participant(request.participant)?;
        let in_an_hour = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let deadline_unix_ms = in_an_hour
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Response::new(proto::EnlistResponse {
            newly_enlisted: true,
            deadline_unix_ms,
        }))
    }

    async fn commit(
        &self,
        _: Request<proto::CommitRequest>,
    ) -> Result<Response<proto::CommitResponse>, Status> {
        Err(kit_only("Commit"))
    }

    async fn submit(
        &self,
        _: Request<proto::SubmitRequest>,
    ) -> Result<Response<proto::SubmitResponse>, Status> {
        Err(kit_only("Submit"))
    }

    async fn abort(
        &self,
        _: Request<proto::AbortRequest>,
    ) -> Result<Response<proto::AbortResponse>, Status> {
        Err(kit_only("Abort"))
    }

    async fn get_transaction(
        &self,
        _: Request<proto::GetTransactionRequest>,
    ) -> Result<Response<proto::GetTransactionResponse>, Status> {
        Err(kit_only("GetTransaction"))
    }

    async fn list_transactions(
        &self,
        _: Request<proto::ListTransactionsRequest>,
    ) -> Result<Response<proto::ListTransactionsResponse>, Status> {
        Err(kit_only("ListTransactions"))
    }

    async fn retry_delivery(
        &self,
        _: Request<proto::RetryDeliveryRequest>,
    ) -> Result<Response<proto::RetryDeliveryResponse>, Status> {
        Err(kit_only("RetryDelivery"))
    }

    async fn resolve_by_hand(
        &self,
        _: Request<proto::ResolveByHandRequest>,
    ) -> Result<Response<proto::ResolveByHandResponse>, Status> {
        Err(kit_only("ResolveByHand"))
    }

    async fn get_stats(
        &self,
        _: Request<proto::GetStatsRequest>,
    ) -> Result<Response<proto::GetStatsResponse>, Status> {
        Err(kit_only("GetStats"))
    }

    async fn resolve(
        &self,
        request: Request<proto::ResolveRequest>,
    ) -> Result<Response<proto::ResolveResponse>, Status> {
        let txn = validate::txn_id(&request.get_ref().txn_id)?;
        let outcome = {
            let mut state = self.inner.state.lock().expect("lock");
            state.asked.entry(txn).or_default().push(Instant::now());
            state.answers.get(&txn).copied().unwrap_or(Outcome::Pending)
        };
        self.inner.asked.notify_waiters();
        Ok(Response::new(proto::ResolveResponse {
            outcome: outcome.into(),
        }))
    }
}
