//! The schema registry as a component of `pushflow up` (type `registry`):
//! serves the Confluent REST API, `/healthz` and `/metrics` on
//! `services.registry_addr`. It starts before the topology is applied,
//! since applying it registers the schemas.
//!
//! Guarantee: what it answered 200 to registering is committed in Postgres;
//! ids are never reused (see the crate doc).

use async_trait::async_trait;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::http::{admin_router, bind, serve};
use pushflow_runtime::probe::Dependency;

use pushflow_runtime::RuntimeError;
use std::time::Duration;

use crate::config::RegistrySettings;

/// A validated `registry` component.
pub struct RegistryComponent {
    addr: String,
    database_url: String,
}

impl Kind for RegistryComponent {
    const TYPE: &'static str = "registry";
    const SERVES_HTTP: bool = true;
    const STARTS_FIRST: bool = true;
    type Settings = RegistrySettings;

    fn validate(e: Entry<'_, RegistrySettings>) -> Result<Self, ConfigError> {
        let t = e.topology;
        Ok(RegistryComponent {
            addr: t.services.registry_addr.clone(),
            database_url: t.services.database_url.clone(),
        })
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
                match crate::connect(&self.database_url).await {
                    Ok(r) => break r,
                    Err(e) if tries < 30 && e.is_retryable() => {
                        tries += 1;
                        ctx.health.failing(&name, e.to_string());
                        tracing::warn!(error = %e, "registry cannot reach Postgres yet; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        return Err(RuntimeError::Component {
                            component: name,
                            message: format!("connecting to Postgres: {e}"),
                            retryable: e.is_retryable(),
                        })
                    }
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
