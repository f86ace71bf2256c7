//! The `analytics` component of `pushflow up` (type `analytics`): a pure
//! [`Kind::validate`] of its topology entry, then [`crate::run`] with the
//! topology's services.
//! Guarantee: see the crate doc (exactly once into Postgres).

use async_trait::async_trait;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::RuntimeError;

use crate::config::{AnalyticsSettings, Validated};
use crate::processor::{resolve_inputs, run, RunOptions};

/// A validated `analytics` component of the topology.
/// Its group and inputs are those of the entry (`ctx.spec` at run time).
#[derive(Debug)]
pub struct Analytics {
    settings: Validated,
}

impl Kind for Analytics {
    const TYPE: &'static str = "analytics";
    type Settings = AnalyticsSettings;

    fn validate(e: Entry<'_, AnalyticsSettings>) -> Result<Self, ConfigError> {
        e.spec.require_no_outputs("analytics", "Postgres")?;
        if e.spec.inputs.is_empty() {
            return Err(ConfigError::new(
                "inputs",
                "list the campaign.*, subscription.* and notification.dispatched/.failed topics to count",
            ));
        }
        resolve_inputs(&e.spec.inputs).map_err(|why| ConfigError::new("inputs", why))?;
        Ok(Analytics {
            settings: e.settings.validate()?,
        })
    }
}

#[async_trait]
impl Component for Analytics {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let (group, inputs) = (ctx.spec.group_id(), ctx.spec.inputs.clone());
        let opts = RunOptions::live(&ctx, group, inputs, self.settings)?;
        let summary = ctx
            .supervise(
                Dependency::processor(),
                run(opts, ctx.shutdown.clone()),
                |e| e.into_runtime(&ctx.spec.name),
            )
            .await?;
        tracing::info!(component = %ctx.spec.name, ?summary, "analytics stopped");
        Ok(())
    }
}
