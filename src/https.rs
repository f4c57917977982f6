//! The HTTP ports — metrics and the web console — served by axum: plaintext, or, given the
//! process's certificate (the same `--tls-cert` as its gRPC port), TLS only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use verdict_sdk::tls::{Protocol, ServerTls};

/// The address a request came from (for handlers: `ConnectInfo<Caller>`), plain or TLS.
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for Caller {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Caller(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Caller {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        Caller(*stream.remote_addr())
    }
}

/// Serves `app` on `listener` in the background; `what` names the port in the log.
pub fn spawn(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    what: &'static str,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<Caller>();
    let tls = match tls {
        None => {
            tokio::spawn(async move { report(what, axum::serve(listener, app).await) });
            return Ok(());
        }
        Some(tls) => TlsListener::new(tls, listener)?,
    };
    tokio::spawn(async move { report(what, axum::serve(tls, app).await) });
    Ok(())
}

fn report(what: &str, served: std::io::Result<()>) {
    if let Err(error) = served {
        tracing::error!(%error, "{what} stopped");
    }
}

/// Connections after their TLS handshake.
pub struct TlsListener {
    local: SocketAddr,
    connections: mpsc::Receiver<std::io::Result<TlsStream<TcpStream>>>,
}

impl TlsListener {
    fn new(tls: Arc<ServerTls>, listener: TcpListener) -> std::io::Result<Self> {
        tls.keep_current();
        Ok(TlsListener {
            local: listener.local_addr()?,
            connections: tls.incoming(listener, Protocol::Http1).into_inner(),
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(Ok(stream)) = self.connections.recv().await else {
                // The acceptor only stops with this listener: nothing more will come.
                std::future::pending::<()>().await;
                continue;
            };
            if let Ok(peer) = stream.get_ref().0.peer_addr() {
                return (stream, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
