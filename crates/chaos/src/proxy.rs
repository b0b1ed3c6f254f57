//! A TCP proxy between the workers and Postgres, so the harness can stall and then drop
//! their connections (a network partition seen from the worker's side), and so every
//! server session can be traced back to the worker process that opened it.
//!
//! Each worker process gets a listener of its own. For every connection the proxy opens
//! one upstream connection and records its local port with the process's label: the audit
//! trigger records `inet_client_port()`, which is that port, so a write in the audit names
//! the process that made it without trusting anything the worker says.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
#[cfg(test)]
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What every connection obeys: forward or hold bytes, and a drop counter (every
/// connection opened before the counter moved is closed).
#[derive(Debug, Clone, Copy, Default)]
struct Control {
    stalled: bool,
    drops: u64,
}

/// One upstream session: which process it served and when.
#[derive(Debug, Clone)]
pub struct Session {
    /// The upstream socket's local port (what Postgres sees as the client port).
    pub port: u16,
    /// The worker process's label.
    pub label: String,
    /// When the upstream connection was made.
    pub opened: DateTime<Utc>,
}

/// The proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    upstream: SocketAddr,
    control: Arc<watch::Sender<Control>>,
    sessions: Arc<Mutex<Vec<Session>>>,
}

impl Proxy {
    /// A proxy to Postgres at `upstream`.
    pub fn new(upstream: SocketAddr) -> Self {
        Self {
            upstream,
            control: Arc::new(watch::Sender::new(Control::default())),
            sessions: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A listener on 127.0.0.1 for the process `label`: its port and the accept loop (abort
    /// it when the process is gone).
    pub async fn listen(&self, label: String) -> anyhow::Result<(u16, JoinHandle<()>)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let proxy = self.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let proxy = proxy.clone();
                let label = label.clone();
                tokio::spawn(async move { proxy.serve(inbound, label).await });
            }
        });
        Ok((port, task))
    }

    async fn serve(&self, inbound: TcpStream, label: String) {
        let mut control = self.control.subscribe();
        let born = control.borrow().drops;
        // A connection made during a stall waits for its end (the client sees a hang), and
        // is dropped with the others if the stall ends in a drop.
        let waited = tokio::select! {
            r = control.wait_for(|c| !c.stalled) => r.map(|c| c.drops).ok(),
            () = closed(&inbound) => None,
        };
        if waited != Some(born) {
            return;
        }
        let Ok(upstream) = TcpStream::connect(self.upstream).await else {
            return; // Postgres is down (a restart): the client sees the connection close.
        };
        if let Ok(addr) = upstream.local_addr()
            && let Ok(mut sessions) = self.sessions.lock()
        {
            sessions.push(Session {
                port: addr.port(),
                label,
                opened: Utc::now(),
            });
        }
        let _ = inbound.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (ir, iw) = inbound.into_split();
        let (ur, uw) = upstream.into_split();
        tokio::select! {
            () = pump(ir, uw, self.control.subscribe()) => {}
            () = pump(ur, iw, self.control.subscribe()) => {}
            _ = control.wait_for(|c| c.drops != born) => {}
        }
    }

    /// Holds every byte in both directions (connections stay open) until [`Self::release`].
    pub fn stall(&self) {
        self.control.send_modify(|c| c.stalled = true);
    }

    /// Closes every open connection, then forwards again.
    pub fn drop_all_and_release(&self) {
        self.control.send_modify(|c| {
            c.drops += 1;
            c.stalled = false;
        });
    }

    /// Every upstream session so far.
    pub fn sessions(&self) -> Vec<Session> {
        self.sessions.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Resolves when the peer has closed `stream` (used only before any byte is forwarded).
async fn closed(stream: &TcpStream) {
    let mut probe = [0u8; 1];
    loop {
        match stream.peek(&mut probe).await {
            Ok(0) | Err(_) => return,
            // The client already sent its startup message: keep waiting for the stall to end.
            Ok(_) => std::future::pending::<()>().await,
        }
    }
}

/// Copies `from` to `to`, holding bytes while stalled; returns when either side ends.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut control: watch::Receiver<Control>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if control.wait_for(|c| !c.stalled).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test
mod tests {
    use super::*;

    /// An upstream that echoes and reports each client's port as it sees it.
    async fn echo() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u16>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, peer)) = listener.accept().await {
                let _ = tx.send(peer.port());
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, rx)
    }

    async fn roundtrip(stream: &mut TcpStream, text: &[u8]) -> Vec<u8> {
        stream.write_all(text).await.unwrap();
        let mut buf = vec![0u8; text.len()];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    }

    #[tokio::test]
    async fn a_session_names_the_port_the_server_sees_and_the_process_that_opened_it() {
        let (upstream, mut peers) = echo().await;
        let proxy = Proxy::new(upstream);
        let (port, _accept) = proxy.listen("chaos-w0-1".into()).await.unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(roundtrip(&mut client, b"ping").await, b"ping");
        let seen = peers.recv().await.unwrap();
        let sessions = proxy.sessions();
        assert_eq!(sessions.len(), 1);
        assert_eq!(
            (sessions[0].port, sessions[0].label.as_str()),
            (seen, "chaos-w0-1")
        );
    }

    #[tokio::test]
    async fn a_stall_holds_bytes_and_its_end_drops_every_connection() {
        let (upstream, _peers) = echo().await;
        let proxy = Proxy::new(upstream);
        let (port, _accept) = proxy.listen("chaos-w0-1".into()).await.unwrap();
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(roundtrip(&mut client, b"one").await, b"one");
        proxy.stall();
        client.write_all(b"two").await.unwrap();
        let mut buf = [0u8; 8];
        // Held: nothing comes back while stalled (the read is still pending).
        let held = tokio::time::timeout(Duration::from_millis(300), client.read(&mut buf)).await;
        assert!(held.is_err(), "bytes went through a stall: {held:?}");
        proxy.drop_all_and_release();
        // Dropped: the held bytes never arrive, the connection closes.
        let n = client.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0);
        // Forwarding again for new connections.
        let mut again = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_eq!(roundtrip(&mut again, b"three").await, b"three");
    }
}
