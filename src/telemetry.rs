//! Logging: human-readable by default, JSON lines for machines; `RUST_LOG` overrides the level.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // openraft narrates every vote and heartbeat at info; its warnings still show. A filter
        // naming openraft itself (e.g. "info,openraft=info") overrides this.
        EnvFilter::new(format!("openraft=warn,{default_level}"))
    });
    // Colours only for a person at a terminal: not in files, pipes or container logs.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
