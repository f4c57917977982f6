//! A participant that breaks the participant contract on purpose, for the conformance kit's
//! own test (`tests/conformance.rs`): the kit must fail it. Do not copy it.
//!
//! Its faults: votes live only in memory, so a YES is forgotten on restart; Commit succeeds for
//! any transaction, prepared or not; it never asks Resolve; it accepts any transaction id.
//! Work is "staged" by creating the file `STAGE_DIR/TXN_ID`; Prepare consumes it and votes YES,
//! and votes NO where there is none.
//!
//!   cargo run --example broken_participant -- 127.0.0.1:7500 /tmp/stage

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use tonic::{Request, Response, Status, Streaming};
use verdict_sdk::proto::participant_server::{Participant, ParticipantServer};
use verdict_sdk::proto::*;

struct Broken {
    stage_dir: PathBuf,
    votes: Mutex<HashMap<String, Vote>>,
}

#[tonic::async_trait]
impl Participant for Broken {
    async fn prepare(
        &self,
        request: Request<PrepareRequest>,
    ) -> Result<Response<PrepareResponse>, Status> {
        let txn = request.into_inner().txn_id;
        let mut votes = self.votes.lock().unwrap();
        let vote = *votes.entry(txn.clone()).or_insert_with(|| {
            match std::fs::remove_file(self.stage_dir.join(&txn)) {
                Ok(()) => Vote::Yes,
                Err(_) => Vote::No,
            }
        });
        Ok(Response::new(PrepareResponse {
            vote: vote.into(),
            reason: String::new(),
            took_work: false,
        }))
    }

    async fn commit(
        &self,
        _: Request<ParticipantCommitRequest>,
    ) -> Result<Response<ParticipantCommitResponse>, Status> {
        Ok(Response::new(ParticipantCommitResponse {}))
    }

    async fn abort(
        &self,
        request: Request<ParticipantAbortRequest>,
    ) -> Result<Response<ParticipantAbortResponse>, Status> {
        let txn = request.into_inner().txn_id;
        self.votes.lock().unwrap().insert(txn, Vote::No);
        Ok(Response::new(ParticipantAbortResponse {}))
    }

    async fn decide(&self, _: Request<DecideRequest>) -> Result<Response<DecideResponse>, Status> {
        Err(Status::unimplemented(
            "this participant takes decisions one by one",
        ))
    }

    type PrepareStreamStream = tokio_stream::Empty<Result<StreamedVote, Status>>;

    async fn prepare_stream(
        &self,
        _: Request<Streaming<StreamedPrepare>>,
    ) -> Result<Response<Self::PrepareStreamStream>, Status> {
        Err(Status::unimplemented(
            "this participant takes prepares one call each",
        ))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: broken_participant LISTEN_ADDR STAGE_DIR";
    let listen = args.next().ok_or(usage)?.parse()?;
    let stage_dir = PathBuf::from(args.next().ok_or(usage)?);
    let broken = Broken {
        stage_dir,
        votes: Mutex::new(HashMap::new()),
    };
    println!("listening on {listen}");
    tonic::transport::Server::builder()
        .add_service(ParticipantServer::new(broken))
        .serve(listen)
        .await?;
    Ok(())
}
