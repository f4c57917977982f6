//! `verdict nemesis`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use verdict::chaos::nemesis::NemesisConfig;

use super::duration;

#[derive(Args)]
pub struct NemesisArgs {
    /// How long to inject faults.
    #[arg(long, value_parser = duration, default_value = "3m")]
    duration: Duration,
    /// Seed of every random choice; random if not given (it is printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Bank participants.
    #[arg(long, default_value_t = 3)]
    banks: usize,
    /// Run the coordinator as a Raft cluster of this many nodes (faults then hit any node or
    /// bank; a partition freezes a process).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=7))]
    cluster: u64,
    /// Accounts per bank.
    #[arg(long, default_value_t = 4)]
    accounts: usize,
    /// Concurrent transfers.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Where the processes keep data and logs (kept after a failing run); default a temp dir.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub async fn run(args: NemesisArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let dir = args
        .dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("verdict-nemesis-{seed}")));
    let config = NemesisConfig {
        exe: std::env::current_exe()?,
        dir: dir.clone(),
        duration: args.duration,
        seed,
        banks: args.banks,
        coordinator_nodes: args.cluster as usize,
        accounts_per_bank: args.accounts,
        workers: args.workers,
        patience: Duration::from_secs(60),
    };
    println!(
        "nemesis: seed {seed}, {:?} of faults, logs in {}",
        args.duration,
        dir.display()
    );
    let summary = verdict::chaos::nemesis::run(&config).await?;
    for violation in &summary.report.violations {
        println!("VIOLATION: {violation}");
    }
    println!("{summary}");
    anyhow::ensure!(
        summary.report.violations.is_empty(),
        "{} violations; replay with --seed {seed}; logs in {}",
        summary.report.violations.len(),
        dir.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
