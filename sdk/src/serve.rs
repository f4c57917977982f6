//! Serving gRPC: the listener loop, server reflection and the shutdown signal, shared by
//! participant processes and the coordinator.

use std::future::Future;

use tonic::transport::server::{Router, TcpIncoming};

use crate::proto;

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

/// Serves `router` on `listener` until `shutdown`, with TCP_NODELAY on every connection.
/// Prints `listening on ADDR` to stdout first: tools and tests wait for that line.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    // serve_with_incoming ignores the server's own nodelay setting: set it on the stream, or
    // Nagle's algorithm adds ~40 ms to small replies.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    println!("listening on {local}");
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
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
