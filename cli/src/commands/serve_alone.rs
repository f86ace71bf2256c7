//! `pushflow ingest` and `pushflow dashboard`: one HTTP component served
//! alone, outside `pushflow up`.

use pushflow_dashboard::{DashboardComponent, DashboardError};
use pushflow_runtime::component::{cancel_on_signal, Component, Context};
use pushflow_runtime::http::Health;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::path::Path;
use std::sync::Arc;

/// Runs the first component of type `kind` in the topology at `path` (or,
/// when none is declared, one named `kind` with default settings), built
/// by `build`, until Ctrl-C / SIGTERM.
pub async fn serve_alone<C, E>(
    path: &Path,
    kind: &str,
    build: impl FnOnce(&ComponentSpec, &Topology) -> Result<C, E>,
) -> Result<(), E>
where
    C: Component + 'static,
    E: From<RuntimeError>,
{
    let topology = Topology::load(path).map_err(RuntimeError::from)?;
    let spec = match topology.components.iter().find(|c| c.kind == kind) {
        Some(s) => s.clone(),
        None => serde_yaml::from_str::<ComponentSpec>(&format!("name: {kind}\ntype: {kind}\n"))
            .expect("static spec parses"),
    };
    let component = build(&spec, &topology)?;
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

/// `pushflow dashboard`: serves the topology's `dashboard` component alone
/// (or one with default settings when none is declared; it then needs
/// `PUSHFLOW_DASHBOARD_TOKENS`).
pub async fn dashboard(path: &Path) -> Result<(), DashboardError> {
    serve_alone(path, "dashboard", |spec, t| {
        DashboardComponent::with_env(spec, t, |k| std::env::var(k).ok())
    })
    .await
}
