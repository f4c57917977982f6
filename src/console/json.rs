//! Transactions as JSON, the same for `verdict txn --json` and the console, with the names both
//! show for states, votes and outcomes, and the paging through `ListTransactions`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::Client;
use crate::core::TxnId;
use crate::proto::{
    self, ListTransactionsRequest, ParticipantStatus, Transaction, TransactionState,
};

/// Every transaction in `state`, page after page.
pub async fn all_pages(
    client: &Client,
    state: TransactionState,
) -> anyhow::Result<Vec<Transaction>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListTransactionsRequest {
            state: state.into(),
            page_size: 1000,
            page_token,
        };
        let page = client.list(request).await?;
        all.extend(page.transactions);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

/// How long ago the transaction began (its id carries the time).
pub fn age(txn: &Transaction) -> Duration {
    let begun = txn.txn_id.parse::<TxnId>().map_or(0, TxnId::begun_unix_ms);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(now.saturating_sub(begun))
}

pub fn state_name(txn: &Transaction) -> &'static str {
    match txn.state() {
        TransactionState::Unspecified => "unknown",
        TransactionState::Active => "active",
        TransactionState::Preparing => "preparing",
        TransactionState::Committing => "committing",
        TransactionState::Aborting => "aborting",
        TransactionState::Committed => "committed",
        TransactionState::Aborted => "aborted",
    }
}

/// A participant's name as enlisted.
pub fn name(p: &ParticipantStatus) -> &str {
    p.participant.as_ref().map_or("?", |r| r.name.as_str())
}

pub fn vote(p: &ParticipantStatus) -> &'static str {
    match p.vote() {
        proto::Vote::Unspecified => "-",
        proto::Vote::Yes => "yes",
        proto::Vote::No => "no",
        proto::Vote::ReadOnly => "read-only",
    }
}

/// Whether it acknowledged the decision: "yes", "no", or "by hand" (resolved without it).
pub fn acked(p: &ParticipantStatus) -> &'static str {
    match (p.acknowledged, p.settled_by_hand) {
        (true, _) => "yes",
        (false, true) => "by hand",
        (false, false) => "no",
    }
}

pub fn outcome_name(outcome: proto::Outcome) -> &'static str {
    match outcome {
        proto::Outcome::Committed => "COMMIT",
        proto::Outcome::Aborted => "ABORT",
        _ => "?",
    }
}

/// One transaction: its state, participants, timeline and resolution by hand.
pub fn to_json(txn: &Transaction) -> serde_json::Value {
    let participants: Vec<serde_json::Value> = txn
        .participants
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": name(p),
                "endpoint": p.participant.as_ref().map_or("", |r| r.endpoint.as_str()),
                "vote": vote(p),
                "acknowledged": p.acknowledged,
                "attempts": p.attempts,
                "last_error": p.last_error,
                "settled_by_hand": p.settled_by_hand,
            })
        })
        .collect();
    serde_json::json!({
        "txn_id": txn.txn_id,
        "state": state_name(txn),
        "age_ms": age(txn).as_millis() as u64,
        "reason": txn.reason,
        "deadline_unix_ms": txn.deadline_unix_ms,
        "participants": participants,
        "timeline": txn.timeline.iter().map(|e| serde_json::json!({
            "at_unix_ms": e.at_unix_ms,
            "event": e.event,
        })).collect::<Vec<_>>(),
        "resolution": txn.resolution.as_ref().map(|r| serde_json::json!({
            "outcome": outcome_name(r.outcome()).to_lowercase(),
            "operator": r.operator,
            "reason": r.reason,
            "at_unix_ms": r.at_unix_ms,
        })),
    })
}
