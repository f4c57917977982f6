//! The reference for the bank workload on PostgreSQL banks: the same transfers driven by the
//! client itself straight through PostgreSQL's two-phase commit across the two databases — no
//! coordinator, no decision log, no participant processes — measured in the same run, in
//! slices between the bench's own.
//!
//! Each transfer: on both databases at once, `BEGIN`, `UPDATE` the account, `PREPARE
//! TRANSACTION`; then `COMMIT PREPARED` on both at once. It uses the accounts the bank workload
//! opened in the banks' `verdict_accounts` tables.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::Rng;
use tokio_postgres::{Client, NoTls, Statement};

use super::baseline::{histogram, micros};
use super::report::{Percentiles, PgDirect};
use super::BANK_ACCOUNTS;
use crate::postgres::describe;

/// Adds `$2` to account `$1`'s balance.
const UPDATE: &str = "UPDATE verdict_accounts SET balance = balance + $2 WHERE id = $1";

struct Database {
    client: Client,
    update: Statement,
}

impl Database {
    async fn connect(dsn: &str) -> anyhow::Result<Self> {
        let mut config: tokio_postgres::Config = dsn
            .parse()
            .with_context(|| format!("{dsn:?} is not a PostgreSQL DSN"))?;
        // Two transfers that each prepared one side and wait for the other's row on the other
        // database wait for each other forever: PostgreSQL sees no deadlock across databases.
        // As in the PostgreSQL bank (its default --lock-timeout), a wait fails instead.
        let options = config.get_options().unwrap_or_default().to_owned();
        config.options(format!("{options} -c lock_timeout=2000").trim());
        let (client, connection) = config
            .connect(NoTls)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {dsn:?}"))?;
        tokio::spawn(connection);
        let update = client.prepare(UPDATE).await?;
        Ok(Database { client, update })
    }

    async fn prepare(&self, gid: &str, account: &str, delta: i64) -> Result<(), String> {
        let run = async {
            self.client.batch_execute("BEGIN").await?;
            self.client
                .execute(&self.update, &[&account, &delta])
                .await?;
            self.client
                .batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
                .await
        };
        run.await.map_err(|e| describe(&e))
    }

    async fn finish(&self, verb: &str, gid: &str) -> Result<(), String> {
        let sql = format!("{verb} PREPARED '{gid}'");
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|e| describe(&e))
    }

    /// Puts the connection back in a usable state after a failed transfer.
    async fn clean_up(&self, gid: &str) {
        let _ = self.client.batch_execute("ROLLBACK").await;
        let _ = self.finish("ROLLBACK", gid).await;
    }
}

/// One transfer between random accounts of the two databases; its latency if it committed.
async fn transfer(from: &Database, to: &Database) -> Result<Duration, String> {
    let (payer, payee, amount) = {
        let mut rng = rand::rng();
        let account =
            |rng: &mut rand::rngs::ThreadRng| format!("a{}", rng.random_range(0..BANK_ACCOUNTS));
        (
            account(&mut rng),
            account(&mut rng),
            rng.random_range(1..100),
        )
    };
    // Global ids are unique per server, not per database.
    let id = uuid::Uuid::now_v7();
    let gids = [0, 1].map(|side| format!("verdict-bench-direct:{id}:{side}"));
    let started = Instant::now();
    let prepared = tokio::join!(
        from.prepare(&gids[0], &payer, -amount),
        to.prepare(&gids[1], &payee, amount)
    );
    if let (Ok(()), Ok(())) = prepared {
        let committed = tokio::join!(
            from.finish("COMMIT", &gids[0]),
            to.finish("COMMIT", &gids[1])
        );
        committed.0.and(committed.1)?;
        return Ok(started.elapsed());
    }
    tokio::join!(from.clean_up(&gids[0]), to.clean_up(&gids[1]));
    prepared.0.and(prepared.1).map(|()| started.elapsed())
}

/// The direct transfers: one pair of connections per concurrent client, made once and run in
/// slices, which the bench interleaves with its own so both see the machine in the same state.
pub struct Direct {
    clients: Vec<Arc<(Database, Database)>>,
    latencies: Histogram<u64>,
    failures: Vec<String>,
    elapsed: Duration,
}

impl Direct {
    /// Connects `concurrency` clients to the databases `dsns` (two).
    pub async fn connect(dsns: &[String], concurrency: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            dsns.len() == 2,
            "the PostgreSQL reference needs the two banks' databases"
        );
        let mut clients = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let pair = (
                Database::connect(&dsns[0]).await?,
                Database::connect(&dsns[1]).await?,
            );
            clients.push(Arc::new(pair));
        }
        Ok(Direct {
            clients,
            latencies: histogram(),
            failures: Vec::new(),
            elapsed: Duration::ZERO,
        })
    }

    /// Runs transfers on every client for `duration` (each finishing the one it is in).
    pub async fn run(&mut self, duration: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut workers = tokio::task::JoinSet::new();
        for client in &self.clients {
            let client = client.clone();
            workers.spawn(async move {
                let (from, to) = &*client;
                let mut latencies = histogram();
                let mut failures = Vec::new();
                while started.elapsed() < duration {
                    match transfer(from, to).await {
                        Ok(latency) => latencies.record(micros(latency)).expect("in bounds"),
                        Err(error) => failures.push(error),
                    }
                }
                (latencies, failures)
            });
        }
        for (latencies, failures) in workers.join_all().await {
            self.latencies.add(latencies)?;
            self.failures.extend(failures);
        }
        self.elapsed += started.elapsed();
        Ok(())
    }

    /// What every slice run measured together.
    pub fn report(self) -> anyhow::Result<PgDirect> {
        let failed = self.failures.len() as u64;
        if let Some(error) = self.failures.first() {
            tracing::warn!(failed, first = %error, "direct PostgreSQL transfers failed");
        }
        anyhow::ensure!(
            !self.latencies.is_empty(),
            "no direct PostgreSQL transfer committed; the first failure: {}",
            self.failures.first().map_or("none", String::as_str)
        );
        Ok(PgDirect {
            committed: self.latencies.len(),
            failed,
            throughput: self.latencies.len() as f64 / self.elapsed.as_secs_f64(),
            latency_ms: Percentiles::of(&self.latencies),
        })
    }
}
