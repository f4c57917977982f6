//! `verdict bank open|balance|transfer`.

use std::time::Duration;

use clap::Subcommand;
use tonic::transport::Channel;
use verdict::bank::{transfer, AccountAt};
use verdict::client::Client;
use verdict::coordinator::validate;
use verdict::proto::bank_client::BankClient;
use verdict::proto::{GetBalanceRequest, OpenAccountRequest};

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
    },
}

fn bank_client(url: &str) -> anyhow::Result<BankClient<Channel>> {
    validate::url("bank URL", url)?;
    Ok(BankClient::new(
        Channel::from_shared(url.to_owned())?.connect_lazy(),
    ))
}

/// A failed call, said plainly: what the server answered, or that it could not be reached.
fn said(status: tonic::Status) -> anyhow::Error {
    match status.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "the server cannot be reached ({}); is it running at that address?",
            status.message()
        ),
        code => anyhow::anyhow!("{code:?}: {}", status.message()),
    }
}

pub async fn run(command: BankCommand) -> anyhow::Result<()> {
    bank_call(command)
        .await
        .map_err(|e| match e.downcast::<tonic::Status>() {
            Ok(status) => said(status),
            Err(other) => other,
        })
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
        } => {
            let client = Client::new(&coordinator, Duration::from_secs(30))?;
            let from = AccountAt {
                bank: bank_client(&from_bank)?,
                account: from,
            };
            let to = AccountAt {
                bank: bank_client(&to_bank)?,
                account: to,
            };
            let (txn, outcome, reason) = transfer(&client, &from, &to, amount).await?;
            println!("{txn} {outcome:?} {reason}");
        }
    }
    Ok(())
}
