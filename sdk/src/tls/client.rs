//! A client's TLS: whom it trusts (`--tls-ca`) and, for mutual TLS, what it presents
//! (`--tls-client-cert`, `--tls-client-key`), kept current with its files; and the connections
//! to `https://` URLs made with it.
//!
//! tonic's own client TLS is fixed when a channel is made, and channels live as long as the
//! process. So an `https://` endpoint is marked with a scheme of ours instead, its requests
//! still naming the `https://` origin, and [`crate::net::channel`] makes its connections here,
//! each with the configuration current when it connects.

use std::io;
use std::sync::{Arc, OnceLock};

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, ClientConfig};
use tokio_rustls::TlsConnector;
use tonic::transport::{Endpoint, Uri};

use super::pem::Pem;
use super::reload::Reloading;
use super::{given, ClientTlsArgs, EndpointError, TlsError, HANDSHAKE_TIMEOUT};

/// The scheme that marks an endpoint whose connections this module makes.
const TLS_SCHEME: &str = "verdict-tls";

static CLIENT: OnceLock<Arc<Reloading<Arc<ClientConfig>>>> = OnceLock::new();

impl ClientTlsArgs {
    /// Checks the files and makes them this process's client TLS, for every `https://` URL it
    /// calls from now on; reloaded when they change or on SIGHUP (inside a tokio runtime).
    /// Without `--tls-ca`, changes nothing.
    pub fn install(&self) -> Result<(), TlsError> {
        if self.tls_ca.is_none() {
            return Ok(());
        }
        let args = self.clone();
        let files = given(self.files()).map(|(_, file)| file.clone()).collect();
        let reloading = Arc::new(Reloading::new(
            "TLS client certificate",
            files,
            move || args.client_config().map(Arc::new),
        )?);
        reloading.keep_current();
        let _ = CLIENT.set(reloading);
        Ok(())
    }

    fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let ca = self.tls_ca.as_ref().expect("installed only with --tls-ca");
        let roots = Pem::new("--tls-ca", ca).roots()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots);
        let mut config = match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                let key = Pem::new("--tls-client-key", key);
                let (chain, private_key) = Pem::new("--tls-client-cert", cert).pair(key)?;
                builder
                    .with_client_auth_cert(chain, private_key)
                    .map_err(|e| key.problem(format!("cannot present it: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// A channel's endpoint for `url`; for `https://`, one whose connections [`connect`] makes with
/// this process's client TLS.
pub fn endpoint(url: impl Into<String>) -> Result<Endpoint, EndpointError> {
    let url = url.into();
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| EndpointError(format!("{url:?} is not a valid URL: {e}")))?;
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    if CLIENT.get().is_none() {
        return Err(EndpointError(format!(
            "{url} is https: give --tls-ca (or VERDICT_TLS_CA) to say which CA to trust"
        )));
    }
    let origin = endpoint.uri().clone();
    let authority = origin
        .authority()
        .ok_or_else(|| EndpointError(format!("{url} names no host")))?;
    let port = authority.port_u16().unwrap_or(443);
    let marked = format!("{TLS_SCHEME}://{}:{port}", authority.host());
    let endpoint = Endpoint::from_shared(marked)
        .map_err(|e| EndpointError(format!("{url:?} is not a valid URL: {e}")))?;
    Ok(endpoint.origin(origin))
}

/// Whether `endpoint`'s connections are made by [`connect`].
pub fn is_tls(endpoint: &Endpoint) -> bool {
    endpoint.uri().scheme_str() == Some(TLS_SCHEME)
}

/// A TLS connection to the host of `uri` (an endpoint [`endpoint`] made), with the client
/// configuration current now.
pub async fn connect(uri: Uri) -> io::Result<TokioIo<TlsStream<TcpStream>>> {
    let config = CLIENT
        .get()
        .ok_or_else(|| io::Error::other("no client TLS: give --tls-ca"))?
        .current();
    let host = uri.host().unwrap_or_default();
    let port = uri.port_u16().unwrap_or(443);
    // An IPv6 address comes bracketed in a URI.
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let server = ServerName::try_from(name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
    let tcp = TcpStream::connect((name, port)).await?;
    tcp.set_nodelay(true)?;
    let handshake = TlsConnector::from(config).connect(server, tcp);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out"))??;
    Ok(TokioIo::new(stream))
}
