//! The bank workload under faults, and the invariant checker that judges it — on processes the
//! tests start ([`Cluster`]) or on a running deployment ([`Endpoints`], `verdict bank exercise`).
//!
//! Every transfer attempted is recorded with what its client was told. After the faults heal and
//! the cluster is quiet, the checker asks the coordinator for every transaction's outcome and
//! demands:
//! - no transaction in doubt, nothing in flight, no money held by a prepared transaction;
//! - every COMMITTED told to a client is committed; nothing told ABORTED is committed;
//! - every account's balance is its opening balance plus exactly the committed transfers that
//!   touch it: each committed transfer applied at both banks, each aborted one at neither;
//! - the total is conserved and no balance is negative.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Status;

use super::cluster::Cluster;
use crate::bank::{transfer_in, transfer_submitting, AccountAt, AccountOf};
use crate::client::Client;
use crate::core::{Outcome, TxnId};
use crate::proto::bank_client::BankClient;
use crate::proto::{
    GetBalanceRequest, ListTransactionsRequest, OpenAccountRequest, ResolveRequest,
    TransactionState,
};
use crate::{net, tls};

/// Where the bank workload runs: a coordinator (one node, or a cluster's) and banks by index.
pub trait Deployment {
    /// The coordinator's node URLs, comma-separated.
    fn coordinator_urls(&self) -> String;
    fn bank_count(&self) -> usize;
    fn bank_client(&self, bank: usize) -> BankClient<Channel>;
}

impl Deployment for Cluster {
    fn coordinator_urls(&self) -> String {
        self.node_urls()
    }

    fn bank_count(&self) -> usize {
        self.banks.len()
    }

    fn bank_client(&self, bank: usize) -> BankClient<Channel> {
        Cluster::bank_client(self, bank)
    }
}

/// How long a call to a bank may take: a bank that died mid-call (its machine, or the link to
/// it) must not stall a transfer loop for good.
const BANK_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A deployment running elsewhere, known by its URLs.
pub struct Endpoints {
    pub coordinator: String,
    pub banks: Vec<BankClient<Channel>>,
}

impl Endpoints {
    /// `coordinator`: one URL or a cluster's, comma-separated; `banks`: each bank's URL.
    pub fn new(coordinator: &str, banks: &[String]) -> anyhow::Result<Self> {
        crate::coordinator::validate::urls("the coordinator URL", coordinator)?;
        let banks = banks
            .iter()
            .map(|url| {
                crate::coordinator::validate::url("a bank URL", url)?;
                let endpoint = net::watched(tls::endpoint(url)?)
                    .connect_timeout(BANK_CALL_TIMEOUT)
                    .timeout(BANK_CALL_TIMEOUT);
                Ok(BankClient::new(net::channel(endpoint)))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Endpoints {
            coordinator: coordinator.to_owned(),
            banks,
        })
    }
}

impl Deployment for Endpoints {
    fn coordinator_urls(&self) -> String {
        self.coordinator.clone()
    }

    fn bank_count(&self) -> usize {
        self.banks.len()
    }

    fn bank_client(&self, bank: usize) -> BankClient<Channel> {
        self.banks[bank].clone()
    }
}

/// What a client was told about a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reported {
    Committed,
    Aborted,
    /// An error or a timeout: the outcome is for the checker to find.
    Unknown,
}

/// One transfer attempted.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// `None` if Begin itself failed (no transaction was attempted), or if a Submit had no
    /// answer (which transaction it began, if any, the client does not know).
    pub txn: Option<TxnId>,
    pub from: usize,
    pub to: usize,
    pub amount: i64,
    pub reported: Reported,
}

/// The accounts: `(bank, account)`, each opened with the same balance.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub accounts: Vec<(usize, String)>,
    pub opening: i64,
}

impl Ledger {
    /// Opens `per_bank` accounts on every bank of `deployment`.
    pub async fn open(
        deployment: &impl Deployment,
        per_bank: usize,
        opening: i64,
    ) -> anyhow::Result<Self> {
        Self::open_named(deployment, "acct", per_bank, opening).await
    }

    /// Opens `per_bank` accounts named `{prefix}-{bank}-{i}` on every bank of `deployment`.
    pub async fn open_named(
        deployment: &impl Deployment,
        prefix: &str,
        per_bank: usize,
        opening: i64,
    ) -> anyhow::Result<Self> {
        let mut accounts = Vec::new();
        for bank in 0..deployment.bank_count() {
            for i in 0..per_bank {
                let account = format!("{prefix}-{bank}-{i}");
                let request = OpenAccountRequest {
                    account: account.clone(),
                    balance: opening,
                };
                deployment.bank_client(bank).open_account(request).await?;
                accounts.push((bank, account));
            }
        }
        Ok(Ledger { accounts, opening })
    }

    fn at(&self, banks: &[BankClient<Channel>], index: usize) -> AccountAt {
        let (bank, account) = &self.accounts[index];
        AccountAt {
            bank: banks[*bank].clone(),
            account: account.clone(),
        }
    }

    /// Two distinct random accounts and an amount (sometimes more than an account holds).
    pub fn pick(&self, rng: &mut impl Rng) -> (usize, usize, i64) {
        let from = rng.random_range(0..self.accounts.len());
        let to = (from + rng.random_range(1..self.accounts.len())) % self.accounts.len();
        (from, to, rng.random_range(1..=self.opening / 2))
    }

    /// Runs one transfer through `banks` (by bank index) and records what the client was told.
    pub async fn transfer(
        &self,
        banks: &[BankClient<Channel>],
        client: &Client,
        (from, to, amount): (usize, usize, i64),
    ) -> Attempt {
        match client.begin(None).await {
            Ok(begun) => {
                self.transfer_in(banks, client, begun.txn_id, (from, to, amount))
                    .await
            }
            Err(_) => Attempt {
                txn: None,
                from,
                to,
                amount,
                reported: Reported::Unknown,
            },
        }
    }

    /// Transfers `amount` from account `from` to account `to` with one Submit named
    /// `request_id`, and records what the client was told.
    pub async fn submit(
        &self,
        banks: &[BankClient<Channel>],
        client: &Client,
        request_id: &str,
        (from, to, amount): (usize, usize, i64),
    ) -> Attempt {
        let submitted = async {
            let at = |index| {
                let AccountAt { bank, account } = self.at(banks, index);
                async move { AccountOf::at(&bank, account).await }
            };
            let (source, target) = tokio::try_join!(at(from), at(to))?;
            transfer_submitting(client, request_id, &source, &target, amount).await
        };
        let (txn, reported) = match submitted.await {
            Ok((txn, Outcome::Committed, _)) => (Some(txn), Reported::Committed),
            Ok((txn, Outcome::Aborted, _)) => (Some(txn), Reported::Aborted),
            Err(_) => (None, Reported::Unknown),
        };
        Attempt {
            txn,
            from,
            to,
            amount,
            reported,
        }
    }

    /// Transfers `amount` from account `from` to account `to` in transaction `txn`, begun
    /// already, and records what the client was told.
    pub async fn transfer_in(
        &self,
        banks: &[BankClient<Channel>],
        client: &Client,
        txn: TxnId,
        (from, to, amount): (usize, usize, i64),
    ) -> Attempt {
        let (source, target) = (self.at(banks, from), self.at(banks, to));
        let reported = match transfer_in(client, txn, 0, &source, &target, amount).await {
            Ok((Outcome::Committed, _)) => Reported::Committed,
            Ok((Outcome::Aborted, _)) => Reported::Aborted,
            Err(_) => Reported::Unknown,
        };
        Attempt {
            txn: Some(txn),
            from,
            to,
            amount,
            reported,
        }
    }
}

/// Runs `workers` transfer loops (random transfers, seeded by `seed`) through `client` until
/// `stop_at`, and returns every transfer attempted.
pub async fn run_transfers(
    ledger: &Ledger,
    banks: &[BankClient<Channel>],
    client: &Client,
    workers: usize,
    seed: u64,
    stop_at: Instant,
) -> anyhow::Result<Vec<Attempt>> {
    let loops: Vec<_> = (0..workers)
        .map(|worker| {
            let (ledger, banks, client) = (ledger.clone(), banks.to_vec(), client.clone());
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1 + worker as u64));
            tokio::spawn(async move {
                let mut attempts = Vec::new();
                while Instant::now() < stop_at {
                    let attempt = ledger
                        .transfer(&banks, &client, ledger.pick(&mut rng))
                        .await;
                    if attempt.reported == Reported::Unknown {
                        // Something is down: do not spin against it.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if attempt.txn.is_some() {
                        attempts.push(attempt);
                    }
                }
                attempts
            })
        })
        .collect();
    let mut attempts = Vec::new();
    for transfers in loops {
        attempts.extend(transfers.await?);
    }
    Ok(attempts)
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub attempted: usize,
    pub committed: usize,
    pub aborted: usize,
    /// Transfers whose client got no outcome (errors, timeouts, crashes).
    pub indeterminate: usize,
    pub violations: Vec<String>,
}

async fn balances(
    deployment: &impl Deployment,
    ledger: &Ledger,
) -> Result<Vec<(i64, i64)>, Status> {
    let mut found = Vec::new();
    for (bank, account) in &ledger.accounts {
        let request = GetBalanceRequest {
            account: account.clone(),
        };
        let response = deployment.bank_client(*bank).get_balance(request).await?;
        let response = response.into_inner();
        found.push((response.balance, response.held));
    }
    Ok(found)
}

/// The checker's client, one for the whole check: it follows a cluster's leader, and waits out
/// an election.
fn client(deployment: &impl Deployment) -> Result<Client, Status> {
    Client::new(&deployment.coordinator_urls(), Duration::from_secs(10))
}

async fn in_flight(client: &Client) -> Result<usize, Status> {
    let mut count = 0;
    for state in [
        TransactionState::Active,
        TransactionState::Preparing,
        TransactionState::Committing,
        TransactionState::Aborting,
    ] {
        let request = ListTransactionsRequest {
            state: state.into(),
            page_size: 1000,
            page_token: String::new(),
        };
        count += client.list(request).await?.transactions.len();
    }
    Ok(count)
}

/// Waits (up to `patience`) until nothing is in flight at the coordinator and no bank holds
/// money for a prepared transaction. Returns what is still unsettled if that never happens.
async fn settle(
    deployment: &impl Deployment,
    client: &Client,
    ledger: &Ledger,
    patience: Duration,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let state = async {
            let flying = in_flight(client).await?;
            let held: i64 = balances(deployment, ledger)
                .await?
                .iter()
                .map(|(_, h)| h)
                .sum();
            Ok::<_, Status>((flying, held))
        };
        let last = match state.await {
            Ok((0, 0)) => return None,
            Ok((flying, held)) => format!("{flying} transactions in flight, {held} held"),
            Err(status) => format!("cannot read the cluster: {status}"),
        };
        if tokio::time::Instant::now() >= deadline {
            return Some(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the cluster to settle, then checks every invariant over `attempts`.
pub async fn check(
    deployment: &impl Deployment,
    ledger: &Ledger,
    attempts: &[Attempt],
    patience: Duration,
) -> anyhow::Result<Report> {
    let mut report = Report {
        attempted: attempts.iter().filter(|a| a.txn.is_some()).count(),
        ..Report::default()
    };
    let client = client(deployment)?;
    if let Some(unsettled) = settle(deployment, &client, ledger, patience).await {
        report
            .violations
            .push(format!("not settled after {patience:?}: {unsettled}"));
    }
    let mut expected = vec![ledger.opening; ledger.accounts.len()];
    for attempt in attempts {
        let Some(txn) = attempt.txn else {
            continue;
        };
        let request = ResolveRequest {
            txn_id: txn.to_string(),
        };
        let outcome = client.resolve(request).await?.outcome();
        use crate::proto::Outcome as Wire;
        let committed = match outcome {
            Wire::Committed => true,
            Wire::Aborted => false,
            other => {
                report.violations.push(format!("{txn} is still {other:?}"));
                continue;
            }
        };
        match (attempt.reported, committed) {
            (Reported::Committed, false) => report.violations.push(format!(
                "{txn}: the client was told COMMITTED, the outcome is ABORTED"
            )),
            (Reported::Aborted, true) => report.violations.push(format!(
                "{txn}: the client was told ABORTED, the outcome is COMMITTED"
            )),
            _ => {}
        }
        match attempt.reported {
            Reported::Unknown => report.indeterminate += 1,
            _ if committed => report.committed += 1,
            _ => report.aborted += 1,
        }
        if committed {
            expected[attempt.from] -= attempt.amount;
            expected[attempt.to] += attempt.amount;
        }
    }
    let found = balances(deployment, ledger).await?;
    for (i, ((balance, held), expected)) in found.iter().zip(&expected).enumerate() {
        let (bank, account) = &ledger.accounts[i];
        if balance != expected || *held != 0 || *balance < 0 {
            report.violations.push(format!(
                "{account}@bank-{bank}: balance {balance} (held {held}), expected {expected} \
                 from the committed transfers"
            ));
        }
    }
    let total: i64 = found.iter().map(|(balance, _)| balance).sum();
    let opened = ledger.opening * ledger.accounts.len() as i64;
    if total != opened {
        report.violations.push(format!(
            "money not conserved: {total} in the banks, {opened} opened"
        ));
    }
    Ok(report)
}
