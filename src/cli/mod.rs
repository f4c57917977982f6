//! The `verdict` subcommands' arguments and what each runs.

pub mod bank;
pub mod bench;
pub mod cluster;
pub mod conformance;
pub mod demo;
pub mod health;
pub mod nemesis;
pub mod participant;
pub mod serve;
pub mod txn;

use std::time::Duration;

/// The `--coordinator` flag of the commands that talk to a running coordinator.
#[derive(clap::Args)]
pub struct Coordinator {
    /// The coordinator's URL, or every node of a cluster, comma-separated.
    #[arg(
        long = "coordinator",
        env = "VERDICT_COORDINATOR",
        default_value = "http://127.0.0.1:7400"
    )]
    pub urls: String,
}

impl Coordinator {
    pub fn client(&self, timeout: std::time::Duration) -> anyhow::Result<verdict::client::Client> {
        Ok(verdict::client::Client::new(&self.urls, timeout)?)
    }
}

/// A failed call, said plainly: what the server answered, or that it could not be reached.
pub fn plainly(error: anyhow::Error) -> anyhow::Error {
    let status = match error.downcast::<tonic::Status>() {
        Ok(status) => status,
        Err(other) => return other,
    };
    match status.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "the server cannot be reached ({}); is it running at that address?",
            status.message()
        ),
        code => anyhow::anyhow!("{code:?}: {}", status.message()),
    }
}

/// A duration flag's value: "500ms", "30s", "1h 30m", or a bare number of seconds ("8", "0.5").
pub fn duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?} is not a duration: give seconds, not negative"));
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}): give e.g. 8 (seconds), 8s, 500ms or 1m")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_a_bare_number_of_seconds() {
        assert_eq!(duration("8"), Ok(Duration::from_secs(8)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(duration("-1").unwrap_err().contains("not negative"));
        assert!(duration("soon")
            .unwrap_err()
            .contains("give e.g. 8 (seconds)"));
    }
}
