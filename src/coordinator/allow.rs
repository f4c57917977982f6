//! Which participant endpoints the coordinator will call (`--allow-participants`): without a
//! list, any; with one, only endpoints whose host and port match an entry — so a coordinator
//! cannot be used to make requests to arbitrary hosts.

use std::fmt;
use std::str::FromStr;

use tonic::codegen::http::Uri;

/// One allowed `HOST[:PORT]`: HOST exact, or `*.DOMAIN` for any name under DOMAIN; PORT
/// exact, `*`, or left out for any.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pattern {
    host: String,
    port: Option<u16>,
}

impl Pattern {
    fn allows(&self, host: &str, port: u16) -> bool {
        let host_matches = match self.host.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => self.host.eq_ignore_ascii_case(host),
        };
        host_matches && self.port.is_none_or(|p| p == port)
    }
}

/// The allow-list; empty allows every endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedParticipants {
    patterns: Vec<Pattern>,
}

impl AllowedParticipants {
    /// Whether the coordinator may call `endpoint`; `Err` says why not.
    pub fn check(&self, endpoint: &str) -> Result<(), String> {
        if self.patterns.is_empty() {
            return Ok(());
        }
        let uri: Uri = endpoint
            .parse()
            .map_err(|_| format!("participant endpoint {endpoint:?} is not a URL"))?;
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        let default_port = match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        };
        let port = uri.port_u16().unwrap_or(default_port);
        match self.patterns.iter().any(|p| p.allows(&host, port)) {
            true => Ok(()),
            false => Err(format!(
                "participant endpoint {endpoint} is not allowed here (--allow-participants {self}): \
                 ask the operator to allow it"
            )),
        }
    }
}

impl FromStr for AllowedParticipants {
    type Err = String;

    /// `HOST[:PORT],…` — e.g. `payments.internal:7500,*.svc.cluster.local,10.0.0.7:*`.
    fn from_str(text: &str) -> Result<Self, String> {
        let patterns = text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(pattern)
            .collect::<Result<Vec<_>, _>>()?;
        if patterns.is_empty() {
            return Err("give at least one HOST[:PORT] (e.g. payments.internal:7500)".into());
        }
        Ok(AllowedParticipants { patterns })
    }
}

fn pattern(entry: &str) -> Result<Pattern, String> {
    let bad = |why: &str| format!("{entry:?} is not HOST[:PORT] ({why})");
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, "*")) => (host, None),
        Some((host, port)) => (host, Some(port.parse().map_err(|_| bad("a bad port"))?)),
        None => (entry, None),
    };
    let name = host.strip_prefix("*.").unwrap_or(host);
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if name.is_empty() || !name.chars().all(valid) {
        return Err(bad(
            "a host is letters, digits, '-' and '.', optionally after '*.'",
        ));
    }
    Ok(Pattern {
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl fmt::Display for AllowedParticipants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .patterns
            .iter()
            .map(|p| match p.port {
                Some(port) => format!("{}:{port}", p.host),
                None => p.host.clone(),
            })
            .collect();
        write!(f, "{}", entries.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &str) -> AllowedParticipants {
        list.parse().unwrap()
    }

    #[test]
    fn no_list_allows_every_endpoint() {
        let any = AllowedParticipants::default();
        assert!(any.check("http://anything.example:1234").is_ok());
    }

    #[test]
    fn hosts_and_ports_must_match_an_entry() {
        let list = allowed("payments.internal:7500,*.svc.cluster.local,10.0.0.7:*");
        assert!(list.check("http://payments.internal:7500").is_ok());
        assert!(list.check("http://PAYMENTS.internal:7500").is_ok());
        assert!(list.check("http://payments.internal:7501").is_err());
        assert!(list
            .check("http://bank.default.svc.cluster.local:80")
            .is_ok());
        assert!(list.check("https://x.svc.cluster.local").is_ok());
        assert!(
            list.check("http://svc.cluster.local:80").is_err(),
            "the domain itself"
        );
        assert!(list.check("http://evilsvc.cluster.local:80").is_err());
        assert!(list.check("http://10.0.0.7:9").is_ok());
        assert!(list.check("http://10.0.0.8:9").is_err());
        let refused = list.check("http://169.254.169.254/latest").unwrap_err();
        assert!(
            refused.contains("--allow-participants payments.internal:7500"),
            "{refused}"
        );
    }

    #[test]
    fn a_bad_list_is_refused_with_what_to_give() {
        assert!(""
            .parse::<AllowedParticipants>()
            .unwrap_err()
            .contains("at least one"));
        let bad_port = "host:http".parse::<AllowedParticipants>().unwrap_err();
        assert!(bad_port.contains("a bad port"), "{bad_port}");
        assert!("http://host".parse::<AllowedParticipants>().is_err());
        assert!("ho st".parse::<AllowedParticipants>().is_err());
    }
}
