//! Every RPC's request, as a server receives it: the first byte picks the RPC, the rest is
//! decoded as its protobuf message and every argument goes through the validation its handler
//! runs. Any bytes are a request or a decode error, and any request is accepted or refused
//! with a message, never a panic.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use verdict::coordinator::validate;
use verdict::proto::*;

fuzz_target!(|data: &[u8]| {
    let Some((&rpc, body)) = data.split_first() else {
        return;
    };
    match rpc % 14 {
        0 => check::<BeginRequest>(body, |r| {
            let _ = validate::txn_timeout(r.timeout_ms, Duration::from_secs(3600));
            let _ = validate::participants(r.participants);
        }),
        1 => check::<EnlistRequest>(body, |r| {
            let _ = validate::txn_id(&r.txn_id);
            let _ = validate::participant(r.participant);
        }),
        2 => check::<CommitRequest>(body, |r| {
            let _ = validate::txn_id(&r.txn_id);
            let _ = validate::work(r.work);
        }),
        3 => check::<AbortRequest>(body, |r| {
            let _ = validate::txn_id(&r.txn_id);
            let _ = validate::reason(r.reason);
        }),
        4 => check::<GetTransactionRequest>(body, |r| drop(validate::txn_id(&r.txn_id))),
        5 => check::<ListTransactionsRequest>(body, |r| {
            let _ = validate::state_filter(r.state);
            let _ = validate::page_size(r.page_size);
            let _ = validate::page_token(&r.page_token);
        }),
        6 => check::<ResolveRequest>(body, |r| drop(validate::txn_id(&r.txn_id))),
        7 => check::<RetryDeliveryRequest>(body, |r| drop(validate::txn_id(&r.txn_id))),
        8 => check::<ResolveByHandRequest>(body, |r| {
            let _ = validate::txn_id(&r.txn_id);
            let _ = validate::decided_outcome(r.outcome);
            let _ = validate::required_reason(r.reason);
            let _ = validate::operator(r.operator);
        }),
        9 => check::<PrepareRequest>(body, |r| {
            let _ = validate::txn_id(&r.txn_id);
            let _ = validate::url("coordinator_endpoint", &r.coordinator_endpoint);
            for url in &r.coordinator_endpoints {
                let _ = validate::url("coordinator_endpoints", url);
            }
            // The banks' reading of handed work.
            let _ = verdict::bank::work::decode(&r.work);
        }),
        10 => check::<ParticipantCommitRequest>(body, |r| drop(validate::txn_id(&r.txn_id))),
        11 => check::<DecideRequest>(body, |r| {
            let _ = validate::decisions(&r.decisions);
            for decision in &r.decisions {
                let _ = validate::txn_id(&decision.txn_id);
            }
        }),
        12 => check::<SubmitRequest>(body, |r| {
            let _ = validate::request_id(r.request_id);
            let _ = validate::txn_timeout(r.timeout_ms, Duration::from_secs(3600));
            let _ = validate::submitted_work(r.work);
        }),
        _ => check::<ParticipantAbortRequest>(body, |r| drop(validate::txn_id(&r.txn_id))),
    }
});

/// Decodes `body` as an `M`, and if it is one, validates it with `validate`.
fn check<M: Message + Default>(body: &[u8], validate: impl FnOnce(M)) {
    if let Ok(request) = M::decode(body) {
        validate(request);
    }
}
