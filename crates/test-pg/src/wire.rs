//! A TCP proxy in front of Postgres that counts what the client sends: statements and
//! round trips, read from the wire protocol, for tests and benchmarks that assert what a
//! code path costs the database.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What [`counting_proxy`] saw the client send.
#[derive(Debug, Default)]
pub struct Wire {
    /// Statements: `Bind` (one execution of a prepared statement) and simple `Query`.
    pub statements: AtomicU64,
    /// Messages that wait for the server's `ReadyForQuery`: `Sync` (ends each extended-
    /// protocol statement; sent alone it is sqlx's connection check) and simple `Query`.
    pub round_trips: AtomicU64,
}

impl Wire {
    /// `(statements, round trips)` so far.
    pub fn read(&self) -> (u64, u64) {
        (
            self.statements.load(Ordering::Relaxed),
            self.round_trips.load(Ordering::Relaxed),
        )
    }
}

/// A TCP proxy to `upstream` that counts the client's statements and round trips ([`Wire`]).
/// TLS must be off (the count reads the plain protocol).
async fn counting_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<Wire>) {
    const SSL_REQUEST: u32 = 80_877_103;
    const GSSENC_REQUEST: u32 = 80_877_104;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Wire::default());
    let counter = count.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
                let (mut pending, mut chunk, mut typed) = (Vec::new(), [0u8; 16384], false);
                loop {
                    let n = match from_client.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if to_server.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                    pending.extend_from_slice(&chunk[..n]);
                    loop {
                        // Before the startup message, messages have no type byte.
                        let (head, at) = if typed { (5, 1) } else { (8, 0) };
                        if pending.len() < head {
                            break;
                        }
                        let len = u32::from_be_bytes(pending[at..at + 4].try_into().unwrap());
                        let total = len as usize + at;
                        if pending.len() < total {
                            break;
                        }
                        if typed {
                            if matches!(pending[0], b'B' | b'Q') {
                                counter.statements.fetch_add(1, Ordering::Relaxed);
                            }
                            if matches!(pending[0], b'S' | b'Q') {
                                counter.round_trips.fetch_add(1, Ordering::Relaxed);
                            }
                        } else {
                            let code = u32::from_be_bytes(pending[4..8].try_into().unwrap());
                            typed = code != SSL_REQUEST && code != GSSENC_REQUEST;
                        }
                        pending.drain(..total);
                    }
                }
                let _ = to_server.shutdown().await;
            });
        }
    });
    (addr, count)
}

/// `url` pointed at a counting proxy in front of its server, TLS off; `None` when the URL
/// does not name a TCP host and port this can rewrite.
pub async fn through_proxy(url: &str) -> Option<(String, Arc<Wire>)> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).ok()?;
    let target = format!("{}:{}", options.get_host(), options.get_port());
    if !url.contains(&target) {
        return None;
    }
    let upstream = tokio::net::lookup_host(&target).await.ok()?.next()?;
    let (proxy, count) = counting_proxy(upstream).await;
    let mut proxied = url.replacen(&target, &proxy.to_string(), 1);
    proxied.push_str(if proxied.contains('?') { "&" } else { "?" });
    proxied.push_str("sslmode=disable");
    Some((proxied, count))
}
