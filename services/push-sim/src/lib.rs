//! `pushflow push-sim`: a local push service (RFC 8030) that checks what a
//! real one checks — the VAPID JWT (RFC 8292: ES256 signature with the
//! `k=` key, `aud` = its own origin, `exp` within 24 h, `sub` present) and
//! the aes128gcm body (RFC 8291, decrypted with the subscriber's private
//! key and auth secret) — and records what it received, queryable over
//! HTTP. It can be told to answer 404/410/429 (with `Retry-After`)/500 or
//! slowly for chosen subscribers or a fraction of requests, and generates
//! test subscribers, published as `subscription.created`.
//!
//! Guarantee: none beyond the process — what it received lives in memory
//! and is gone when it stops (it is a test double, not a store). A push is
//! answered 201 only after its VAPID JWT verified and (when sampled) its
//! body decrypted to JSON.
//!
//! Endpoints: `POST /push/{subscriber}`, `GET /sim/received?subscriber=…`,
//! `GET /sim/stats`, `POST /sim/behaviour` ([`Behaviour`] JSON),
//! `POST /sim/subscribers {"store","count"}`, `GET /sim/keys/{subscriber}`,
//! plus `/healthz` and `/metrics`.

pub mod behaviour;
pub mod component;
pub mod config;
pub mod crypto;
pub mod server;
pub mod subscribers;

pub use behaviour::{Behaviour, RandomRule, Rule};
pub use component::PushSimComponent;
pub use config::PushSimSettings;
pub use server::{Received, SimState};
pub use subscribers::Publisher;

use pushflow_runtime::CancellationToken;
use std::sync::Arc;

/// Errors of the simulator. Each knows whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The VAPID header or JWT is missing or invalid.
    #[error("VAPID: {0}")]
    Vapid(String),
    /// The body could not be decrypted.
    #[error("aes128gcm: {0}")]
    Decrypt(String),
    /// A key could not be imported.
    #[error("bad key: {0}")]
    BadKey(String),
    /// Subscribers could not be published to Kafka.
    #[error("publishing subscribers: {0}")]
    Publish(String),
    /// The address could not be bound.
    #[error("binding {addr}: {message}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        message: String,
    },
}

impl SimError {
    /// Whether trying again later could succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SimError::Publish(_))
    }
}

/// A simulator serving in the background of the current tokio runtime.
pub struct PushSim {
    /// Its state (received pushes, behaviour, subscribers).
    pub state: Arc<SimState>,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    shutdown: CancellationToken,
}

impl PushSim {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves until dropped.
    pub async fn start(
        addr: &str,
        behaviour: Behaviour,
        publisher: Option<Publisher>,
    ) -> Result<PushSim, SimError> {
        let (listener, local) = listen(addr).await?;
        let state = Arc::new(SimState::new(
            format!("http://{local}"),
            behaviour,
            publisher,
        ));
        let shutdown = CancellationToken::new();
        let app = server::router(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(PushSim {
            state,
            addr: local,
            shutdown,
        })
    }

    /// `http://host:port`.
    pub fn origin(&self) -> &str {
        self.state.origin()
    }
}

impl Drop for PushSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Binds `addr` (port 0: any free one) and returns the listener with the
/// address it got.
pub async fn listen(
    addr: &str,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), SimError> {
    let bind = |e: std::io::Error| SimError::Bind {
        addr: addr.to_string(),
        message: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    Ok((listener, local))
}
