//! turmoil's simulated TCP as the servers' and clients' network (see `verdict::net`).

use std::io;
use std::net::SocketAddr;

use tokio_stream::wrappers::ReceiverStream;
use verdict::net::{Accepted, Binding, Connecting, Io, SimulatedNetwork};

pub struct Turmoil;

impl SimulatedNetwork for Turmoil {
    fn bind(&self, addr: SocketAddr) -> Binding {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(addr).await?;
            let local = listener.local_addr()?;
            // Accepted on a task of the host's own, which dies with it.
            let (accepted, incoming) = tokio::sync::mpsc::channel(16);
            tokio::spawn(async move {
                loop {
                    let next = listener.accept().await.map(|(stream, remote)| Accepted {
                        io: Box::new(stream),
                        local,
                        remote,
                    });
                    if accepted.send(next).await.is_err() {
                        break;
                    }
                }
            });
            let incoming: verdict::net::Incoming = Box::pin(ReceiverStream::new(incoming));
            Ok((local, incoming))
        })
    }

    fn connect(&self, authority: &str) -> Connecting {
        let authority = authority.to_owned();
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(authority).await?;
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    }
}

/// An error turmoil can carry out of a host.
pub fn boxed(e: impl std::fmt::Display) -> Box<dyn std::error::Error> {
    io::Error::other(e.to_string()).into()
}
