//! The wire's argument rules shared by every server of the contract — transaction ids and
//! URLs — each failing with a message that says what is wrong and how to fix it.

use crate::TxnId;

/// The longest URL accepted anywhere on the wire.
pub const MAX_ENDPOINT_BYTES: usize = 512;

/// The most decisions one `Participant.Decide` may carry.
pub const MAX_DECISIONS: usize = 1024;

/// An argument that breaks a rule: answered as `INVALID_ARGUMENT` with this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for tonic::Status {
    fn from(invalid: Invalid) -> Self {
        tonic::Status::invalid_argument(invalid.0)
    }
}

pub fn txn_id(text: &str) -> Result<TxnId, Invalid> {
    if text.is_empty() {
        return Err(Invalid(
            "txn_id is empty: pass the id returned by Begin".into(),
        ));
    }
    text.parse()
        .map_err(|e: crate::id::MalformedId| Invalid(e.to_string()))
}

/// `text`, named `what` in errors, must be an absolute http(s) URL with a host and no path.
pub fn url(what: &str, text: &str) -> Result<(), Invalid> {
    let bad = |why: &str| {
        Invalid(format!(
            "{what} {:?} {why}; expected a URL such as \"http://payments:7500\"",
            text.chars().take(80).collect::<String>()
        ))
    };
    if text.len() > MAX_ENDPOINT_BYTES {
        return Err(bad(&format!("is longer than {MAX_ENDPOINT_BYTES} bytes")));
    }
    let uri: tonic::codegen::http::Uri = text.parse().map_err(|_| bad("is not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("must start with http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("must not have a path or query"));
    }
    Ok(())
}

/// `text`, named `what` in errors, is one coordinator URL or a cluster's nodes comma-separated.
pub fn urls(what: &str, text: &str) -> Result<(), Invalid> {
    text.split(',')
        .try_for_each(|url| self::url(what, url.trim()))
}

/// A `Decide` carries 1..=[`MAX_DECISIONS`] decisions, no two for one transaction (each
/// decision's id is checked on its own, failing only that decision).
pub fn decisions(decisions: &[crate::proto::Decision]) -> Result<(), Invalid> {
    if decisions.is_empty() || decisions.len() > MAX_DECISIONS {
        return Err(Invalid(format!(
            "Decide carries {} decisions: send 1 to {MAX_DECISIONS}",
            decisions.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(decisions.len());
    match decisions.iter().find(|d| !seen.insert(d.txn_id.as_str())) {
        Some(twice) => Err(Invalid(format!(
            "Decide carries two decisions for transaction {:?}: send one",
            twice.txn_id
        ))),
        None => Ok(()),
    }
}
