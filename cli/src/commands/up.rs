//! `pushflow up` (every component in one process) and `pushflow run` /
//! `pushflow registry` (one component alone).
//!
//! Order at start: the registry components first, then the topology is
//! applied (topics created, schemas registered, idempotently), then the
//! other components. On Ctrl-C / SIGTERM every component drains and
//! commits before the process exits; if one component fails for good, the
//! others are stopped the same way and the process exits non-zero.

use pushflow_runtime::component::{cancel_on_signal, Context};
use pushflow_runtime::http::{admin_router, bind, serve, Health};
use pushflow_runtime::topology::apply::apply_patiently;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::CancellationToken;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

use crate::components::Validated;
use crate::Failure;

type Running = JoinSet<(String, Result<(), pushflow_runtime::RuntimeError>)>;

fn start(set: &mut Running, v: Validated, ctx: Context) {
    let name = v.spec.name.clone();
    tracing::info!(component = %name, kind = %v.spec.kind, "starting component");
    set.spawn(async move { (name, v.component.run(ctx).await) });
}

async fn wait_all(mut set: Running, shutdown: CancellationToken) -> Result<(), Failure> {
    let mut failure = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((name, Ok(()))) => tracing::info!(component = %name, "component stopped"),
            Ok((name, Err(e))) => {
                tracing::error!(component = %name, error = %e, "component failed; stopping the others");
                failure.get_or_insert(anyhow::anyhow!("{name}: {e}"));
                shutdown.cancel();
            }
            Err(e) => {
                tracing::error!(error = %e, "component task panicked; stopping the others");
                failure.get_or_insert(anyhow::anyhow!("component panicked: {e}"));
                shutdown.cancel();
            }
        }
    }
    match failure {
        Some(e) => Err(Failure::Other(e)),
        None => Ok(()),
    }
}

/// Components running in this process, started in `pushflow up`'s order.
pub struct Pipeline {
    set: Running,
    /// Cancelling it drains and stops every component.
    pub shutdown: CancellationToken,
}

impl Pipeline {
    /// Starts the registry components, applies the topology (retrying for
    /// up to two minutes while the broker and registry come up), then
    /// starts the rest. On failure everything started is stopped; `None`
    /// when `shutdown` came before the topology was applied.
    pub async fn start(
        topology: Arc<Topology>,
        components: Vec<Validated>,
        shutdown: CancellationToken,
        health: Health,
    ) -> Result<Option<Pipeline>, Failure> {
        let ctx = |spec: &ComponentSpec| Context {
            topology: topology.clone(),
            spec: spec.clone(),
            shutdown: shutdown.clone(),
            health: health.clone(),
        };
        // Every component is listed from the start, and not ok until it
        // runs (each marks itself ok once connected).
        for v in &components {
            health.failing(&v.spec.name, "starting");
        }
        let (first, rest): (Vec<_>, Vec<_>) = components.into_iter().partition(|v| v.starts_first);
        let mut set = Running::new();
        for v in first {
            let c = ctx(&v.spec);
            start(&mut set, v, c);
        }
        tokio::select! {
            r = apply_patiently(&topology, Duration::from_secs(120)) => match r {
                Ok(report) => {
                    for line in report.to_string().lines() {
                        tracing::info!("{line}");
                    }
                }
                Err(e) => {
                    shutdown.cancel();
                    let _ = wait_all(set, shutdown).await;
                    return Err(Failure::Other(anyhow::anyhow!("applying the topology: {e}")));
                }
            },
            _ = shutdown.cancelled() => {
                wait_all(set, shutdown.clone()).await?;
                return Ok(None);
            }
        }
        for v in rest {
            let c = ctx(&v.spec);
            start(&mut set, v, c);
        }
        Ok(Some(Pipeline { set, shutdown }))
    }

    /// Waits until every component has stopped (after `shutdown`, or after
    /// one failed for good, which stops the others).
    pub async fn wait(self) -> Result<(), Failure> {
        wait_all(self.set, self.shutdown).await
    }
}

/// `pushflow up`.
pub async fn up(path: &Path, skip: &[String]) -> Result<(), Failure> {
    let (topology, mut components) = super::load(path)?;
    if let Some(unknown) = skip
        .iter()
        .find(|s| !components.iter().any(|v| &v.spec.name == *s))
    {
        return Err(Failure::Config(format!(
            "--skip {unknown:?}: no component of that name in {}",
            topology.path.display()
        )));
    }
    components.retain(|v| !skip.contains(&v.spec.name));
    let topology = Arc::new(topology);
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let health = Health::default();
    let admin = bind(&topology.services.metrics_addr).await?;
    tokio::spawn(serve(admin, admin_router(health.clone()), shutdown.clone()));
    tracing::info!(addr = %topology.services.metrics_addr, "/healthz and /metrics listening");
    let Some(pipeline) = Pipeline::start(topology, components, shutdown, health).await? else {
        return Ok(());
    };
    tracing::info!("pushflow is up");
    pipeline.wait().await
}

/// `pushflow run <name>`, or `pushflow registry` when `name` is `None`.
pub async fn run_one(path: &Path, name: Option<&str>) -> Result<(), Failure> {
    let (topology, components) = super::load(path)?;
    let wanted = name.unwrap_or("registry");
    let v = match components.into_iter().find(|v| match name {
        Some(n) => v.spec.name == n,
        None => v.spec.kind == "registry",
    }) {
        Some(v) => v,
        None if name.is_none() => {
            // No registry declared: run one with default settings.
            let spec: ComponentSpec = serde_yaml::from_str("name: registry\ntype: registry\n")
                .expect("static spec parses");
            let kind = crate::components::kinds()
                .into_iter()
                .find(|k| k.name == "registry")
                .expect("registry is a known kind");
            let component = kind
                .validate(&spec, &topology)
                .map_err(|e| Failure::Config(e.to_string()))?;
            Validated {
                spec,
                component,
                serves_http: kind.serves_http,
                starts_first: kind.starts_first,
            }
        }
        None => {
            return Err(Failure::Config(format!(
                "{}: no component named {wanted:?} (see `pushflow topology check`)",
                topology.path.display()
            )))
        }
    };
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let health = Health::default();
    // HTTP services serve /healthz and /metrics on their own address; the
    // others get the process's admin address.
    if !v.serves_http {
        let admin = bind(&topology.services.metrics_addr).await?;
        tokio::spawn(serve(admin, admin_router(health.clone()), shutdown.clone()));
    }
    let ctx = Context {
        topology: Arc::new(topology),
        spec: v.spec.clone(),
        shutdown: shutdown.clone(),
        health,
    };
    let mut set = Running::new();
    start(&mut set, v, ctx);
    wait_all(set, shutdown).await
}
