//! Checks of the coordinator's request arguments, each failing with a message that says what is
//! wrong and how to fix it. The rules every server of the contract shares (ids, URLs) are the
//! SDK's.

use std::time::Duration;

use super::{EngineError, HandedWork, NewParticipant};
use crate::core::TxnId;
use crate::proto;
pub use verdict_sdk::validate::{decisions, url, urls, Invalid, MAX_ENDPOINT_BYTES};

pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_REASON_BYTES: usize = 1024;
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most work Commit may hand one participant.
pub const MAX_WORK_BYTES: usize = 64 << 10;
/// The longest Submit request id.
pub const MAX_REQUEST_ID_BYTES: usize = 128;

fn invalid(message: String) -> EngineError {
    EngineError::InvalidArgument(message)
}

pub fn txn_id(text: &str) -> Result<TxnId, EngineError> {
    Ok(verdict_sdk::validate::txn_id(text)?)
}

pub fn participant(p: Option<proto::ParticipantRef>) -> Result<NewParticipant, EngineError> {
    let p =
        p.ok_or_else(|| invalid("participant is missing: give its name and endpoint".into()))?;
    if p.name.is_empty() || p.name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "participant name must be 1 to {MAX_NAME_BYTES} bytes, got {}",
            p.name.len()
        )));
    }
    if p.name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "participant name {:?} contains control characters",
            p.name
        )));
    }
    endpoint(&p.endpoint)?;
    Ok(NewParticipant {
        name: p.name,
        endpoint: p.endpoint,
    })
}

/// A participant endpoint must be an absolute http(s) URL with a host, and nothing after it.
pub fn endpoint(text: &str) -> Result<(), EngineError> {
    Ok(url("participant endpoint", text)?)
}

pub fn participants(list: Vec<proto::ParticipantRef>) -> Result<Vec<NewParticipant>, EngineError> {
    list.into_iter().map(|p| participant(Some(p))).collect()
}

/// Commit's work: each for a valid participant named once, 1 byte to [`MAX_WORK_BYTES`].
pub fn work(list: Vec<proto::ParticipantWork>) -> Result<Vec<HandedWork>, EngineError> {
    let mut handed: Vec<HandedWork> = Vec::with_capacity(list.len());
    for item in list {
        let participant = participant(item.participant)?;
        if item.work.is_empty() || item.work.len() > MAX_WORK_BYTES {
            return Err(invalid(format!(
                "the work for participant {:?} is {} bytes; give 1 to {MAX_WORK_BYTES} (leave \
                 out a participant with nothing to do)",
                participant.name,
                item.work.len()
            )));
        }
        if handed
            .iter()
            .any(|h| h.participant.name == participant.name)
        {
            return Err(invalid(format!(
                "participant {:?} is given work twice; put all of its work in one entry",
                participant.name
            )));
        }
        handed.push(HandedWork {
            participant,
            work: item.work,
        });
    }
    Ok(handed)
}

/// Submit's work: as Commit's, and at least one entry (a transaction with nothing to do).
pub fn submitted_work(list: Vec<proto::ParticipantWork>) -> Result<Vec<HandedWork>, EngineError> {
    if list.is_empty() {
        return Err(invalid(
            "Submit needs work for at least one participant: name each participant with its \
             work (to run a transaction whose participants do their work on their own calls, \
             use Begin and Commit)"
                .into(),
        ));
    }
    work(list)
}

/// A Submit request id: 1 to [`MAX_REQUEST_ID_BYTES`] bytes of printable ASCII.
pub fn request_id(text: String) -> Result<String, EngineError> {
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    if text.is_empty() || text.len() > MAX_REQUEST_ID_BYTES || !printable {
        return Err(invalid(format!(
            "request_id {text:?} is not 1 to {MAX_REQUEST_ID_BYTES} bytes of printable ASCII: \
             give each transaction its own id, such as a UUID, and the same one to its retries"
        )));
    }
    Ok(text)
}

/// Begin's timeout: 0 means the default; more than `max` is refused.
pub fn txn_timeout(ms: u64, max: Duration) -> Result<Option<Duration>, EngineError> {
    if ms == 0 {
        return Ok(None);
    }
    let timeout = Duration::from_millis(ms);
    if timeout > max {
        return Err(invalid(format!(
            "timeout_ms {ms} is longer than this coordinator's maximum of {} ms \
             (--max-txn-timeout); ask for less",
            max.as_millis()
        )));
    }
    Ok(Some(timeout))
}

pub fn reason(text: String) -> Result<String, EngineError> {
    if text.len() > MAX_REASON_BYTES {
        return Err(invalid(format!(
            "reason is {} bytes; at most {MAX_REASON_BYTES} are allowed",
            text.len()
        )));
    }
    Ok(text)
}

/// A resolution by hand's reason: required, for the record.
pub fn required_reason(text: String) -> Result<String, EngineError> {
    if text.trim().is_empty() {
        return Err(invalid(
            "reason is empty: say why the transaction is resolved by hand, for the record".into(),
        ));
    }
    reason(text)
}

/// Who resolves by hand: required, for the record.
pub fn operator(text: String) -> Result<String, EngineError> {
    if text.trim().is_empty() || text.len() > MAX_NAME_BYTES || text.chars().any(char::is_control) {
        return Err(invalid(format!(
            "operator must name who is acting, 1 to {MAX_NAME_BYTES} bytes without control \
             characters (e.g. \"alice@ops-1\")"
        )));
    }
    Ok(text)
}

/// An outcome to decide: committed or aborted.
pub fn decided_outcome(value: i32) -> Result<crate::core::Outcome, EngineError> {
    match proto::Outcome::try_from(value) {
        Ok(proto::Outcome::Committed) => Ok(crate::core::Outcome::Committed),
        Ok(proto::Outcome::Aborted) => Ok(crate::core::Outcome::Aborted),
        _ => Err(invalid(format!(
            "outcome {value} is not one to resolve to: give OUTCOME_COMMITTED or OUTCOME_ABORTED"
        ))),
    }
}

pub fn page_size(size: u32) -> Result<usize, EngineError> {
    match size as usize {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(invalid(format!(
            "page_size {n} is larger than the maximum of {MAX_PAGE_SIZE}"
        ))),
        n => Ok(n),
    }
}

pub fn page_token(token: &str) -> Result<Option<TxnId>, EngineError> {
    if token.is_empty() {
        return Ok(None);
    }
    token.parse().map(Some).map_err(|_| {
        invalid(format!(
            "page_token {token:?} is not one this service returned; pass next_page_token from \
             the previous response, or nothing for the first page"
        ))
    })
}

pub fn state_filter(value: i32) -> Result<Option<super::State>, EngineError> {
    use super::State;
    use proto::TransactionState as S;
    let state = S::try_from(value)
        .map_err(|_| invalid(format!("state {value} is not a TransactionState value")))?;
    Ok(match state {
        S::Unspecified => None,
        S::Active => Some(State::Active),
        S::Preparing => Some(State::Preparing),
        S::Committing => Some(State::Committing),
        S::Aborting => Some(State::Aborting),
        S::Committed => Some(State::Committed),
        S::Aborted => Some(State::Aborted),
    })
}
