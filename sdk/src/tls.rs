//! TLS on Verdict's connections, with rustls: what a server presents — its certificate, reloaded
//! when its files change or on SIGHUP, and for mutual TLS the CA its clients' certificates must
//! chain to — and what a client trusts and presents.
//!
//! Plaintext stays the default. A server given a certificate serves TLS only. A process's
//! client side is set once ([`ClientTlsArgs::install`]) and applies to every `https://` URL it
//! calls through [`endpoint`]; `http://` URLs stay plaintext.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

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

/// `(flag, file)` pairs as command-line arguments, for the ones given.
fn flags<const N: usize>(pairs: [(&str, &Option<PathBuf>); N]) -> Vec<String> {
    let given = pairs
        .into_iter()
        .filter_map(|(flag, file)| Some((flag, file.as_ref()?)));
    given
        .flat_map(|(flag, file)| [flag.to_owned(), file.display().to_string()])
        .collect()
}

impl ServerTlsArgs {
    /// These settings as command-line flags, for a process this one starts.
    pub fn flags(&self) -> Vec<String> {
        flags([
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--tls-client-ca", &self.tls_client_ca),
        ])
    }
}

impl ClientTlsArgs {
    /// These settings as command-line flags, for a process this one starts.
    pub fn flags(&self) -> Vec<String> {
        flags([
            ("--tls-ca", &self.tls_ca),
            ("--tls-client-cert", &self.tls_client_cert),
            ("--tls-client-key", &self.tls_client_key),
        ])
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

static CLIENT: OnceLock<ClientTlsConfig> = OnceLock::new();

impl ClientTlsArgs {
    /// Checks the files and makes them this process's client TLS, for every `https://` URL it
    /// calls from now on. Without `--tls-ca`, changes nothing.
    pub fn install(&self) -> Result<(), TlsError> {
        let Some(ca) = &self.tls_ca else {
            return Ok(());
        };
        read_certs("--tls-ca", ca)?;
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            let chain = read_certs("--tls-client-cert", cert)?;
            let private_key = read_key("--tls-client-key", key)?;
            check_pair(
                chain,
                private_key,
                "--tls-client-cert",
                cert,
                "--tls-client-key",
                key,
            )?;
            let identity = Identity::from_pem(
                read("--tls-client-cert", cert)?,
                read("--tls-client-key", key)?,
            );
            config = config.identity(identity);
        }
        let _ = CLIENT.set(config);
        Ok(())
    }
}

/// A channel's endpoint for `url`, with this process's client TLS for `https://`.
pub fn endpoint(url: impl Into<String>) -> Result<Endpoint, EndpointError> {
    let url = url.into();
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| EndpointError(format!("{url:?} is not a valid URL: {e}")))?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let Some(config) = CLIENT.get() else {
        return Err(EndpointError(format!(
            "{url} is https: give --tls-ca (or VERDICT_TLS_CA) to say which CA to trust"
        )));
    };
    endpoint
        .tls_config(config.clone())
        .map_err(|e| EndpointError(format!("{url}: {e}")))
}

/// A server's TLS, kept current with its files.
#[derive(Debug)]
pub struct ServerTls {
    args: ServerTlsArgs,
    /// The configuration for each protocol, current.
    configs: RwLock<Configs>,
    /// The files' modification times at the last load.
    stamps: Mutex<Vec<Option<SystemTime>>>,
    /// Whether a task keeps it current already.
    watched: AtomicBool,
}

impl ServerTlsArgs {
    /// The server's TLS, loaded and checked; `None` without `--tls-cert`.
    pub fn load(&self) -> Result<Option<Arc<ServerTls>>, TlsError> {
        if self.tls_cert.is_none() {
            return Ok(None);
        }
        let tls = ServerTls {
            args: self.clone(),
            configs: RwLock::new(Configs::of(self.server_config()?)),
            stamps: Mutex::new(self.stamps()),
            watched: AtomicBool::new(false),
        };
        Ok(Some(Arc::new(tls)))
    }

    fn files(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.tls_cert, &self.tls_key, &self.tls_client_ca]
            .into_iter()
            .flatten()
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.files()
            .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .collect()
    }

    fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(cert), None) => return Err(problem("--tls-cert", cert, "needs --tls-key")),
            _ => unreachable!("loaded only with --tls-cert"),
        };
        let chain = read_certs("--tls-cert", cert)?;
        let private_key = read_key("--tls-key", key)?;
        let pair = (chain.clone(), private_key.clone_key());
        check_pair(pair.0, pair.1, "--tls-cert", cert, "--tls-key", key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let builder = match &self.tls_client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = roots("--tls-client-ca", ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| problem("--tls-client-ca", ca, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, private_key)
            .map_err(|e| problem("--tls-key", key, format!("cannot serve with it: {e}")))?;
        Ok(config)
    }
}

/// What a port speaks over TLS: its ALPN protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: HTTP/2.
    Grpc,
    /// HTTP/1.1: the metrics and console ports.
    Http1,
}

/// One certificate's configuration per protocol.
#[derive(Debug)]
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

/// How often the certificate files are looked at for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ServerTls {
    /// Reloads the files if they changed since the last load (or, with `always`, anyway). A
    /// file that is bad now is logged and the certificate in use stays.
    pub fn reload(&self, always: bool) {
        let stamps = self.args.stamps();
        let mut last = self.stamps.lock().expect("lock");
        if !always && *last == stamps {
            return;
        }
        *last = stamps;
        match self.args.server_config() {
            Ok(config) => {
                *self.configs.write().expect("lock") = Configs::of(config);
                tracing::info!("TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded; the one in use stays")
            }
        }
    }

    /// Reloads on SIGHUP, and whenever the files change, while `self` lives (one task, however
    /// many ports share it).
    pub fn keep_current(self: &Arc<Self>) {
        if self.watched.swap(true, Ordering::Relaxed) {
            return;
        }
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .expect("SIGHUP handler");
            loop {
                #[cfg(unix)]
                let always = tokio::select! {
                    _ = hangup.recv() => true,
                    _ = tokio::time::sleep(RELOAD_EVERY) => false,
                };
                #[cfg(not(unix))]
                let always = {
                    tokio::time::sleep(RELOAD_EVERY).await;
                    false
                };
                match tls.upgrade() {
                    Some(tls) => tls.reload(always),
                    None => return,
                }
            }
        });
    }

    fn acceptor(&self, protocol: Protocol) -> TlsAcceptor {
        let configs = self.configs.read().expect("lock");
        TlsAcceptor::from(match protocol {
            Protocol::Grpc => configs.grpc.clone(),
            Protocol::Http1 => configs.http1.clone(),
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

fn problem(flag: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError {
        flag,
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| problem(flag, path, format!("cannot read it: {e}")))
}

/// The certificates in a PEM file, the first checked to be valid now.
fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(flag, path, format!("is not a PEM certificate file: {e}")))?;
    let Some(first) = certs.first() else {
        return Err(problem(flag, path, "holds no PEM certificate"));
    };
    check_validity(flag, path, first)?;
    Ok(certs)
}

fn read_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| problem(flag, path, format!("holds no PEM private key: {e}")))
}

fn roots(flag: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(flag, path)? {
        roots
            .add(cert)
            .map_err(|e| problem(flag, path, format!("is not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
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

/// Refuses a certificate that is expired or not valid yet, saying when.
fn check_validity(
    flag: &'static str,
    path: &Path,
    cert: &CertificateDer<'_>,
) -> Result<(), TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| problem(flag, path, format!("is not an X.509 certificate: {e}")))?;
    let validity = parsed.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > validity.not_after {
        return Err(problem(
            flag,
            path,
            format!("the certificate expired on {}", validity.not_after),
        ));
    }
    if now < validity.not_before {
        return Err(problem(
            flag,
            path,
            format!(
                "the certificate is not valid before {}",
                validity.not_before
            ),
        ));
    }
    Ok(())
}

/// Refuses a key that is not the certificate's.
fn check_pair(
    chain: Vec<CertificateDer<'static>>,
    private_key: PrivateKeyDer<'static>,
    cert_flag: &'static str,
    cert: &Path,
    key_flag: &'static str,
    key: &Path,
) -> Result<(), TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| problem(key_flag, key, format!("is not a usable private key: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        problem(
            key_flag,
            key,
            format!(
                "is not the key of the certificate in {cert_flag} {}",
                cert.display()
            ),
        )
    })
}
