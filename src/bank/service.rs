//! `verdict.v1.Bank` over gRPC.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::accounts::{check_account, Accounts, BankError};
use crate::coordinator::validate;
use crate::participant::{Enlister, Participant};
use crate::proto::{self, bank_server};

/// The bank's application-facing service, over any kind of [`Accounts`].
pub struct BankService<A> {
    participant: Arc<Participant<A>>,
    enlister: Enlister,
}

impl<A: Accounts> BankService<A> {
    pub fn new(participant: Arc<Participant<A>>, enlister: Enlister) -> Self {
        BankService {
            participant,
            enlister,
        }
    }

    pub fn into_server(self) -> bank_server::BankServer<Self> {
        bank_server::BankServer::new(self)
    }

    fn bank(&self) -> &A {
        self.participant.resource()
    }
}

impl From<BankError> for Status {
    fn from(error: BankError) -> Self {
        let message = error.to_string();
        match error {
            BankError::NoSuchAccount(_) => Status::not_found(message),
            BankError::AccountExists(_) => Status::already_exists(message),
            BankError::AlreadyPrepared(_) => Status::failed_precondition(message),
            BankError::Storage(_) | BankError::Database(_) => Status::unavailable(message),
        }
    }
}

fn account(text: &str) -> Result<&str, Status> {
    check_account(text).map_err(Status::invalid_argument)
}

#[tonic::async_trait]
impl<A: Accounts> bank_server::Bank for BankService<A> {
    async fn open_account(
        &self,
        request: Request<proto::OpenAccountRequest>,
    ) -> Result<Response<proto::OpenAccountResponse>, Status> {
        let request = request.into_inner();
        let account = account(&request.account)?;
        if request.balance < 0 {
            return Err(Status::invalid_argument(format!(
                "opening balance {} is negative",
                request.balance
            )));
        }
        self.bank().open_account(account, request.balance).await?;
        Ok(Response::new(proto::OpenAccountResponse {}))
    }

    async fn get_balance(
        &self,
        request: Request<proto::GetBalanceRequest>,
    ) -> Result<Response<proto::GetBalanceResponse>, Status> {
        let account = account(&request.get_ref().account)?;
        let (balance, held) = self.bank().balance(account).await?;
        Ok(Response::new(proto::GetBalanceResponse { balance, held }))
    }

    async fn apply(
        &self,
        request: Request<proto::ApplyRequest>,
    ) -> Result<Response<proto::ApplyResponse>, Status> {
        let request = request.into_inner();
        let txn = validate::txn_id(&request.txn_id)?;
        let account = account(&request.account)?;
        if request.delta == 0 {
            return Err(Status::invalid_argument(
                "delta is zero: give the (non-zero) change to the account",
            ));
        }
        // Refuse an unknown account before enlisting, so a bad request changes nothing.
        self.bank().exists(account).await?;
        let expires = self
            .enlister
            .enlist_unless_enlisted(txn, request.deadline_unix_ms)
            .await?;
        self.bank()
            .stage(txn, account, request.delta, expires)
            .await?;
        Ok(Response::new(proto::ApplyResponse {}))
    }

    async fn describe(
        &self,
        _: Request<proto::DescribeRequest>,
    ) -> Result<Response<proto::DescribeResponse>, Status> {
        Ok(Response::new(proto::DescribeResponse {
            name: self.enlister.name().into(),
            endpoint: self.enlister.endpoint().into(),
        }))
    }
}
