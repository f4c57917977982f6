//! TLS on Verdict's connections, with rustls: what a server presents — its certificate, and for
//! mutual TLS the CA its clients' certificates must chain to — and what a client trusts and
//! presents. Both are reloaded when their files change or on SIGHUP: connections made after
//! that use the new files, open ones stay as they are.
//!
//! Plaintext stays the default. A server given a certificate serves TLS only. A process's
//! client side is set once ([`ClientTlsArgs::install`]) and applies to every `https://` URL it
//! calls through [`endpoint`] and [`crate::net::channel`]; `http://` URLs stay plaintext.

mod client;
mod pem;
mod reload;
mod server;

use std::path::PathBuf;
use std::time::Duration;

pub use client::{connect, endpoint, is_tls};
pub use server::ServerTls;

/// How long either side may take over a handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file that cannot be used: which flag, which file, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {}: {problem}", path.display())]
pub struct TlsError {
    pub flag: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

/// A URL that cannot be called.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(String);

/// A server's TLS: `--tls-cert` and `--tls-key` turn it on, `--tls-client-ca` requires client
/// certificates (mutual TLS).
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ServerTlsArgs {
    /// Serve TLS only, presenting this certificate chain (PEM, leaf first). Reloaded when the
    /// file changes, or on SIGHUP.
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "VERDICT_TLS_CERT",
            value_name = "FILE",
            requires = "tls_key"
        )
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "VERDICT_TLS_KEY",
            value_name = "FILE",
            requires = "tls_cert"
        )
    )]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: accept only clients presenting a certificate signed by this CA (PEM).
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            env = "VERDICT_TLS_CLIENT_CA",
            value_name = "FILE",
            requires = "tls_cert"
        )
    )]
    pub tls_client_ca: Option<PathBuf>,
}

/// A side's files, each with the flag that names it.
type Files<'a> = [(&'static str, &'a Option<PathBuf>); 3];

/// The files given.
fn given(files: Files<'_>) -> impl Iterator<Item = (&'static str, &PathBuf)> {
    files
        .into_iter()
        .filter_map(|(flag, file)| Some((flag, file.as_ref()?)))
}

/// The files given, as command-line flags for a process this one starts.
fn flags(files: Files<'_>) -> Vec<String> {
    given(files)
        .flat_map(|(flag, file)| [flag.to_owned(), file.display().to_string()])
        .collect()
}

impl ServerTlsArgs {
    fn files(&self) -> Files<'_> {
        [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--tls-client-ca", &self.tls_client_ca),
        ]
    }

    /// These settings as command-line flags, for a process this one starts.
    pub fn flags(&self) -> Vec<String> {
        flags(self.files())
    }
}

impl ClientTlsArgs {
    fn files(&self) -> Files<'_> {
        [
            ("--tls-ca", &self.tls_ca),
            ("--tls-client-cert", &self.tls_client_cert),
            ("--tls-client-key", &self.tls_client_key),
        ]
    }

    /// These settings as command-line flags, for a process this one starts.
    pub fn flags(&self) -> Vec<String> {
        flags(self.files())
    }
}

/// A client's TLS: `--tls-ca` is whom it trusts for `https://` URLs; `--tls-client-cert` and
/// `--tls-client-key` are what it presents to a server that requires mutual TLS.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ClientTlsArgs {
    /// Trust servers whose certificate this CA (PEM) signed, for every https:// URL called.
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, env = "VERDICT_TLS_CA", value_name = "FILE")
    )]
    pub tls_ca: Option<PathBuf>,
    /// Present this certificate (PEM) to servers that require mutual TLS.
    #[cfg_attr(
        feature = "clap",
        arg(long, global = true, env = "VERDICT_TLS_CLIENT_CERT", value_name = "FILE", requires_all = ["tls_client_key", "tls_ca"])
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// The private key of --tls-client-cert (PEM).
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            global = true,
            env = "VERDICT_TLS_CLIENT_KEY",
            value_name = "FILE",
            requires = "tls_client_cert"
        )
    )]
    pub tls_client_key: Option<PathBuf>,
}

/// What a port speaks over TLS: its ALPN protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: HTTP/2.
    Grpc,
    /// HTTP/1.1: the metrics and console ports.
    Http1,
}

/// The names a certificate (DER) is known by: its subject's common name and its DNS subject
/// alternative names. Empty if it cannot be parsed.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let common = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned));
    let alternative = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .into_iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        });
    common.chain(alternative).collect()
}
