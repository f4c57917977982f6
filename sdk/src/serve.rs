//! Serving gRPC: the listener loop, server reflection and the shutdown signal, shared by
//! participant processes and the coordinator.

use std::future::Future;
use std::sync::Arc;

use tonic::transport::server::{Router, TcpIncoming};

use crate::net::Listener;
use crate::proto;
use crate::tls::{Protocol, ServerTls};

/// `router` with server reflection for every Verdict service and health, in both versions of
/// the reflection protocol: `v1`, and `v1alpha`, which many tools still speak only (Python's
/// grpcio-reflection, several GUI clients).
pub fn with_reflection(router: Router) -> anyhow::Result<Router> {
    let described = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok(router
        .add_service(described().build_v1()?)
        .add_service(described().build_v1alpha()?))
}

/// Serves `router` on `listener` until `shutdown` — with `tls`, TLS only — with TCP_NODELAY
/// on every connection. Prints `listening on ADDR` to stdout first: tools and tests wait for
/// that line.
pub async fn serve(
    router: Router,
    listener: Listener,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    println!("listening on {local}");
    match (listener, tls) {
        (Listener::Tcp(listener), Some(tls)) => {
            tls.keep_current();
            let incoming = tls.incoming(listener, Protocol::Grpc);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        (Listener::Tcp(listener), None) => {
            // serve_with_incoming ignores the server's own nodelay setting: set it on the
            // stream, or Nagle's algorithm adds ~40 ms to small replies.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        (Listener::Simulated { .. }, Some(_)) => {
            anyhow::bail!("TLS is not simulated: run the simulation without certificates")
        }
        (Listener::Simulated { incoming, .. }, None) => {
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
    }
    Ok(())
}

/// `scheme://` + `local`, the unspecified address read as loopback: a process's own URL as
/// seen from inside it; `https` when it serves TLS.
pub fn own_url(local: std::net::SocketAddr, tls: bool) -> String {
    let ip = match local.ip() {
        ip if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip => ip,
    };
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, local.port()))
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
