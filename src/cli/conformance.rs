//! `verdict conformance`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use verdict::conformance::{self, Options, Restart};

use super::duration;

#[derive(Args)]
pub struct ConformanceArgs {
    /// The participant's URL: its verdict.v1.Participant endpoint.
    #[arg(long)]
    participant: String,
    /// Where the kit serves as the coordinator. Start the participant with http://LISTEN as
    /// its coordinator (the default is the coordinator's usual address: stop yours first).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// A shell command that stages work the participant can commit (so that it votes YES),
    /// run once per transaction; "{txn_id}" is replaced by the transaction's id and
    /// "{coordinator}" by the kit's URL. E.g. for a Verdict bank: 'verdict bank apply --bank
    /// URL --txn {txn_id} --account kit --delta 1'. Omit it for a participant that votes YES
    /// without staged work.
    #[arg(long)]
    stage_cmd: Option<String>,
    /// A shell command that restarts the participant (SIGKILL and start is the harder test).
    /// Without it the kit asks on the terminal, or skips that rule when there is none.
    #[arg(long)]
    restart_cmd: Option<String>,
    /// How long to wait for the participant to come back after the restart, and to ask Resolve.
    #[arg(long, value_parser = duration, default_value = "60s")]
    patience: Duration,
    /// Print one JSON object instead of the lines.
    #[arg(long)]
    json: bool,
}

/// Checks every rule; exits non-zero when any fails.
pub async fn run(args: ConformanceArgs) -> anyhow::Result<()> {
    let restart = match args.restart_cmd {
        Some(command) => Restart::Command(command),
        None if std::io::stdin().is_terminal() => Restart::AskOnTerminal,
        None => Restart::Unavailable,
    };
    let options = Options {
        participant: args.participant,
        listen: args.listen,
        stage_cmd: args.stage_cmd,
        restart,
        patience: args.patience,
    };
    let report = conformance::run(&options).await?;
    match args.json {
        true => println!("{}", report.to_json()),
        false => println!("{report}"),
    }
    anyhow::ensure!(
        report.failed() == 0,
        "{} of the participant contract's rules failed",
        report.failed()
    );
    Ok(())
}
