//! A TCP proxy between the API and PostgreSQL that reads the frontend/backend protocol the
//! API sends and counts its statements: every `Execute` (extended protocol, what
//! `query_typed` sends) and every simple `Query`. It sits outside the API's code, so it sees
//! whatever the API (and the pool and driver under it) really sends, including type look-ups
//! the driver would add for an unknown column type.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default)]
struct Counts {
    executes: AtomicU64,
    simple_queries: AtomicU64,
    parses: AtomicU64,
}

pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    counts: Arc<Counts>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let addr = listener.local_addr().expect("the proxy's address");
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, counts).await;
                    }
                });
            }
        });
        Proxy { addr, counts }
    }

    /// Statements sent so far: `Execute` plus simple `Query` messages.
    pub(crate) fn statements(&self) -> u64 {
        self.counts.executes.load(Ordering::SeqCst)
            + self.counts.simple_queries.load(Ordering::SeqCst)
    }

    /// `Parse` messages sent so far (a prepare without execution would show here only).
    pub(crate) fn parses(&self) -> u64 {
        self.counts.parses.load(Ordering::SeqCst)
    }

    /// A connection string reaching `database` on the real server through this proxy.
    pub(crate) fn url(&self, server_url: &str, database: &str) -> String {
        let config: tokio_postgres::Config = server_url.parse().expect("DATABASE_URL parses");
        let user = config.get_user().unwrap_or("postgres");
        let mut url = format!(
            "host={} port={} user={user} dbname={database}",
            self.addr.ip(),
            self.addr.port()
        );
        if let Some(password) = config.get_password() {
            url.push_str(&format!(
                " password='{}'",
                String::from_utf8_lossy(password).replace('\'', "\\'")
            ));
        }
        url
    }
}

/// The server's address from a connection string (TCP host and port).
pub(crate) async fn upstream(server_url: &str) -> SocketAddr {
    let config: tokio_postgres::Config = server_url.parse().expect("DATABASE_URL parses");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the statement-counting proxy needs a TCP host, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolving the PostgreSQL host");
    addrs.next().expect("an address for the PostgreSQL host")
}

async fn relay(client: TcpStream, server: TcpStream, counts: Arc<Counts>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut parser = Parser::default();
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        let n = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Counted before forwarding: the server cannot act on a message before it has all of
        // it, so a count is visible before any answer to it reaches the API.
        parser.feed(&chunk[..n], &counts);
        if server_write.write_all(&chunk[..n]).await.is_err() {
            break;
        }
    }
    let _ = server_write.shutdown().await;
    let _ = back.await;
}

/// The client side of the protocol: untyped start-up messages (SSL and GSS requests, then
/// the startup message), then typed messages (a type byte and a length that counts itself).
#[derive(Default)]
struct Parser {
    started: bool,
    pending: Vec<u8>,
}

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

impl Parser {
    fn feed(&mut self, bytes: &[u8], counts: &Counts) {
        self.pending.extend_from_slice(bytes);
        loop {
            if !self.started {
                if self.pending.len() < 8 {
                    return;
                }
                let len = be_i32(&self.pending[0..4]) as usize;
                if self.pending.len() < len {
                    return;
                }
                let code = be_i32(&self.pending[4..8]);
                self.started = !matches!(code, SSL_REQUEST | GSSENC_REQUEST);
                self.pending.drain(..len);
                continue;
            }
            if self.pending.len() < 5 {
                return;
            }
            let total = 1 + be_i32(&self.pending[1..5]) as usize;
            if self.pending.len() < total {
                return;
            }
            let counter = match self.pending[0] {
                b'E' => Some(&counts.executes),
                b'Q' => Some(&counts.simple_queries),
                b'P' => Some(&counts.parses),
                _ => None,
            };
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            self.pending.drain(..total);
        }
    }
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
