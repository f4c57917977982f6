//! `verdict txn list|show|retry`: the operator's view of transactions — what is in flight, what
//! is in doubt and for how long, one transaction participant by participant — and a retry of
//! phase 2 now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Subcommand, ValueEnum};
use verdict::client::Client;
use verdict::core::TxnId;
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
    /// Show one transaction: its state, and per participant its vote, acknowledgement,
    /// delivery attempts and last error.
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
        TxnCommand::Show {
            txn_id,
            coordinator,
            json,
        } => {
            let id = txn_id_of(&txn_id)?;
            let txn = coordinator.client(CALL_TIMEOUT)?.get(id).await?;
            match json {
                true => println!("{}", to_json(&txn)),
                false => print!("{}", details(&txn)),
            }
            Ok(())
        }
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
    out += &format!(
        "\n{:<16}  {:<9}  {:<5}  {:>8}  {:<32}  {}\n",
        "participant", "vote", "acked", "attempts", "endpoint", "last error"
    );
    for p in &txn.participants {
        let endpoint = p.participant.as_ref().map_or("", |r| r.endpoint.as_str());
        out += &format!(
            "{:<16}  {:<9}  {:<5}  {:>8}  {:<32}  {}\n",
            name(p),
            vote(p),
            if p.acknowledged { "yes" } else { "no" },
            p.attempts,
            endpoint,
            if p.last_error.is_empty() {
                "-"
            } else {
                &p.last_error
            }
        );
    }
    out
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
    })
}
