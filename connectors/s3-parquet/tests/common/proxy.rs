//! A TCP forwarder between the sink and the object store that a test can
//! turn into a failing store and back, without the store losing its data
//! (killing moto would lose everything it holds).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways (a healthy store).
    Forward,
    /// Resets every connection as soon as it is accepted, before any
    /// request reaches the store (an unreachable store).
    Refuse,
    /// Forwards requests to the store but resets the connection as soon as
    /// the store starts answering: the store may have done the write, the
    /// client never hears it (a store failing after the fact, the hardest
    /// case for exactly-once).
    DropResponses,
}

/// Counters of what the proxy did.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Connections forwarded.
    pub forwarded: AtomicU64,
    /// Connections reset in `Refuse` mode.
    pub refused: AtomicU64,
    /// Responses withheld in `DropResponses` mode.
    pub dropped_responses: AtomicU64,
}

/// A running proxy on 127.0.0.1.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// Its counters.
    pub stats: Arc<ProxyStats>,
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding a free port of 127.0.0.1 to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, rx) = watch::channel(Mode::Forward);
        let stats = Arc::new(ProxyStats::default());
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, upstream, rx.clone(), st.clone()));
            }
        });
        Proxy {
            addr,
            stats,
            mode,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches mode; every open connection is reset, so pooled
    /// keep-alive connections see the new mode at once.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Connections reset in `Refuse` mode so far.
    pub fn refused(&self) -> u64 {
        self.stats.refused.load(Ordering::Relaxed)
    }

    /// Responses withheld in `DropResponses` mode so far.
    pub fn dropped_responses(&self) -> u64 {
        self.stats.dropped_responses.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resets (RST, not FIN) and drops.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    stats: Arc<ProxyStats>,
) {
    let m = *mode.borrow_and_update();
    if m == Mode::Refuse {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        return reset(client);
    }
    let Ok(up) = TcpStream::connect(upstream).await else {
        return reset(client);
    };
    let _ = up.set_nodelay(true);
    stats.forwarded.fetch_add(1, Ordering::Relaxed);
    let mut client = client;
    let mut up = up;
    {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = up.split();
        let to_store = async {
            let _ = tokio::io::copy(&mut cr, &mut uw).await;
            let _ = uw.shutdown().await;
        };
        let from_store = async {
            if m == Mode::DropResponses {
                // Wait for the first byte of the answer, then cut.
                let mut byte = [0u8; 1];
                if matches!(ur.read(&mut byte).await, Ok(1)) {
                    stats.dropped_responses.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            let _ = tokio::io::copy(&mut ur, &mut cw).await;
            let _ = cw.shutdown().await;
        };
        let done = async {
            if m == Mode::DropResponses {
                tokio::select! {
                    _ = to_store => {}
                    _ = from_store => {}
                }
            } else {
                tokio::join!(to_store, from_store);
            }
        };
        tokio::select! {
            _ = done => {}
            _ = mode.changed() => {}
        }
    }
    reset(up);
    reset(client);
}
