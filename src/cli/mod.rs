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

use std::time::Duration;

pub fn duration(text: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}
