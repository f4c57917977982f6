//! The on-disk record format: a [`frame`](crate::frame) (magic "VD") around a protobuf body.
//!
//! A frame that is short, has the wrong magic, an unknown version, a length that disagrees with
//! what is there or a checksum mismatch is reported as [`LogError::Corrupt`]; it is never read
//! as a transaction. The protobuf body lets later versions add fields that older readers skip.

use prost::Message;

use super::{LogError, ParticipantTimes, Settlement, Status, Timeline, TxnRecord};
use crate::core::{Delivery, Outcome, Participant, TxnId, Vote};
use crate::frame;

const MAGIC: &[u8; 2] = b"VD";

#[derive(Clone, PartialEq, prost::Message)]
struct RecordBody {
    #[prost(bytes = "vec", tag = "1")]
    txn_id: Vec<u8>,
    #[prost(uint32, tag = "2")]
    status: u32,
    #[prost(uint64, tag = "3")]
    deadline_unix_ms: u64,
    #[prost(uint64, tag = "4")]
    finished_unix_ms: u64,
    #[prost(bool, tag = "5")]
    commit_requested: bool,
    #[prost(string, optional, tag = "6")]
    reason: Option<String>,
    #[prost(message, repeated, tag = "7")]
    participants: Vec<ParticipantBody>,
    #[prost(uint64, tag = "8")]
    commit_requested_unix_ms: u64,
    #[prost(uint64, tag = "9")]
    decided_unix_ms: u64,
    #[prost(message, optional, tag = "10")]
    settlement: Option<SettlementBody>,
    #[prost(string, optional, tag = "11")]
    begun_by: Option<String>,
    #[prost(string, optional, tag = "12")]
    request_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SettlementBody {
    /// 1 committed, 2 aborted.
    #[prost(uint32, tag = "1")]
    outcome: u32,
    #[prost(string, tag = "2")]
    by: String,
    #[prost(string, tag = "3")]
    reason: String,
    #[prost(uint64, tag = "4")]
    at_unix_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ParticipantBody {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    endpoint: String,
    #[prost(uint32, tag = "3")]
    vote: u32,
    #[prost(string, tag = "4")]
    no_reason: String,
    #[prost(uint32, tag = "5")]
    delivery: u32,
    #[prost(uint32, tag = "6")]
    attempts: u32,
    #[prost(string, optional, tag = "7")]
    last_error: Option<String>,
    #[prost(uint64, tag = "8")]
    voted_unix_ms: u64,
    #[prost(uint64, tag = "9")]
    acked_unix_ms: u64,
}

/// Status codes on disk. Never renumber: old logs must read the same.
const STATUSES: [(u32, Status); 5] = [
    (1, Status::Active),
    (2, Status::Committed),
    (3, Status::Aborted),
    (4, Status::Finished(Outcome::Committed)),
    (5, Status::Finished(Outcome::Aborted)),
];

const DELIVERIES: [(u32, Delivery); 6] = [
    (0, Delivery::NotNeeded),
    (1, Delivery::Required),
    (2, Delivery::BestEffort),
    (3, Delivery::Acked),
    (4, Delivery::GaveUp),
    (5, Delivery::SettledByHand),
];

const OUTCOMES: [(u32, Outcome); 2] = [(1, Outcome::Committed), (2, Outcome::Aborted)];

fn code_of<T: PartialEq + Copy>(table: &[(u32, T)], value: T) -> u32 {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map(|(c, _)| *c)
        .expect("every value has a code")
}

fn value_of<T: Copy>(table: &[(u32, T)], code: u32, what: &str) -> Result<T, String> {
    table
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("unknown {what} code {code}"))
}

/// Encodes a record as one frame.
pub fn encode(record: &TxnRecord) -> Vec<u8> {
    let body = RecordBody {
        txn_id: record.txn_id.to_bytes().to_vec(),
        status: code_of(&STATUSES, record.status),
        deadline_unix_ms: record.deadline_unix_ms,
        finished_unix_ms: record.finished_unix_ms,
        commit_requested: record.commit_requested,
        reason: record.reason.clone(),
        participants: record
            .participants
            .iter()
            .enumerate()
            .map(|(i, p)| participant_body(p, record.timeline.participants.get(i)))
            .collect(),
        commit_requested_unix_ms: record.timeline.commit_requested_unix_ms,
        decided_unix_ms: record.timeline.decided_unix_ms,
        settlement: record.timeline.settlement.as_ref().map(|s| SettlementBody {
            outcome: code_of(&OUTCOMES, s.outcome),
            by: s.by.clone(),
            reason: s.reason.clone(),
            at_unix_ms: s.at_unix_ms,
        }),
        begun_by: record.timeline.begun_by.clone(),
        request_id: record.timeline.request_id.clone(),
    }
    .encode_to_vec();
    frame::seal(MAGIC, &body)
}

/// Decodes one frame; `key_txn` (the id the record is stored under) names the transaction in
/// errors and must match the id inside.
pub fn decode(frame: &[u8], key_txn: Option<TxnId>) -> Result<TxnRecord, LogError> {
    let corrupt = |what: String| LogError::Corrupt { txn: key_txn, what };
    let body = frame::open(MAGIC, frame).map_err(corrupt)?;
    let body = RecordBody::decode(body).map_err(|e| corrupt(format!("undecodable body: {e}")))?;
    let record = record_from(body).map_err(corrupt)?;
    if key_txn.is_some_and(|key| key != record.txn_id) {
        return Err(corrupt(format!(
            "record names transaction {}, not the one it is stored under",
            record.txn_id
        )));
    }
    Ok(record)
}

fn participant_body(p: &Participant, times: Option<&ParticipantTimes>) -> ParticipantBody {
    let times = times.copied().unwrap_or_default();
    let (vote, no_reason) = match &p.vote {
        None => (0, String::new()),
        Some(Vote::Yes) => (1, String::new()),
        Some(Vote::No(reason)) => (2, reason.clone()),
        Some(Vote::ReadOnly) => (3, String::new()),
    };
    ParticipantBody {
        name: p.name.clone(),
        endpoint: p.endpoint.clone(),
        vote,
        no_reason,
        delivery: code_of(&DELIVERIES, p.delivery),
        attempts: p.attempts,
        last_error: p.last_error.clone(),
        voted_unix_ms: times.voted_unix_ms,
        acked_unix_ms: times.acked_unix_ms,
    }
}

fn record_from(body: RecordBody) -> Result<TxnRecord, String> {
    let id: [u8; 16] = body
        .txn_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("transaction id of {} bytes", body.txn_id.len()))?;
    let settlement = match body.settlement {
        Some(s) => Some(Settlement {
            outcome: value_of(&OUTCOMES, s.outcome, "settlement outcome")?,
            by: s.by,
            reason: s.reason,
            at_unix_ms: s.at_unix_ms,
        }),
        None => None,
    };
    let mut times: Vec<ParticipantTimes> = body
        .participants
        .iter()
        .map(|p| ParticipantTimes {
            voted_unix_ms: p.voted_unix_ms,
            acked_unix_ms: p.acked_unix_ms,
        })
        .collect();
    // Participants with no times yet have none in the timeline, as before it was written.
    while times.last() == Some(&ParticipantTimes::default()) {
        times.pop();
    }
    let timeline = Timeline {
        begun_by: body.begun_by,
        request_id: body.request_id,
        commit_requested_unix_ms: body.commit_requested_unix_ms,
        decided_unix_ms: body.decided_unix_ms,
        participants: times,
        settlement,
    };
    Ok(TxnRecord {
        txn_id: TxnId::from_bytes(id),
        status: value_of(&STATUSES, body.status, "status")?,
        deadline_unix_ms: body.deadline_unix_ms,
        finished_unix_ms: body.finished_unix_ms,
        commit_requested: body.commit_requested,
        reason: body.reason,
        participants: body
            .participants
            .into_iter()
            .map(participant_from)
            .collect::<Result<_, _>>()?,
        timeline,
    })
}

fn participant_from(body: ParticipantBody) -> Result<Participant, String> {
    let vote = match body.vote {
        0 => None,
        1 => Some(Vote::Yes),
        2 => Some(Vote::No(body.no_reason)),
        3 => Some(Vote::ReadOnly),
        other => return Err(format!("unknown vote code {other}")),
    };
    Ok(Participant {
        name: body.name,
        endpoint: body.endpoint,
        vote,
        delivery: value_of(&DELIVERIES, body.delivery, "delivery")?,
        attempts: body.attempts,
        last_error: body.last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnRecord {
        let mut yes = Participant::new("payments", "http://127.0.0.1:7501");
        yes.vote = Some(Vote::Yes);
        yes.delivery = Delivery::Required;
        yes.attempts = 3;
        yes.last_error = Some("connection refused".into());
        let mut no = Participant::new("stock", "http://127.0.0.1:7502");
        no.vote = Some(Vote::No("out of stock".into()));
        TxnRecord {
            txn_id: TxnId::from_bytes([9; 16]),
            status: Status::Finished(Outcome::Aborted),
            deadline_unix_ms: 1_800_000_000_000,
            finished_unix_ms: 1_800_000_000_500,
            commit_requested: true,
            reason: Some("participant \"stock\" voted no: out of stock".into()),
            participants: vec![yes, no],
            timeline: Timeline {
                begun_by: Some("orders".into()),
                request_id: Some("order-1042".into()),
                commit_requested_unix_ms: 1_799_999_999_000,
                decided_unix_ms: 1_799_999_999_100,
                participants: vec![
                    ParticipantTimes {
                        voted_unix_ms: 1_799_999_999_050,
                        acked_unix_ms: 0,
                    },
                    ParticipantTimes {
                        voted_unix_ms: 1_799_999_999_060,
                        acked_unix_ms: 1_800_000_000_400,
                    },
                ],
                settlement: Some(Settlement {
                    outcome: Outcome::Aborted,
                    by: "ops@host (from 10.0.0.7:51234)".into(),
                    reason: "the payments service was decommissioned".into(),
                    at_unix_ms: 1_800_000_000_450,
                }),
            },
        }
    }

    #[test]
    fn every_status_round_trips() {
        for (_, status) in STATUSES {
            let record = TxnRecord { status, ..sample() };
            let key = Some(record.txn_id);
            assert_eq!(decode(&encode(&record), key), Ok(record));
        }
    }

    #[test]
    fn a_damaged_record_is_reported_as_corrupt() {
        let mut frame = encode(&sample());
        frame[20] ^= 1;
        let err = decode(&frame, Some(sample().txn_id)).unwrap_err();
        assert!(
            matches!(err, LogError::Corrupt { txn: Some(_), .. }),
            "{err}"
        );
    }

    #[test]
    fn a_record_under_the_wrong_key_is_refused() {
        let frame = encode(&sample());
        let other = TxnId::from_bytes([1; 16]);
        let err = decode(&frame, Some(other)).unwrap_err();
        assert!(err.to_string().contains("not the one it is stored under"));
    }
}
