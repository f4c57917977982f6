//! `verdict health`: asks a server's gRPC health service (`grpc.health.v1.Health`), so a
//! container's health check needs no other tool.

use std::time::Duration;

use clap::Args;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use verdict::coordinator::validate;
use verdict::{net, tls};

use super::{duration, plainly};

#[derive(Args)]
pub struct HealthArgs {
    /// The server to ask: a coordinator node or a participant.
    #[arg(env = "VERDICT_HEALTH_URL", default_value = "http://127.0.0.1:7400")]
    url: String,
    /// The service to ask about. "" (the default) is the process itself: alive and serving
    /// (liveness). "verdict.v1.Coordinator" is ready: a single node has recovered; a cluster
    /// node runs transactions or names the leader that does (not while there is none, while it
    /// takes over, or while it leads cut off from the majority). "verdict.v1.Participant": a
    /// participant has resolved what it held prepared at start.
    #[arg(long, default_value = "")]
    service: String,
    /// How long the answer may take.
    #[arg(long, value_parser = duration, default_value = "3s")]
    timeout: Duration,
}

/// Prints the status; an error (exit status 1) unless it is SERVING.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    validate::url("the server URL", &args.url)?;
    let channel = net::channel(
        tls::endpoint(&args.url)?
            .connect_timeout(args.timeout)
            .timeout(args.timeout),
    );
    let request = HealthCheckRequest {
        service: args.service.clone(),
    };
    let what = match args.service.as_str() {
        "" => format!("{} itself", args.url),
        service => format!("{service} at {}", args.url),
    };
    let status = HealthClient::new(channel)
        .check(request)
        .await
        .map_err(|status| plainly(status.into()).context(what.clone()))?
        .into_inner()
        .status();
    println!("{}", status.as_str_name());
    anyhow::ensure!(status == ServingStatus::Serving, "{what} is not serving");
    Ok(())
}
