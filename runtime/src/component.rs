//! The lifecycle of a component of `pushflow up`.
//!
//! A component is validated first, without I/O, by its own `validate`
//! (called from the binary's registry), and only then run. `run` connects,
//! works until `ctx.shutdown` is cancelled, then drains: it commits
//! whatever it made durable and returns.

use async_trait::async_trait;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::http::Health;
use crate::topology::{ComponentSpec, Topology};
use crate::RuntimeError;

/// What a running component gets from the process.
#[derive(Clone)]
pub struct Context {
    /// The whole topology (services, topics, kafka pass-through).
    pub topology: Arc<Topology>,
    /// This component's entry.
    pub spec: ComponentSpec,
    /// Cancelled on Ctrl-C / SIGTERM: drain, commit, return.
    pub shutdown: CancellationToken,
    /// Report health here under the component's name.
    pub health: Health,
}

impl Context {
    /// Probes `deps` every second until shutdown: `/healthz` then names
    /// any of them that is unreachable (see [`crate::probe`]).
    pub fn watch(&self, deps: Vec<crate::probe::Dependency>) {
        crate::probe::watch(
            &self.health,
            &self.spec.name,
            &self.topology.services,
            &self.topology.kafka,
            deps,
            self.shutdown.clone(),
        );
    }
}

/// A validated component, ready to connect and run.
#[async_trait]
pub trait Component: Send {
    /// Connects and runs until `ctx.shutdown` is cancelled.
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError>;
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutdown requested: draining");
        token.cancel();
    });
}
