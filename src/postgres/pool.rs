//! Connections to PostgreSQL: a pool, checked at start to be reachable and able to prepare
//! transactions, so a misconfiguration is a clear error before anything is served. Each new
//! connection is set up first (the tables it needs, its prepared statements).

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use deadpool_postgres::{
    HookError, Manager, ManagerConfig, Object, Pool, PoolError, QueueMode, RecyclingMethod, Runtime,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;

use super::resource::describe;

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// A libpq connection string (`host=… user=… dbname=…`) or URL (`postgres://…`).
    pub dsn: String,
    /// Connections kept open at most.
    pub pool_size: usize,
    /// How long a statement waits for a row lock before failing (so the transaction votes NO)
    /// rather than waiting on a transaction prepared elsewhere for as long as that takes.
    pub lock_timeout: Duration,
}

/// How long getting a connection may take before the request fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a pool on `options.dsn`, whose connections each run `setup` (SQL) when made, and
/// checks that the server is reachable and has `max_prepared_transactions` above zero.
pub async fn connect(options: &PgOptions, setup: &'static str) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = options.dsn.parse().map_err(|e| {
        anyhow!(
            "the PostgreSQL DSN is not valid ({e}); give it as \"host=HOST port=PORT user=USER \
             dbname=DB\" or postgres://USER@HOST:PORT/DB"
        )
    })?;
    if config.get_ssl_mode() == SslMode::Require {
        bail!(
            "the PostgreSQL DSN asks for sslmode=require, but this participant does not speak TLS \
             to PostgreSQL yet: connect with sslmode=disable or prefer (on a trusted network, or \
             through a TLS-terminating proxy such as pgbouncer)"
        );
    }
    // Statements carry their values as literals (see `resource::literal`), which needs
    // standard_conforming_strings.
    let options_flag = format!(
        "{} -c lock_timeout={} -c standard_conforming_strings=on",
        config.get_options().unwrap_or_default(),
        options.lock_timeout.as_millis()
    );
    config.options(options_flag.trim());
    config.connect_timeout(CONNECT_TIMEOUT);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(options.pool_size)
        // The connection used last: its backend's caches are warm, and at low load the same
        // few backends do all the work instead of every one in turn.
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .post_create(deadpool_postgres::Hook::async_fn(move |db, _| {
            Box::pin(async move { db.batch_execute(setup).await.map_err(HookError::Backend) })
        }))
        .build()
        .context("cannot build the PostgreSQL connection pool")?;
    check_prepared_transactions(&pool).await?;
    Ok(pool)
}

async fn check_prepared_transactions(pool: &Pool) -> anyhow::Result<()> {
    let db = get(pool).await.map_err(|e| {
        anyhow!("cannot connect to PostgreSQL: {e}; check --dsn and that the server is up")
    })?;
    let row = db
        .query_one("SHOW max_prepared_transactions", &[])
        .await
        .map_err(|e| anyhow!("cannot read max_prepared_transactions: {}", describe(&e)))?;
    let limit: i64 = row.get::<_, String>(0).parse().unwrap_or(0);
    if limit == 0 {
        bail!(
            "PostgreSQL has max_prepared_transactions = 0, so it cannot take part in two-phase \
             commit: set max_prepared_transactions in postgresql.conf (at least the number of \
             transactions this participant may have in flight, e.g. 100) and restart PostgreSQL"
        );
    }
    Ok(())
}

/// A connection from the pool, or what kept it from being made, in PostgreSQL's words.
pub async fn get(pool: &Pool) -> Result<Object, String> {
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => describe(&e),
        PoolError::PostCreateHook(HookError::Backend(e)) => {
            format!("cannot set up a new connection: {}", describe(&e))
        }
        other => other.to_string(),
    })
}
