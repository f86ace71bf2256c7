//! The `aggregate` component of `pushflow up` (type `aggregate`): a pure
//! [`Kind::validate`] of its topology entry, then [`crate::run`] with the
//! topology's services.
//! Guarantee: see the crate doc (exactly once into Postgres).

use async_trait::async_trait;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::RuntimeError;

use crate::config::{AggregateSettings, Validated};
use crate::processor::{run, RunOptions};
use crate::tally::PingKind;

/// A validated `aggregate` component of the topology.
pub struct Aggregate {
    inputs: Vec<String>,
    group: String,
    settings: Validated,
}

impl Kind for Aggregate {
    const TYPE: &'static str = "aggregate";
    type Settings = AggregateSettings;

    fn validate(e: Entry<'_, AggregateSettings>) -> Result<Self, ConfigError> {
        let spec = e.spec;
        let settings = e.settings.validate_with(&e.topology.pings)?;
        if spec.inputs.is_empty() {
            return Err(ConfigError::new(
                "inputs",
                "list notification.delivered and notification.clicked",
            ));
        }
        if let Some(bad) = spec
            .inputs
            .iter()
            .find(|t| PingKind::for_topic(t).is_none())
        {
            return Err(ConfigError::new(
                "inputs",
                format!("{bad:?} is not a notification.delivered or notification.clicked topic"),
            ));
        }
        spec.require_no_outputs("aggregate", "Postgres")?;
        Ok(Aggregate {
            inputs: spec.inputs.clone(),
            group: spec.group_id(),
            settings,
        })
    }
}

#[async_trait]
impl Component for Aggregate {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let opts = RunOptions::live(&ctx, self.group, self.inputs, self.settings)?;
        ctx.supervise(
            Dependency::processor(),
            run(opts, ctx.shutdown.clone()),
            |e| e.into_runtime(&ctx.spec.name),
        )
        .await?;
        Ok(())
    }
}
