//! `verdict txn list|show|retry|resolve`: the operator's view of transactions — what is in
//! flight, what is in doubt and for how long, one transaction participant by participant with
//! its timeline — a retry of phase 2 now, and the resolution by hand of what no protocol step
//! can settle.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{ArgGroup, Subcommand, ValueEnum};
use verdict::client::Client;
use verdict::core::{Outcome, TxnId};
use verdict::proto::{ListTransactionsRequest, ParticipantStatus, Transaction, TransactionState};

use super::{duration, plainly, Coordinator};

#[derive(Subcommand)]
pub enum TxnCommand {
    /// List transactions, newest last, as a table (or --json).
    List {
        #[command(flatten)]
        coordinator: Coordinator,
        /// Only transactions in this state.
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
        /// Only transactions begun longer ago than this (e.g. 30s).
        #[arg(long, value_parser = duration)]
        older_than: Option<Duration>,
        /// Only transactions this participant (by name) takes part in.
        #[arg(long)]
        participant: Option<String>,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Send a decided transaction's decision now to every participant still owed it, instead
    /// of at the next retry after the backoff (e.g. once a participant that was down is back).
    Retry {
        txn_id: String,
        #[command(flatten)]
        coordinator: Coordinator,
    },
    /// Settle by hand what no protocol step can — a participant gone for good: an undecided
    /// transaction is decided (--commit only with every participant's YES); a decided one stops
    /// being delivered to the participants still owed it. Refused where it would contradict the
    /// decision. Recorded in the decision log with who, why and when.
    #[command(group(ArgGroup::new("outcome").required(true).args(["commit", "abort"])))]
    Resolve {
        txn_id: String,
        /// Settle it as committed.
        #[arg(long)]
        commit: bool,
        /// Settle it as aborted.
        #[arg(long)]
        abort: bool,
        /// Why, for the record (required).
        #[arg(long)]
        reason: String,
        /// Who is acting, for the record; default USER@HOST.
        #[arg(long)]
        operator: Option<String>,
        #[command(flatten)]
        coordinator: Coordinator,
        /// Print the transaction after as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show one transaction: its state, per participant its vote, acknowledgement, delivery
    /// attempts and last error, its timeline, and a resolution by hand.
    Show {
        txn_id: String,
        #[command(flatten)]
        coordinator: Coordinator,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// The states `list` filters on.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum StateFilter {
    Active,
    Preparing,
    /// Decided and not yet delivered to every participant: committing or aborting.
    InDoubt,
    Committing,
    Aborting,
    /// Committed or aborted, and delivered.
    Finished,
}

impl StateFilter {
    fn states(self) -> &'static [TransactionState] {
        use TransactionState as S;
        match self {
            StateFilter::Active => &[S::Active],
            StateFilter::Preparing => &[S::Preparing],
            StateFilter::InDoubt => &[S::Committing, S::Aborting],
            StateFilter::Committing => &[S::Committing],
            StateFilter::Aborting => &[S::Aborting],
            StateFilter::Finished => &[S::Committed, S::Aborted],
        }
    }
}

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(command: TxnCommand) -> anyhow::Result<()> {
    txn_call(command).await.map_err(plainly)
}

async fn txn_call(command: TxnCommand) -> anyhow::Result<()> {
    match command {
        TxnCommand::List {
            coordinator,
            state,
            older_than,
            participant,
            json,
        } => {
            let client = coordinator.client(CALL_TIMEOUT)?;
            let states = state.map_or(&[TransactionState::Unspecified][..], StateFilter::states);
            let mut found = Vec::new();
            for &state in states {
                found.extend(all_pages(&client, state).await?);
            }
            found.retain(|txn| {
                older_than.is_none_or(|min| age(txn) >= min)
                    && participant
                        .as_ref()
                        .is_none_or(|name| takes_part(txn, name))
            });
            found.sort_by(|a, b| a.txn_id.cmp(&b.txn_id));
            match json {
                true => println!(
                    "{}",
                    serde_json::Value::Array(found.iter().map(to_json).collect())
                ),
                false => print!("{}", table(&found)),
            }
            Ok(())
        }
        TxnCommand::Retry {
            txn_id,
            coordinator,
        } => {
            let id = txn_id_of(&txn_id)?;
            coordinator.client(CALL_TIMEOUT)?.retry_delivery(id).await?;
            println!("phase 2 of {id} is being sent again now");
            Ok(())
        }
        TxnCommand::Resolve {
            txn_id,
            commit,
            reason,
            operator,
            coordinator,
            json,
            ..
        } => {
            let id = txn_id_of(&txn_id)?;
            let outcome = match commit {
                true => Outcome::Committed,
                false => Outcome::Aborted,
            };
            let operator = operator.unwrap_or_else(whoami);
            let client = coordinator.client(CALL_TIMEOUT)?;
            let txn = client
                .resolve_by_hand(id, outcome, &reason, &operator)
                .await?;
            show(&txn, json);
            Ok(())
        }
        TxnCommand::Show {
            txn_id,
            coordinator,
            json,
        } => {
            let id = txn_id_of(&txn_id)?;
            show(&coordinator.client(CALL_TIMEOUT)?.get(id).await?, json);
            Ok(())
        }
    }
}

fn show(txn: &Transaction, json: bool) {
    match json {
        true => println!("{}", to_json(txn)),
        false => print!("{}", details(txn)),
    }
}

/// USER@HOST, for the record of a resolution by hand.
fn whoami() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let mut host = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `len` bytes into the buffer we own.
    let ok = unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) } == 0;
    let end = host.iter().position(|&b| b == 0).unwrap_or(0);
    match ok && end > 0 {
        true => format!("{user}@{}", String::from_utf8_lossy(&host[..end])),
        false => user,
    }
}

fn txn_id_of(text: &str) -> anyhow::Result<TxnId> {
    text.parse()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a transaction id (a UUID, as Begin returns)"))
}

/// Every transaction in `state`, page after page.
async fn all_pages(client: &Client, state: TransactionState) -> anyhow::Result<Vec<Transaction>> {
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
fn age(txn: &Transaction) -> Duration {
    let begun = txn.txn_id.parse::<TxnId>().map_or(0, TxnId::begun_unix_ms);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(now.saturating_sub(begun))
}

fn takes_part(txn: &Transaction, name: &str) -> bool {
    txn.participants
        .iter()
        .any(|p| p.participant.as_ref().is_some_and(|r| r.name == name))
}

fn state_name(txn: &Transaction) -> &'static str {
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

fn name(p: &ParticipantStatus) -> &str {
    p.participant.as_ref().map_or("?", |r| r.name.as_str())
}

fn vote(p: &ParticipantStatus) -> &'static str {
    match p.vote() {
        verdict::proto::Vote::Unspecified => "-",
        verdict::proto::Vote::Yes => "yes",
        verdict::proto::Vote::No => "no",
        verdict::proto::Vote::ReadOnly => "read-only",
    }
}

/// Rounded for a person: "850ms", "12s", "3m".
fn short(age: Duration) -> String {
    match age.as_secs() {
        0 => format!("{}ms", age.as_millis()),
        s @ 1..120 => format!("{s}s"),
        s @ 120..7200 => format!("{}m", s / 60),
        s => format!("{}h", s / 3600),
    }
}

fn table(txns: &[Transaction]) -> String {
    let mut out = format!(
        "{:<36}  {:<10}  {:>6}  {}\n",
        "txn", "state", "age", "participants (vote, acked)"
    );
    for txn in txns {
        let participants: Vec<String> = txn
            .participants
            .iter()
            .map(|p| {
                format!(
                    "{}:{}{}",
                    name(p),
                    vote(p),
                    if p.acknowledged { "+" } else { "" }
                )
            })
            .collect();
        out += &format!(
            "{:<36}  {:<10}  {:>6}  {}\n",
            txn.txn_id,
            state_name(txn),
            short(age(txn)),
            participants.join(" ")
        );
    }
    out += &format!("{} transaction(s)\n", txns.len());
    out
}

fn acked(p: &ParticipantStatus) -> &'static str {
    match (p.acknowledged, p.settled_by_hand) {
        (true, _) => "yes",
        (false, true) => "by hand",
        (false, false) => "no",
    }
}

fn when(unix_ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(at).to_string()
}

fn details(txn: &Transaction) -> String {
    let mut out = format!(
        "txn       {}\nstate     {}\nage       {}\n",
        txn.txn_id,
        state_name(txn),
        short(age(txn))
    );
    if !txn.reason.is_empty() {
        out += &format!("reason    {}\n", txn.reason);
    }
    if let Some(r) = &txn.resolution {
        out += &format!(
            "resolved  by hand as {} at {} by {}: {}\n",
            outcome_name(r.outcome()),
            when(r.at_unix_ms),
            r.operator,
            r.reason
        );
    }
    out += &format!(
        "\n{:<16}  {:<9}  {:<7}  {:>8}  {:<32}  {}\n",
        "participant", "vote", "acked", "attempts", "endpoint", "last error"
    );
    for p in &txn.participants {
        let endpoint = p.participant.as_ref().map_or("", |r| r.endpoint.as_str());
        out += &format!(
            "{:<16}  {:<9}  {:<7}  {:>8}  {:<32}  {}\n",
            name(p),
            vote(p),
            acked(p),
            p.attempts,
            endpoint,
            if p.last_error.is_empty() {
                "-"
            } else {
                &p.last_error
            }
        );
    }
    out += "\ntimeline\n";
    for event in &txn.timeline {
        out += &format!("  {}  {}\n", when(event.at_unix_ms), event.event);
    }
    out
}

fn outcome_name(outcome: verdict::proto::Outcome) -> &'static str {
    match outcome {
        verdict::proto::Outcome::Committed => "COMMIT",
        verdict::proto::Outcome::Aborted => "ABORT",
        _ => "?",
    }
}

fn to_json(txn: &Transaction) -> serde_json::Value {
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
