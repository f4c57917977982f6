//! `verdict bank open|balance|transfer`.

use std::time::Duration;

use clap::{Args, Subcommand};
use tonic::transport::Channel;
use verdict::bank::{transfer, transfer_submitting, AccountAt, AccountOf};
use verdict::chaos::ledger::{self, Endpoints, Ledger};
use verdict::client::Client;
use verdict::coordinator::validate;
use verdict::proto::bank_client::BankClient;
use verdict::proto::{ApplyRequest, GetBalanceRequest, OpenAccountRequest};
use verdict::{net, tls};

use super::{duration, plainly};

#[derive(Subcommand)]
pub enum BankCommand {
    /// Open an account.
    Open {
        /// The bank's URL.
        #[arg(long)]
        bank: String,
        account: String,
        balance: i64,
    },
    /// Print an account's balance (and what prepared transactions hold of it).
    Balance {
        #[arg(long)]
        bank: String,
        account: String,
    },
    /// Move money between accounts (possibly on two banks) in one Verdict transaction.
    Transfer {
        /// The coordinator's URL, or every node of a cluster, comma-separated.
        #[arg(long, default_value = "http://127.0.0.1:7400")]
        coordinator: String,
        /// The paying bank's URL.
        #[arg(long)]
        from_bank: String,
        /// The paying account.
        #[arg(long)]
        from: String,
        /// The receiving bank's URL.
        #[arg(long)]
        to_bank: String,
        /// The receiving account.
        #[arg(long)]
        to: String,
        /// How much, in the smallest unit; positive.
        #[arg(long)]
        amount: i64,
        /// Hand each bank's change to the coordinator in one Submit (Begin and Commit in one
        /// call), which brings it with the bank's Prepare, instead of calling Apply on each
        /// bank.
        #[arg(long)]
        hand_over: bool,
    },
    /// Stage a change to an account in a transaction begun already (the bank enlists itself
    /// with its coordinator); the transaction's commit applies it.
    Apply {
        /// The bank's URL.
        #[arg(long)]
        bank: String,
        /// The transaction's id.
        #[arg(long)]
        txn: String,
        /// The account to change.
        #[arg(long)]
        account: String,
        /// The change: negative takes money out, positive puts it in.
        #[arg(long, allow_hyphen_values = true)]
        delta: i64,
    },
    /// Run random transfers between fresh accounts on the given banks for a while, then check
    /// every invariant: each committed transfer applied at both banks and each aborted one at
    /// neither, nothing left in doubt or held, money conserved. Exits non-zero on a violation.
    /// For a deployment under test: break things while it runs.
    Exercise(ExerciseArgs),
}

#[derive(Args)]
pub struct ExerciseArgs {
    /// The coordinator's URL, or every node of a cluster, comma-separated.
    #[arg(long, default_value = "http://127.0.0.1:7400")]
    coordinator: String,
    /// A bank's URL (KV or PostgreSQL); at least two.
    #[arg(long = "bank", required = true, num_args = 1)]
    banks: Vec<String>,
    /// How long to run transfers.
    #[arg(long, value_parser = duration, default_value = "30s")]
    duration: Duration,
    /// Transfers in flight.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    workers: u32,
    /// Accounts opened on each bank (few accounts: transfers contend and some overdraw).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    accounts_per_bank: u32,
    /// How long each transfer's calls may take, retries across nodes included.
    #[arg(long, value_parser = duration, default_value = "5s")]
    call_timeout: Duration,
    /// How long to wait after the transfers for nothing to be in flight before checking.
    #[arg(long, value_parser = duration, default_value = "60s")]
    patience: Duration,
    /// Seed of the random transfers (default: the clock).
    #[arg(long)]
    seed: Option<u64>,
}

fn bank_client(url: &str) -> anyhow::Result<BankClient<Channel>> {
    validate::url("bank URL", url)?;
    Ok(BankClient::new(net::channel(tls::endpoint(url)?)))
}

pub async fn run(command: BankCommand) -> anyhow::Result<()> {
    bank_call(command).await.map_err(plainly)
}

async fn bank_call(command: BankCommand) -> anyhow::Result<()> {
    match command {
        BankCommand::Open {
            bank,
            account,
            balance,
        } => {
            let request = OpenAccountRequest { account, balance };
            bank_client(&bank)?.open_account(request).await?;
            println!("opened");
        }
        BankCommand::Balance { bank, account } => {
            let request = GetBalanceRequest { account };
            let response = bank_client(&bank)?.get_balance(request).await?.into_inner();
            println!("balance {} (held {})", response.balance, response.held);
        }
        BankCommand::Transfer {
            coordinator,
            from_bank,
            from,
            to_bank,
            to,
            amount,
            hand_over,
        } => {
            let client = Client::new(&coordinator, Duration::from_secs(30))?;
            let (from_bank, to_bank) = (bank_client(&from_bank)?, bank_client(&to_bank)?);
            let (txn, outcome, reason) = match hand_over {
                false => {
                    let from = AccountAt {
                        bank: from_bank,
                        account: from,
                    };
                    let to = AccountAt {
                        bank: to_bank,
                        account: to,
                    };
                    transfer(&client, &from, &to, amount).await?
                }
                true => {
                    let from = AccountOf::at(&from_bank, from).await?;
                    let to = AccountOf::at(&to_bank, to).await?;
                    let request_id = verdict::world::uuid_v7().to_string();
                    transfer_submitting(&client, &request_id, &from, &to, amount).await?
                }
            };
            println!("{txn} {outcome:?} {reason}");
        }
        BankCommand::Apply {
            bank,
            txn,
            account,
            delta,
        } => {
            let request = ApplyRequest {
                txn_id: txn,
                account,
                delta,
                deadline_unix_ms: 0,
            };
            bank_client(&bank)?.apply(request).await?;
            println!("staged");
        }
        BankCommand::Exercise(args) => exercise(args).await?,
    }
    Ok(())
}

async fn exercise(args: ExerciseArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.banks.len() >= 2,
        "give at least two banks (--bank URL --bank URL): a transfer moves money between them"
    );
    let endpoints = Endpoints::new(&args.coordinator, &args.banks)?;
    let started = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let seed = args.seed.unwrap_or(started.as_millis() as u64);
    // Fresh accounts every run, so a deployment can be exercised again and again.
    let prefix = format!("x{}", started.as_millis());
    let per_bank = args.accounts_per_bank as usize;
    let ledger = Ledger::open_named(&endpoints, &prefix, per_bank, 1000).await?;
    let client = Client::new(&args.coordinator, args.call_timeout)?;
    let stop_at = tokio::time::Instant::now() + args.duration;
    let workers = args.workers as usize;
    let attempts =
        ledger::run_transfers(&ledger, &endpoints.banks, &client, workers, seed, stop_at).await?;
    let report = ledger::check(&endpoints, &ledger, &attempts, args.patience).await?;
    for violation in &report.violations {
        println!("VIOLATION {violation}");
    }
    println!(
        "exercise: attempted {} committed {} aborted {} indeterminate {} violations {} seed {seed}",
        report.attempted,
        report.committed,
        report.aborted,
        report.indeterminate,
        report.violations.len()
    );
    anyhow::ensure!(report.violations.is_empty(), "invariants violated");
    Ok(())
}
