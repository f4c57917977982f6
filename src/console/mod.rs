//! The web console, `verdict serve --console-listen ADDR`: one page embedded in the binary
//! (plain HTML, CSS and JavaScript; nothing fetched from anywhere else) over a small JSON API.
//! The API is itself a client of the coordinator's public gRPC contract, so a cluster node's
//! console shows and acts on the leader's transactions, as `verdict txn` does.
//!
//! It shows live counts and rates, the transactions in flight and in doubt with each
//! participant's state, one transaction's timeline, the retry and resolve-by-hand actions (the
//! page asks for confirmation first), and the cluster's members and leader. Its actions take
//! JSON bodies only: a browser will not send those across origins without a CORS preflight,
//! which the console never grants, so another site cannot act through an operator's browser.
//! When the coordinator authenticates callers (`--auth`), each operator signs in with their own
//! token and the console calls the coordinator as them; otherwise it calls as its process, so
//! bind it to an address only operators reach.
//!
//! - [`json`]: transactions as JSON, shared with `verdict txn --json`.
//! - [`session`]: signing in, and the signed-in operators.

pub mod json;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tonic::Code;

use crate::client::Client;
use crate::core::{Outcome, TxnId};
use crate::https::Caller;
use crate::proto::{ListTransactionsRequest, TransactionState};
use crate::tls::ServerTls;
use session::Sessions;

/// The page, with its style and script.
const PAGE: &str = include_str!("page.html");

/// At most this many transactions per state are listed.
const LISTED: u32 = 200;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

struct Console {
    coordinator: Client,
    /// Every node of the cluster, to show each one's view; empty for a single node.
    nodes: Vec<String>,
    /// The signed-in operators, when operators must sign in.
    sessions: Option<Sessions>,
    /// Whether it serves TLS (its cookie is then `Secure`).
    tls: bool,
}

/// Serves the console on `addr` in the background, talking to the coordinator at `coordinator`
/// (its own gRPC address); `nodes` are the cluster's node URLs (none for a single node).
/// With `tls`, it serves TLS only; with `sign_in`, operators sign in with their own tokens.
pub async fn serve(
    addr: SocketAddr,
    coordinator: &str,
    nodes: Vec<String>,
    tls: Option<Arc<ServerTls>>,
    sign_in: bool,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the console on {addr}"))?;
    let console = Arc::new(Console {
        coordinator: Client::new(coordinator, CALL_TIMEOUT)?,
        nodes,
        sessions: sign_in.then(Sessions::default),
        tls: tls.is_some(),
    });
    let app = Router::new()
        .route("/", get(page))
        .route("/api/session", post(sign_in_with))
        .route("/api/session/end", post(sign_out))
        .route("/api/overview", get(overview))
        .route("/api/transactions", get(transactions))
        .route("/api/transactions/{id}", get(transaction))
        .route("/api/transactions/{id}/retry", post(retry))
        .route("/api/transactions/{id}/resolve", post(resolve))
        .with_state(console);
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "serving the console");
    crate::https::spawn(listener, app, tls, "the console")?;
    Ok(())
}

/// An answer the page shows as an error: an HTTP status and `{"error": message}`.
struct Failure(StatusCode, String);

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        let code = match status.code() {
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::FailedPrecondition => StatusCode::CONFLICT,
            Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Failure(code, status.message().to_owned())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type Answer = Result<Json<Value>, Failure>;

/// The coordinator client a request acts through: the console's own, or the signed-in
/// operator's when operators sign in.
struct Acting(Client);

impl FromRequestParts<Arc<Console>> for Acting {
    type Rejection = Failure;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Failure> {
        let Some(sessions) = &console.sessions else {
            return Ok(Acting(console.coordinator.clone()));
        };
        sessions.client(&parts.headers).map(Acting).ok_or_else(|| {
            let message = "sign in with your operator token (the coordinator authenticates \
                           callers)";
            Failure(StatusCode::UNAUTHORIZED, message.into())
        })
    }
}

/// `{"token": …}`: an operator's bearer token.
#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in_with(
    State(console): State<Arc<Console>>,
    Json(asked): Json<SignIn>,
) -> Result<Response, Failure> {
    let Some(sessions) = &console.sessions else {
        let message = "this console needs no signing in: its coordinator does not authenticate \
                       callers";
        return Err(Failure(StatusCode::NOT_FOUND, message.into()));
    };
    let token = asked.token.trim();
    if token.is_empty() {
        return Err(Failure(StatusCode::BAD_REQUEST, "give your token".into()));
    }
    let client = console.coordinator.with_token(token)?;
    // An operator's call: it answers only for a token of an identity with that role.
    client.stats().await?;
    let id = sessions.open(client).ok_or_else(|| {
        let message = "too many sessions are open: try again later".into();
        Failure(StatusCode::SERVICE_UNAVAILABLE, message)
    })?;
    let cookie = session::cookie(&id, console.tls);
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "signed_in": true })),
    )
        .into_response())
}

async fn sign_out(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(sessions) = &console.sessions {
        sessions.close(&headers);
    }
    let cookie = session::cookie("", console.tls);
    (
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "signed_in": false })),
    )
        .into_response()
}

fn txn_id(text: &str) -> Result<TxnId, Failure> {
    text.parse().map_err(|_| {
        let message = format!("{text:?} is not a transaction id");
        Failure(StatusCode::BAD_REQUEST, message)
    })
}

async fn page() -> impl IntoResponse {
    // The page is the only thing served to a browser: nothing else may frame or script it.
    let policy = "default-src 'self'; script-src 'unsafe-inline' 'self'; \
                  style-src 'unsafe-inline' 'self'; frame-ancestors 'none'";
    ([(header::CONTENT_SECURITY_POLICY, policy)], Html(PAGE))
}

async fn overview(State(console): State<Arc<Console>>, Acting(coordinator): Acting) -> Answer {
    let stats = coordinator.stats().await?;
    let mut nodes = Vec::new();
    for (url, view) in crate::cluster::admin::views(&console.nodes, false).await {
        nodes.push(match view {
            Ok(view) => json!({ "url": url, "view": view }),
            Err(status) => json!({ "url": url, "error": status.message() }),
        });
    }
    Ok(Json(json!({
        "stats": {
            "begun": stats.begun,
            "committed": stats.committed,
            "aborted": stats.aborted,
            "in_flight": stats.in_flight,
            "in_doubt": stats.in_doubt,
        },
        "cluster": (!console.nodes.is_empty()).then_some(nodes),
        "signed_in": console.sessions.is_some(),
    })))
}

/// The transactions not finished: active, preparing, and in doubt (committing, aborting).
async fn transactions(Acting(coordinator): Acting) -> Answer {
    use TransactionState as S;
    let mut listed = Vec::new();
    let mut more = false;
    for state in [S::Committing, S::Aborting, S::Preparing, S::Active] {
        let request = ListTransactionsRequest {
            state: state.into(),
            page_size: LISTED,
            page_token: String::new(),
        };
        let page = coordinator.list(request).await?;
        more |= !page.next_page_token.is_empty();
        listed.extend(page.transactions.iter().map(json::to_json));
    }
    Ok(Json(json!({ "transactions": listed, "more": more })))
}

async fn transaction(Acting(coordinator): Acting, Path(id): Path<String>) -> Answer {
    let txn = coordinator.get(txn_id(&id)?).await?;
    Ok(Json(json::to_json(&txn)))
}

async fn retry(
    Acting(coordinator): Acting,
    Path(id): Path<String>,
    Json(_): Json<Value>,
) -> Answer {
    let id = txn_id(&id)?;
    coordinator.retry_delivery(id).await?;
    Ok(Json(json!({ "retried": id.to_string() })))
}

/// `{"outcome": "commit"|"abort", "reason": …, "operator": …}`.
#[derive(serde::Deserialize)]
struct Resolution {
    outcome: String,
    reason: String,
    operator: String,
}

async fn resolve(
    Acting(coordinator): Acting,
    ConnectInfo(Caller(browser)): ConnectInfo<Caller>,
    Path(id): Path<String>,
    Json(asked): Json<Resolution>,
) -> Answer {
    let id = txn_id(&id)?;
    let outcome = match asked.outcome.as_str() {
        "commit" => Outcome::Committed,
        "abort" => Outcome::Aborted,
        other => {
            let message = format!("outcome {other:?}: give \"commit\" or \"abort\"");
            return Err(Failure(StatusCode::BAD_REQUEST, message));
        }
    };
    if asked.operator.trim().is_empty() {
        let message = "say who you are (operator): the resolution is recorded with it".into();
        return Err(Failure(StatusCode::BAD_REQUEST, message));
    }
    // The coordinator adds where its own request came from: the console. Where the operator was
    // is the browser's address.
    let operator = format!("{} (console, browser at {browser})", asked.operator.trim());
    let txn = coordinator
        .resolve_by_hand(id, outcome, &asked.reason, &operator)
        .await?;
    Ok(Json(json::to_json(&txn)))
}
