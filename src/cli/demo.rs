//! `verdict demo`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use verdict::demo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Transfers between two banks.
    Bank,
    /// One food order across four services: order, payment, restaurant, delivery.
    FoodOrder,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Which story to run.
    #[arg(long, value_enum, default_value = "bank")]
    scenario: Scenario,
    /// bank: a running coordinator's URL, or every node of a cluster, comma-separated.
    #[arg(long, requires = "banks")]
    coordinator: Option<String>,
    /// bank: a running bank's URL: give two (alice's, then bob's), with --coordinator.
    #[arg(long = "bank", requires = "coordinator")]
    banks: Vec<String>,
    /// food-order: a PostgreSQL server for the payment service ("host=HOST port=PORT user=USER
    /// dbname=DB" or postgres://…; the demo creates a database of its own there). Without it,
    /// payment runs as the embedded KV bank.
    #[arg(long, env = "VERDICT_PG_DSN")]
    pg_dsn: Option<String>,
    /// food-order: the Python for the restaurant (with examples/python-participant's
    /// requirements); default the venv examples/python-participant/setup.sh makes. Without one,
    /// the restaurant runs as the embedded KV bank.
    #[arg(long, env = "VERDICT_PYTHON")]
    python: Option<PathBuf>,
    /// food-order: keep every service's data, logs and PostgreSQL database here for inspection
    /// (default: a temporary directory, removed when the demo succeeds).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DemoArgs {
    fn running(self) -> anyhow::Result<Option<demo::Running>> {
        let Some(coordinator) = self.coordinator else {
            return Ok(None);
        };
        let banks: [String; 2] = self.banks.try_into().map_err(|banks: Vec<String>| {
            anyhow::anyhow!(
                "give two --bank URLs (alice's and bob's), not {}",
                banks.len()
            )
        })?;
        Ok(Some(demo::Running { coordinator, banks }))
    }
}

/// Runs the demo on processes of its own, or through the deployment named.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Bank => demo::transfers::run(args.running()?).await,
        Scenario::FoodOrder => {
            anyhow::ensure!(
                args.coordinator.is_none(),
                "--coordinator and --bank run the bank scenario through a deployment; the \
                 food-order scenario starts processes of its own: leave them out"
            );
            let options = demo::FoodOrderOptions {
                pg_dsn: args.pg_dsn,
                python: args.python,
                data_dir: args.data_dir,
            };
            demo::food_order::run(options).await
        }
    }
}
