//! A small client for applications: begin, enlist, commit and abort global transactions.
//!
//! Every call is idempotent on the coordinator, so a caller may retry any of them after a
//! timeout or `UNAVAILABLE`; a retried `commit` returns the true outcome.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::core::{Outcome, TxnId};
use crate::proto::coordinator_client::CoordinatorClient;
use crate::proto::{self, *};

/// A connection to a Verdict coordinator.
#[derive(Clone)]
pub struct Client {
    coordinator: CoordinatorClient<Channel>,
    timeout: Duration,
}

/// A transaction just begun.
#[derive(Clone, Copy, Debug)]
pub struct Begun {
    pub txn_id: TxnId,
    pub deadline_unix_ms: u64,
}

impl Client {
    /// A client of the coordinator at `url` (connected on first use); each call may take up to
    /// `timeout` (a commit waits for the votes and the forced decision).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, Status> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Status::invalid_argument(format!("coordinator URL {url:?}: {e}")))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        Ok(Client {
            coordinator: CoordinatorClient::new(channel),
            timeout,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Begins a transaction; `timeout` is its deadline (the coordinator's default if `None`).
    pub async fn begin(&self, timeout: Option<Duration>) -> Result<Begun, Status> {
        self.begin_with(BeginRequest {
            timeout_ms: timeout.map_or(0, |t| t.as_millis() as u64),
            participants: vec![],
        })
        .await
    }

    /// Begins a transaction as `request` says (deadline, participants enlisted at once).
    pub async fn begin_with(&self, request: BeginRequest) -> Result<Begun, Status> {
        let request = self.request(request);
        let response = self.coordinator.clone().begin(request).await?.into_inner();
        let txn_id = response
            .txn_id
            .parse()
            .map_err(|_| Status::internal("the coordinator returned a malformed txn_id"))?;
        Ok(Begun {
            txn_id,
            deadline_unix_ms: response.deadline_unix_ms,
        })
    }

    /// Enlists a participant; returns the response (whether it was new, and the deadline).
    pub async fn enlist(
        &self,
        txn: TxnId,
        name: &str,
        endpoint: &str,
    ) -> Result<EnlistResponse, Status> {
        let request = self.request(EnlistRequest {
            txn_id: txn.to_string(),
            participant: Some(ParticipantRef {
                name: name.into(),
                endpoint: endpoint.into(),
            }),
        });
        Ok(self.coordinator.clone().enlist(request).await?.into_inner())
    }

    /// Commits; returns the outcome (as soon as the decision is durable) and, for an abort,
    /// its reason.
    pub async fn commit(&self, txn: TxnId) -> Result<(Outcome, String), Status> {
        self.commit_with(txn, false).await
    }

    /// As [`Client::commit`], but answers only once every participant has acknowledged.
    pub async fn commit_and_wait(&self, txn: TxnId) -> Result<(Outcome, String), Status> {
        self.commit_with(txn, true).await
    }

    async fn commit_with(
        &self,
        txn: TxnId,
        wait_for_acks: bool,
    ) -> Result<(Outcome, String), Status> {
        let request = self.request(CommitRequest {
            txn_id: txn.to_string(),
            wait_for_acks,
        });
        let response = self.coordinator.clone().commit(request).await?.into_inner();
        let outcome = match response.outcome() {
            proto::Outcome::Committed => Outcome::Committed,
            proto::Outcome::Aborted => Outcome::Aborted,
            other => {
                return Err(Status::internal(format!(
                    "the coordinator answered Commit with {other:?}"
                )))
            }
        };
        Ok((outcome, response.reason))
    }

    /// Aborts a transaction that is not decided yet.
    pub async fn abort(&self, txn: TxnId, reason: &str) -> Result<(), Status> {
        let request = self.request(AbortRequest {
            txn_id: txn.to_string(),
            reason: reason.into(),
        });
        self.coordinator.clone().abort(request).await?;
        Ok(())
    }

    /// The coordinator's view of a transaction.
    pub async fn get(&self, txn: TxnId) -> Result<proto::Transaction, Status> {
        let request = self.request(GetTransactionRequest {
            txn_id: txn.to_string(),
        });
        let response = self.coordinator.clone().get_transaction(request).await?;
        response
            .into_inner()
            .transaction
            .ok_or_else(|| Status::internal("the coordinator answered without a transaction"))
    }
}
