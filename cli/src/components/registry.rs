//! The schema registry as a component of `pushflow up`: serves the
//! Confluent REST API, `/healthz` and `/metrics` on `registry_addr`.
//!
//! Guarantee: what it answered 200 to registering is committed in Postgres;
//! ids are never reused (see `pushflow-registry`).

use async_trait::async_trait;
use pushflow_runtime::component::{Component, Context};
use pushflow_runtime::http::{admin_router, bind, serve};
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::RuntimeError;
use serde::Deserialize;
use std::time::Duration;

/// `settings:` of a `registry` component (none yet).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {}

struct RegistryComponent {
    addr: String,
    database_url: String,
}

pub fn validate(
    spec: &ComponentSpec,
    t: &Topology,
) -> Result<Box<dyn Component>, (String, String)> {
    let _: RegistrySettings = spec.settings()?;
    Ok(Box::new(RegistryComponent {
        addr: t.services.registry_addr.clone(),
        database_url: t.services.database_url.clone(),
    }))
}

fn failed(message: String) -> RuntimeError {
    RuntimeError::Component {
        component: "registry".into(),
        message,
        retryable: true,
    }
}

#[async_trait]
impl Component for RegistryComponent {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let name = ctx.spec.name.clone();
        let listener = bind(&self.addr).await?;
        let registry = {
            let mut tries = 0;
            loop {
                match pushflow_registry::connect(&self.database_url).await {
                    Ok(r) => break r,
                    Err(e) if tries < 30 && e.is_retryable() => {
                        tries += 1;
                        ctx.health.failing(&name, e.to_string());
                        tracing::warn!(error = %e, "registry cannot reach Postgres yet; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(failed(format!("connecting to Postgres: {e}"))),
                }
            }
        };
        ctx.health.ok(&name);
        ctx.watch(vec![Dependency::Postgres]);
        tracing::info!(addr = %self.addr, "schema registry listening");
        let router = registry.router().merge(admin_router(ctx.health.clone()));
        serve(listener, router, ctx.shutdown.clone()).await
    }
}
