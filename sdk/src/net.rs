//! Where a process meets the network: the listener its server accepts on, and the channels its
//! clients call through.
//!
//! Normally that is TCP. A deterministic simulation that runs the real servers on one thread
//! (see `tests/simulation`) installs a [`SimulatedNetwork`] on that thread first; every listener
//! bound and every channel made there afterwards goes through it.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::Stream;
use tonic::codegen::http::Uri;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

/// A connection's bytes, whatever carries them.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Connections accepted by a simulated listener.
pub type Incoming = Pin<Box<dyn Stream<Item = io::Result<Accepted>> + Send>>;

/// A listener being bound: the address bound and the connections accepted there.
pub type Binding = Pin<Box<dyn Future<Output = io::Result<(SocketAddr, Incoming)>>>>;

/// A connection being made.
pub type Connecting = Pin<Box<dyn Future<Output = io::Result<Box<dyn Io>>> + Send>>;

/// A network standing in for TCP.
pub trait SimulatedNetwork: Send + Sync + 'static {
    /// Listens on `addr`.
    fn bind(&self, addr: SocketAddr) -> Binding;

    /// Connects to `authority` (`host:port`).
    fn connect(&self, authority: &str) -> Connecting;
}

thread_local! {
    static SIMULATED: RefCell<Option<Arc<dyn SimulatedNetwork>>> = const { RefCell::new(None) };
}

/// From now on, on this thread, listeners and channels go through `network` (`None`: TCP).
pub fn simulate(network: Option<Arc<dyn SimulatedNetwork>>) {
    SIMULATED.with(|s| *s.borrow_mut() = network);
}

fn simulated() -> Option<Arc<dyn SimulatedNetwork>> {
    SIMULATED.with(|s| s.borrow().clone())
}

/// A bound listener.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Simulated {
        local: SocketAddr,
        incoming: Incoming,
    },
}

impl Listener {
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        match simulated() {
            None => Ok(Listener::Tcp(tokio::net::TcpListener::bind(addr).await?)),
            Some(network) => {
                let (local, incoming) = network.bind(addr).await?;
                Ok(Listener::Simulated { local, incoming })
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr(),
            Listener::Simulated { local, .. } => Ok(*local),
        }
    }
}

/// How often a connection with calls outstanding pings its peer, and how long it waits for
/// the answer before it is torn down: long enough that a peer busy for a moment (a stalled
/// worker thread, two cores shared by a dozen processes) is not taken for a dead one, which
/// would fail every call on the connection at once.
const PING_EVERY: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// `endpoint`, its connections pinged while calls are outstanding: a connection that went dead
/// without a word (the peer's machine lost power, a partition outlasted TCP's retries, a
/// middlebox forgot it) is torn down within about seven seconds, failing its calls, and the next
/// call connects afresh — instead of every call on it timing out for good. No pings while idle:
/// servers such as gRPC core's refuse those more often than every five minutes.
pub fn watched(endpoint: Endpoint) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(PING_EVERY)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(false)
}

/// A channel to `endpoint`, connected on first use and reconnected after failures.
pub fn channel(endpoint: Endpoint) -> Channel {
    if crate::tls::is_tls(&endpoint) {
        return endpoint.connect_with_connector_lazy(tower::service_fn(crate::tls::connect));
    }
    let Some(network) = simulated() else {
        return endpoint.connect_lazy();
    };
    endpoint.connect_with_connector_lazy(tower::service_fn(move |uri: Uri| {
        let connecting =
            network.connect(&uri.authority().map(|a| a.to_string()).unwrap_or_default());
        async move { connecting.await.map(TokioIo::new) }
    }))
}

/// A connection a simulated listener accepted.
pub struct Accepted {
    pub io: Box<dyn Io>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Connected for Accepted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: Some(self.local),
            remote_addr: Some(self.remote),
        }
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
