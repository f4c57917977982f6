//! Raft RPCs over tonic: the client openraft sends through ([`Network`]) and the server that
//! hands what arrives to the local Raft ([`RaftService`]), on the node's public gRPC port as
//! `verdict.internal.Raft`. Messages are openraft's types in bincode.

// openraft's traits return its StorageError and RPCError, large by design; the helpers here
// return what the traits do.
#![allow(clippy::result_large_err)]

use std::error::Error;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::node::ClusterNode;
use super::{NodeId, Peers, TypeConfig};
use crate::proto::internal::raft_client::RaftClient;
use crate::proto::internal::{self, raft_server};
use crate::{net, tls};

/// Opens a connection per peer for openraft.
#[derive(Clone, Default)]
pub struct Network {
    /// Peers reached elsewhere than at their URL in the membership (`--raft-via`).
    via: Option<Peers>,
}

impl Network {
    pub fn new(via: Option<Peers>) -> Self {
        Network { via }
    }
}

/// A lazily connected channel to one peer; it reconnects by itself after failures.
pub struct Connection {
    target: NodeId,
    client: Option<RaftClient<Channel>>,
    url: String,
}

/// A client of the node at `url` (connected on first use).
pub fn client(url: &str) -> Result<RaftClient<Channel>, String> {
    let endpoint = tls::endpoint(url).map_err(|e| e.to_string())?;
    Ok(RaftClient::new(net::channel(
        net::watched(endpoint)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1)),
    )))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        let via = self.via.as_ref().and_then(|via| via.get(target));
        let url = via.unwrap_or(&node.addr).to_owned();
        Connection {
            target,
            client: client(&url).ok(),
            url,
        }
    }
}

type Failure<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl Connection {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, Failure<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let unreachable = |why: String| RPCError::Unreachable(Unreachable::new(&Message(why)));
        let Some(client) = self.client.as_mut() else {
            return Err(unreachable(format!("{:?} is not a URL", self.url)));
        };
        let payload =
            bincode::serialize(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = Request::new(internal::RaftMessage { payload });
        request.set_timeout(option.hard_ttl());
        let response = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let response = response.map_err(|status| match status.code() {
            tonic::Code::Unavailable => unreachable(status.message().to_owned()),
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let answer: Result<Resp, RaftError<NodeId, E>> =
            bincode::deserialize(&response.into_inner().payload)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

/// An error that is only a message.
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Failure<openraft::error::Infallible>> {
        self.call(Method::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Failure<InstallSnapshotError>> {
        self.call(Method::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Failure<openraft::error::Infallible>> {
        self.call(Method::Vote, &rpc, &option).await
    }

    /// Retries to an unreachable peer: 20 ms doubling to 200 ms, not openraft's flat 500 ms. A
    /// node that comes back (or starts last) must hear from the leader before its own election
    /// timer fires (from 150 ms on a fresh node); otherwise it stands for election, and the
    /// higher term it carries unseats a healthy leader (openraft 0.9 has no pre-vote).
    fn backoff(&self) -> Backoff {
        let delays = (0..).map(|i: u32| Duration::from_millis(20 << i.min(4)).min(MAX_BACKOFF));
        Backoff::new(delays)
    }
}

/// The longest pause between tries to reach an unreachable peer.
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// `verdict.internal.Raft` of one node.
pub struct RaftService {
    node: std::sync::Arc<ClusterNode>,
}

impl RaftService {
    pub fn new(node: std::sync::Arc<ClusterNode>) -> raft_server::RaftServer<Self> {
        raft_server::RaftServer::new(RaftService { node })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

fn decode<T: DeserializeOwned>(request: Request<internal::RaftMessage>) -> Result<T, Status> {
    bincode::deserialize(&request.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn encode(answer: &impl Serialize) -> Result<Response<internal::RaftMessage>, Status> {
    let payload = bincode::serialize(answer)
        .map_err(|e| Status::internal(format!("unencodable Raft answer: {e}")))?;
    Ok(Response::new(internal::RaftMessage { payload }))
}

fn status_response(json: serde_json::Value) -> Response<internal::StatusResponse> {
    Response::new(internal::StatusResponse {
        json: json.to_string(),
    })
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<internal::RaftMessage>,
    ) -> Result<Response<internal::RaftMessage>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request)?;
        encode(&self.node.raft().append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: Request<internal::RaftMessage>,
    ) -> Result<Response<internal::RaftMessage>, Status> {
        let rpc: VoteRequest<NodeId> = decode(request)?;
        encode(&self.node.raft().vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<internal::RaftMessage>,
    ) -> Result<Response<internal::RaftMessage>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        encode(&self.node.raft().install_snapshot(rpc).await)
    }

    async fn status(
        &self,
        request: Request<internal::StatusRequest>,
    ) -> Result<Response<internal::StatusResponse>, Status> {
        let mut status = self.node.status();
        if request.into_inner().digest {
            status["digest"] = self.node.digest()?;
        }
        Ok(status_response(status))
    }

    async fn add_node(
        &self,
        request: Request<internal::AddNodeRequest>,
    ) -> Result<Response<internal::StatusResponse>, Status> {
        let request = request.into_inner();
        self.node.add_node(request.node_id, request.url).await?;
        Ok(status_response(self.node.status()))
    }

    async fn remove_node(
        &self,
        request: Request<internal::RemoveNodeRequest>,
    ) -> Result<Response<internal::StatusResponse>, Status> {
        self.node.remove_node(request.into_inner().node_id).await?;
        Ok(status_response(self.node.status()))
    }
}
