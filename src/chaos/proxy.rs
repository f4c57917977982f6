//! A fault-injecting TCP proxy, placed between two Verdict processes on loopback.
//!
//! Faults model a slow or broken network, not a corrupting one: bytes are delayed (latency and
//! jitter, order kept), held back in one or both directions (a one-way partition or a black
//! hole: TCP does not lose bytes, it stalls), new connections are refused, or every open
//! connection is reset.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The faults a proxy applies now. `Faults::default()` is a healthy network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Added to every chunk in both directions.
    pub latency: Duration,
    /// Up to this much more, at random per chunk.
    pub jitter: Duration,
    /// Close new connections at once.
    pub refuse: bool,
    /// Hold back bytes from the client to the target.
    pub stall_forward: bool,
    /// Hold back bytes from the target to the client.
    pub stall_backward: bool,
}

impl Faults {
    /// Nothing gets through either way (a black hole).
    pub fn partition() -> Self {
        Faults {
            stall_forward: true,
            stall_backward: true,
            ..Faults::default()
        }
    }
}

struct Shared {
    target: Mutex<Option<SocketAddr>>,
    faults: watch::Sender<Faults>,
    connections: Mutex<JoinSet<()>>,
}

/// A proxy listening on a loopback port.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port. Connections are refused until a target is set.
    pub async fn bind() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target: Mutex::new(None),
            faults: watch::Sender::new(Faults::default()),
            connections: Mutex::new(JoinSet::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock().expect("lock") = Some(target);
    }

    /// Applies `faults` from now on, to open connections too.
    pub fn set(&self, faults: Faults) {
        self.shared.faults.send_replace(faults);
    }

    /// Back to a healthy network.
    pub fn heal(&self) {
        self.set(Faults::default());
    }

    /// Resets every open connection (RST); new ones are accepted as usual.
    pub fn reset_connections(&self) {
        self.shared.connections.lock().expect("lock").abort_all();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_connections();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let target = *shared.target.lock().expect("lock");
        let Some(target) = target.filter(|_| !shared.faults.borrow().refuse) else {
            continue;
        };
        let faults = shared.faults.subscribe();
        let mut connections = shared.connections.lock().expect("lock");
        while connections.try_join_next().is_some() {}
        connections.spawn(relay(client, target, faults));
    }
}

async fn relay(client: TcpStream, target: SocketAddr, faults: watch::Receiver<Faults>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
        // An aborted relay drops its sockets: with linger 0 that is a reset, not a close.
        let _ = socket_linger_zero(stream);
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = pump(client_read, server_write, faults.clone(), Direction::Forward) => {}
        _ = pump(server_read, client_write, faults, Direction::Backward) => {}
    }
}

#[allow(deprecated)]
fn socket_linger_zero(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))
}

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Faults>,
    direction: Direction,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Ok(n) = from.read(&mut buffer).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let stalled = |f: &Faults| match direction {
            Direction::Forward => f.stall_forward,
            Direction::Backward => f.stall_backward,
        };
        if faults.wait_for(|f| !stalled(f)).await.is_err() {
            return;
        }
        let delay = {
            let f = faults.borrow();
            f.latency + f.jitter.mul_f64(rand::random::<f64>())
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream) -> std::io::Result<[u8; 4]> {
        stream.write_all(b"ping").await?;
        let mut reply = [0; 4];
        stream.read_exact(&mut reply).await?;
        Ok(reply)
    }

    async fn proxied() -> (FaultProxy, TcpStream) {
        let proxy = FaultProxy::bind().await.unwrap();
        proxy.set_target(echo_server().await);
        let stream = TcpStream::connect(proxy.addr()).await.unwrap();
        (proxy, stream)
    }

    #[tokio::test]
    async fn a_healthy_proxy_relays_both_ways() {
        let (_proxy, mut stream) = proxied().await;
        assert_eq!(&round_trip(&mut stream).await.unwrap(), b"ping");
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_holds_bytes_until_healed() {
        let (proxy, mut stream) = proxied().await;
        proxy.set(Faults::partition());
        let held = tokio::time::timeout(Duration::from_secs(60), round_trip(&mut stream)).await;
        assert!(held.is_err(), "nothing crosses a partition");
        proxy.heal();
        let mut reply = [0; 4];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"ping", "held bytes arrive after healing");
    }

    #[tokio::test]
    async fn a_reset_breaks_open_connections() {
        let (proxy, mut stream) = proxied().await;
        round_trip(&mut stream).await.unwrap();
        proxy.reset_connections();
        let mut reply = [0; 1];
        let read = stream.read(&mut reply).await;
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_each_chunk() {
        let (proxy, mut stream) = proxied().await;
        proxy.set(Faults {
            latency: Duration::from_millis(300),
            ..Faults::default()
        });
        let started = tokio::time::Instant::now();
        round_trip(&mut stream).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "both directions delayed"
        );
    }
}
