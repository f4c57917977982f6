//! The bank scenario of `verdict demo`: a coordinator and two bank participants as child
//! processes on free local ports, a handful of transfers between them (one overdraws and is
//! aborted), the outcome of each and the balances, then a clean shutdown. Or the same transfers
//! through a deployment already running (`--coordinator`, `--bank`), between accounts of its
//! own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;

use crate::bank::{transfer, AccountAt};
use crate::client::Client;
use crate::process::ChildServer;
use crate::proto::bank_client::BankClient;
use crate::proto::{GetBalanceRequest, OpenAccountRequest};
use crate::{net, tls};

/// The transfers the demo runs: (from, to, amount).
const TRANSFERS: [(&str, &str, i64); 4] = [
    ("alice", "bob", 30),
    ("bob", "alice", 5),
    ("alice", "bob", 500),
    ("bob", "alice", 45),
];

async fn spawn(exe: &Path, args: &[&str], data_dir: PathBuf) -> anyhow::Result<ChildServer> {
    let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    all.extend(["--listen".into(), "127.0.0.1:0".into(), "--data-dir".into()]);
    all.push(data_dir.into());
    all.extend(["--log-level".into(), "warn".into()]);
    ChildServer::spawn(exe, all, Stdio::inherit()).await
}

async fn balance(at: &AccountAt) -> anyhow::Result<i64> {
    let request = GetBalanceRequest {
        account: at.account.clone(),
    };
    Ok(at
        .bank
        .clone()
        .get_balance(request)
        .await?
        .into_inner()
        .balance)
}

/// A deployment to run the demo's transfers through instead of starting one.
#[derive(Clone, Debug)]
pub struct Running {
    /// The coordinator's URL, or every node of a cluster, comma-separated.
    pub coordinator: String,
    /// Two banks' URLs: alice's and bob's.
    pub banks: [String; 2],
}

/// Runs the demo, printing to stdout: on processes of its own, or through `running`.
pub async fn run(running: Option<Running>) -> anyhow::Result<()> {
    if let Some(running) = running {
        return run_through(&running).await;
    }
    let exe = std::env::current_exe().context("cannot find the verdict binary")?;
    let dir = std::env::temp_dir().join(format!("verdict-demo-{}", std::process::id()));
    let result = run_in(&exe, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_through(running: &Running) -> anyhow::Result<()> {
    crate::coordinator::validate::urls("--coordinator", &running.coordinator)?;
    let mut accounts = Vec::new();
    // Accounts of this run's own: the deployment may have run the demo before.
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    for (name, url) in ["alice", "bob"].iter().zip(&running.banks) {
        crate::coordinator::validate::url("--bank", url)?;
        accounts.push(AccountAt {
            bank: BankClient::new(net::channel(tls::endpoint(url)?)),
            account: format!("{name}-{}", run.as_millis()),
        });
        println!("{name:<12} {}@{url}", accounts.last().unwrap().account);
    }
    let client = Client::new(&running.coordinator, Duration::from_secs(10))?;
    transfers(&client, &accounts[0], &accounts[1]).await
}

async fn run_in(exe: &Path, dir: &Path) -> anyhow::Result<()> {
    let coordinator = spawn(exe, &["serve"], dir.join("coordinator")).await?;
    println!("coordinator  {}", coordinator.url());
    let mut banks = Vec::new();
    for name in ["bank-a", "bank-b"] {
        let args = ["participant", "kv", "--name", name, "--coordinator"];
        let mut args: Vec<&str> = args.to_vec();
        let url = coordinator.url();
        args.push(&url);
        let bank = spawn(exe, &args, dir.join(name)).await?;
        println!("{name}       {}", bank.url());
        banks.push(bank);
    }
    let channel = |bank: &ChildServer| -> anyhow::Result<BankClient<Channel>> {
        Ok(BankClient::new(
            Channel::from_shared(bank.url())?.connect_lazy(),
        ))
    };
    let alice = AccountAt {
        bank: channel(&banks[0])?,
        account: "alice".into(),
    };
    let bob = AccountAt {
        bank: channel(&banks[1])?,
        account: "bob".into(),
    };
    let client = Client::new(&coordinator.url(), Duration::from_secs(10))?;
    transfers(&client, &alice, &bob).await?;
    for server in banks.into_iter().chain([coordinator]) {
        server.stop().await?;
    }
    println!("\nall processes stopped cleanly");
    Ok(())
}

/// Opens alice (100) and bob (20), runs [`TRANSFERS`] between them and prints each outcome and
/// the balances after it.
async fn transfers(client: &Client, alice: &AccountAt, bob: &AccountAt) -> anyhow::Result<()> {
    for (at, opening) in [(alice, 100), (bob, 20)] {
        let request = OpenAccountRequest {
            account: at.account.clone(),
            balance: opening,
        };
        at.bank.clone().open_account(request).await?;
    }
    println!("\nopened alice with 100 and bob with 20\n");
    for (from, to, amount) in TRANSFERS {
        let (source, target) = match from {
            "alice" => (alice, bob),
            _ => (bob, alice),
        };
        let (txn, outcome, reason) = transfer(client, source, target, amount).await?;
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        println!("{from} -> {to} {amount:>4}  {outcome:?}{why}\n    txn {txn}");
        // Phase 2 runs after the answer: a retried Commit that waits for every acknowledgement
        // tells when the banks have applied it.
        client.commit_and_wait(txn).await?;
        let (a, b) = (balance(alice).await?, balance(bob).await?);
        println!("    alice {a:>4}  bob {b:>4}  total {:>4}", a + b);
    }
    Ok(())
}
