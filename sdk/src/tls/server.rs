//! A server's TLS: its certificate (and for mutual TLS, its clients' CA), kept current with
//! its files, and the connections it accepts, each after its handshake.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::pem::Pem;
use super::reload::Reloading;
use super::{given, Protocol, ServerTlsArgs, TlsError, HANDSHAKE_TIMEOUT};

/// A server's TLS, kept current with its files.
#[derive(Debug)]
pub struct ServerTls {
    configs: Arc<Reloading<Configs>>,
}

impl ServerTlsArgs {
    /// The server's TLS, loaded and checked; `None` without `--tls-cert`.
    pub fn load(&self) -> Result<Option<Arc<ServerTls>>, TlsError> {
        if self.tls_cert.is_none() {
            return Ok(None);
        }
        let args = self.clone();
        let files = given(self.files()).map(|(_, file)| file.clone()).collect();
        let configs = Reloading::new("TLS certificate", files, move || {
            args.server_config().map(Configs::of)
        })?;
        Ok(Some(Arc::new(ServerTls {
            configs: Arc::new(configs),
        })))
    }

    fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (Pem::new("--tls-cert", cert), Pem::new("--tls-key", key)),
            (Some(cert), None) => {
                return Err(Pem::new("--tls-cert", cert).problem("needs --tls-key"))
            }
            _ => unreachable!("loaded only with --tls-cert"),
        };
        let (chain, private_key) = cert.pair(key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &self.tls_client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let ca = Pem::new("--tls-client-ca", ca);
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()?), provider)
                        .build()
                        .map_err(|e| ca.problem(e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        builder
            .with_single_cert(chain, private_key)
            .map_err(|e| key.problem(format!("cannot serve with it: {e}")))
    }
}

/// One certificate's configuration per protocol.
#[derive(Clone, Debug)]
struct Configs {
    grpc: Arc<ServerConfig>,
    http1: Arc<ServerConfig>,
}

impl Configs {
    fn of(config: ServerConfig) -> Self {
        let speaking = |protocol: &[u8]| {
            let mut config = config.clone();
            config.alpn_protocols = vec![protocol.to_vec()];
            Arc::new(config)
        };
        Configs {
            grpc: speaking(b"h2"),
            http1: speaking(b"http/1.1"),
        }
    }
}

impl ServerTls {
    /// Reloads the files if they changed since the last load (or, with `always`, anyway).
    pub fn reload(&self, always: bool) {
        self.configs.reload(always)
    }

    /// Reloads on SIGHUP, and whenever the files change, while `self` lives (one task, however
    /// many ports share it).
    pub fn keep_current(&self) {
        self.configs.keep_current()
    }

    fn acceptor(&self, protocol: Protocol) -> TlsAcceptor {
        let configs = self.configs.current();
        TlsAcceptor::from(match protocol {
            Protocol::Grpc => configs.grpc,
            Protocol::Http1 => configs.http1,
        })
    }

    /// The connections accepted on `listener`, each after its handshake with the certificate
    /// current when it connected (a reload leaves open connections as they are). A failed
    /// handshake — a plaintext client, an untrusted certificate — is logged and dropped.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
        protocol: Protocol,
    ) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            continue;
                        }
                    },
                    _ = sender.closed() => return,
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = self.acceptor(protocol);
                let sender = sender.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(Ok(stream)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::warn!(%peer, %error, "TLS handshake refused")
                        }
                        Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }
}
