//! `pushflow dashboard`: runs the topology's `dashboard` component alone
//! (or one with default settings when none is declared; it then needs
//! `PUSHFLOW_DASHBOARD_TOKENS`).

use pushflow_runtime::component::{cancel_on_signal, Component, Context};
use pushflow_runtime::http::Health;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::path::Path;
use std::sync::Arc;

use crate::DashboardError;

/// Serves the dashboard of the topology at `path` until Ctrl-C / SIGTERM.
pub async fn run(path: &Path) -> Result<(), DashboardError> {
    let topology = Topology::load(path).map_err(RuntimeError::from)?;
    let spec = match topology.components.iter().find(|c| c.kind == "dashboard") {
        Some(s) => s.clone(),
        None => serde_yaml::from_str::<ComponentSpec>("name: dashboard\ntype: dashboard\n")
            .expect("static spec parses"),
    };
    let component = crate::component::build(&spec, &topology, |k| std::env::var(k).ok())?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let ctx = Context {
        topology: Arc::new(topology),
        spec,
        shutdown,
        health: Health::default(),
    };
    Box::new(component).run(ctx).await?;
    Ok(())
}
