//! Talking to a cluster as an operator: each node's view of it, and membership changes sent to
//! the leader. Used by `verdict cluster` and the tests.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::network::client;
use crate::credentials;
use crate::proto::internal::raft_client::RaftClient;
use crate::proto::internal::{AddNodeRequest, RemoveNodeRequest, StatusRequest};

/// How long one node may take to answer a status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// The node at `url`'s view of the cluster (see [`ClusterNode::status`](super::ClusterNode::status)).
pub async fn status(url: &str) -> Result<Value, Status> {
    ask(url, false).await
}

/// The node at `url`'s view, with the digest of its records (see
/// [`StateMachine::digest`](super::state::StateMachine::digest)) under `digest`.
pub async fn status_with_digest(url: &str) -> Result<Value, Status> {
    ask(url, true).await
}

async fn ask(url: &str, digest: bool) -> Result<Value, Status> {
    let mut node = client(url).map_err(Status::invalid_argument)?;
    let mut request = credentials::request(StatusRequest { digest });
    request.set_timeout(STATUS_TIMEOUT);
    let answer = tokio::time::timeout(STATUS_TIMEOUT, node.status(request))
        .await
        .map_err(|_| Status::deadline_exceeded(format!("{url} did not answer in time")))??;
    serde_json::from_str(&answer.into_inner().json)
        .map_err(|e| Status::internal(format!("{url} answered an unreadable status: {e}")))
}

/// What the nodes at `urls` say, each in turn (with their digests if `digest`).
pub async fn views(urls: &[String], digest: bool) -> Vec<(String, Result<Value, Status>)> {
    let mut views = Vec::new();
    for url in urls {
        views.push((url.clone(), ask(url, digest).await));
    }
    views
}

/// The URL of the leader, as the first node that knows one says.
pub async fn leader_url(urls: &[String]) -> Result<String, Status> {
    for (url, view) in views(urls, false).await {
        match view {
            Ok(view) if view["state"] == "Leader" => return Ok(url),
            Ok(view) => {
                if let Some(leader) = view["leader_url"].as_str() {
                    return Ok(leader.to_owned());
                }
            }
            Err(_) => continue,
        }
    }
    Err(Status::unavailable(format!(
        "no node among {} knows a leader: is a majority of the cluster up?",
        urls.join(",")
    )))
}

/// How long a membership change keeps looking for the leader while leadership moves.
const LEADER_PATIENCE: Duration = Duration::from_secs(15);

/// Adds node `id` at `url` (running with `--join`): learner first, then voter.
pub async fn add_node(urls: &[String], id: u64, url: &str) -> Result<Value, Status> {
    let request = AddNodeRequest {
        node_id: id,
        url: url.to_owned(),
    };
    on_leader(urls, |mut node| {
        let request = credentials::request(request.clone());
        async move { Ok(node.add_node(request).await?.into_inner().json) }
    })
    .await
}

/// Removes node `id` from the cluster.
pub async fn remove_node(urls: &[String], id: u64) -> Result<Value, Status> {
    on_leader(urls, |mut node| {
        let request = credentials::request(RemoveNodeRequest { node_id: id });
        async move { Ok(node.remove_node(request).await?.into_inner().json) }
    })
    .await
}

/// Sends a membership change with `change` to the leader, found again and sent again while
/// the answer is that this node does not lead (an election under way, leadership moved) — a
/// change is safe to repeat — for up to [`LEADER_PATIENCE`]. Its answer, as JSON.
async fn on_leader<F, Fut>(urls: &[String], change: F) -> Result<Value, Status>
where
    F: Fn(RaftClient<Channel>) -> Fut,
    Fut: Future<Output = Result<String, Status>>,
{
    let deadline = tokio::time::Instant::now() + LEADER_PATIENCE;
    loop {
        let sent = match leader_url(urls).await {
            Ok(leader) => change(client(&leader).map_err(Status::invalid_argument)?).await,
            Err(none) => Err(none),
        };
        match sent {
            Ok(json) => {
                return serde_json::from_str(&json).map_err(|e| Status::internal(e.to_string()))
            }
            Err(status)
                if status.code() == Code::Unavailable && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(status) => return Err(status),
        }
    }
}
