//! The bearer token a process presents to coordinators that authenticate their callers
//! (`verdict serve --auth`): read once from `--token-file`, sent as `authorization: Bearer …`
//! with every call to a coordinator. A caller may instead be known by its mutual-TLS
//! certificate (see [`tls`](crate::tls)), which needs nothing here.

use std::path::PathBuf;
use std::sync::OnceLock;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// The metadata key of the bearer token.
pub const AUTHORIZATION: &str = "authorization";

/// `--token-file`: where this process's bearer token is.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct TokenArgs {
    /// Present the bearer token in this file (its first line) to coordinators that
    /// authenticate callers (serve --auth).
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, env = "VERDICT_TOKEN_FILE", value_name = "FILE")
    )]
    pub token_file: Option<PathBuf>,
}

static TOKEN: OnceLock<AsciiMetadataValue> = OnceLock::new();

/// A token file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--token-file {path}: {problem}")]
pub struct TokenError {
    path: String,
    problem: String,
}

impl TokenArgs {
    /// This setting as command-line flags, for a process this one starts.
    pub fn flags(&self) -> Vec<String> {
        match &self.token_file {
            Some(path) => vec!["--token-file".into(), path.display().to_string()],
            None => Vec::new(),
        }
    }

    /// Reads the token and makes it this process's, for every call to a coordinator.
    pub fn install(&self) -> Result<(), TokenError> {
        let Some(path) = &self.token_file else {
            return Ok(());
        };
        let problem = |problem: String| TokenError {
            path: path.display().to_string(),
            problem,
        };
        let contents =
            std::fs::read_to_string(path).map_err(|e| problem(format!("cannot be read: {e}")))?;
        let token = contents.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(problem("is empty: put the token on its first line".into()));
        }
        let value =
            bearer(token).map_err(|_| problem("holds characters a token cannot have".into()))?;
        let _ = TOKEN.set(value);
        Ok(())
    }
}

/// `token` as an `authorization` metadata value.
pub fn bearer(token: &str) -> Result<AsciiMetadataValue, tonic::Status> {
    format!("Bearer {token}").parse().map_err(|_| {
        tonic::Status::invalid_argument("the token holds characters a token cannot have")
    })
}

/// Adds this process's token, if it has one, to a call's metadata.
pub fn present(metadata: &mut MetadataMap) {
    if let Some(token) = TOKEN.get() {
        metadata.insert(AUTHORIZATION, token.clone());
    }
}

/// A call carrying `message` and this process's token, if it has one.
pub fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    present(request.metadata_mut());
    request
}
