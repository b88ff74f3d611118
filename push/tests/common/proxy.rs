//! A TCP proxy a test puts between a stage and a service, to take the service away from
//! that stage alone (the shared service keeps serving every other test): `cut` drops every
//! connection through it and refuses new ones, `restore` lets them through again.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A proxy on a loopback port forwarding to `target`.
pub(crate) struct Proxy {
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    open: Arc<watch::Sender<bool>>,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let addr = listener.local_addr().expect("its address");
        let open = Arc::new(watch::channel(true).0);
        let gate = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*gate.borrow() {
                    // Refused: the service is "down".
                    drop(client);
                    continue;
                }
                let mut closed = gate.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = closed.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Proxy { addr, open }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub(crate) fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Lets connections through again.
    pub(crate) fn restore(&self) {
        self.open.send_replace(true);
    }
}
