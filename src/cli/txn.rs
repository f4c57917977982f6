//! `verdict txn list|show|retry|resolve`: the operator's view of transactions — what is in
//! flight, what is in doubt and for how long, one transaction participant by participant with
//! its timeline — a retry of phase 2 now, and the resolution by hand of what no protocol step
//! can settle.

use std::time::{Duration, UNIX_EPOCH};

use clap::{ArgGroup, Subcommand, ValueEnum};

use verdict::console::json::{
    acked, age, all_pages, name, outcome_name, state_name, to_json, vote,
};
use verdict::core::{Outcome, TxnId};
use verdict::proto::{Transaction, TransactionState};

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

fn takes_part(txn: &Transaction, name: &str) -> bool {
    txn.participants
        .iter()
        .any(|p| p.participant.as_ref().is_some_and(|r| r.name == name))
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
