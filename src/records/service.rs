//! `verdict.v1.Records` over gRPC.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::store::{RecordStore, Wanted};
use crate::coordinator::validate;
use crate::durable::StorageError;
use crate::kv::AlreadyPrepared;
use crate::participant::{Enlister, Participant};
use crate::proto::{self, records_server};

const MAX_KEYS: usize = 16;
const MAX_KEY_BYTES: usize = 64;
const MAX_VALUE_BYTES: usize = 256;

/// The records' application-facing service.
pub struct RecordsService {
    participant: Arc<Participant<RecordStore>>,
    enlister: Enlister,
    /// What a key stands for, in the reasons of a NO.
    item: String,
}

impl RecordsService {
    pub fn new(
        participant: Arc<Participant<RecordStore>>,
        enlister: Enlister,
        item: String,
    ) -> Self {
        RecordsService {
            participant,
            enlister,
            item,
        }
    }

    pub fn into_server(self) -> records_server::RecordsServer<Self> {
        records_server::RecordsServer::new(self)
    }

    fn store(&self) -> &RecordStore {
        self.participant.resource()
    }
}

fn keys(keys: Vec<String>) -> Result<Vec<String>, Status> {
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(Status::invalid_argument(format!(
            "give 1 to {MAX_KEYS} keys for the record to go under, not {}",
            keys.len()
        )));
    }
    for key in &keys {
        if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
            return Err(Status::invalid_argument(format!(
                "key {:?} must be 1 to {MAX_KEY_BYTES} bytes without control characters",
                key.chars().take(80).collect::<String>()
            )));
        }
    }
    Ok(keys)
}

fn value(value: String) -> Result<String, Status> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Status::invalid_argument(format!(
            "the record is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
            value.len()
        )));
    }
    Ok(value)
}

fn storage(error: StorageError) -> Status {
    Status::unavailable(format!("the records' storage failed: {error}"))
}

#[tonic::async_trait]
impl records_server::Records for RecordsService {
    async fn insert(
        &self,
        request: Request<proto::InsertRequest>,
    ) -> Result<Response<proto::InsertResponse>, Status> {
        let request = request.into_inner();
        let txn = validate::txn_id(&request.txn_id)?;
        let wanted = Wanted {
            keys: keys(request.keys)?,
            value: value(request.value)?,
            item: self.item.clone(),
        };
        let expires = self.enlister.enlist(txn).await?;
        self.store()
            .insert(txn, wanted, expires)
            .map_err(|AlreadyPrepared| {
                Status::failed_precondition(format!(
                    "transaction {txn} is already prepared here; it can no longer change"
                ))
            })?;
        Ok(Response::new(proto::InsertResponse {}))
    }

    async fn list_records(
        &self,
        _request: Request<proto::ListRecordsRequest>,
    ) -> Result<Response<proto::ListRecordsResponse>, Status> {
        let records = self
            .store()
            .list()
            .map_err(storage)?
            .into_iter()
            .map(|record| proto::Record {
                key: record.key,
                value: record.value,
                pending: record.pending.is_some(),
                txn_id: record
                    .pending
                    .map(|txn| txn.to_string())
                    .unwrap_or_default(),
            });
        Ok(Response::new(proto::ListRecordsResponse {
            records: records.collect(),
        }))
    }
}
