//! The `aggregate` component of `pushflow up`: a pure [`validate`] of its
//! topology entry, then [`crate::run`] with the topology's services.
//! Guarantee: see the crate doc (exactly once into Postgres).

use async_trait::async_trait;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::component::{Component, Context};
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::RuntimeError;
use std::sync::Arc;

use crate::config::{AggregateSettings, Validated};
use crate::core::PingKind;
use crate::processor::{run, RunOptions, StartAt};

/// A validated `aggregate` component of the topology.
pub struct Aggregate {
    name: String,
    inputs: Vec<String>,
    group: String,
    settings: Validated,
}

/// Checks an `aggregate` entry without I/O; the error is (field, message).
pub fn validate(
    spec: &ComponentSpec,
    _topology: &Topology,
) -> Result<Box<dyn Component>, (String, String)> {
    let settings: AggregateSettings = spec.settings()?;
    let settings = settings.validate()?;
    if spec.inputs.is_empty() {
        return Err((
            "inputs".into(),
            "list notification.delivered and notification.clicked".into(),
        ));
    }
    if let Some(bad) = spec
        .inputs
        .iter()
        .find(|t| PingKind::for_topic(t).is_none())
    {
        return Err((
            "inputs".into(),
            format!("{bad:?} is not a notification.delivered or notification.clicked topic"),
        ));
    }
    if !spec.outputs.is_empty() {
        return Err((
            "outputs".into(),
            "aggregate writes to Postgres only; remove `outputs`".into(),
        ));
    }
    Ok(Box::new(Aggregate {
        name: spec.name.clone(),
        inputs: spec.inputs.clone(),
        group: spec.group_id(),
        settings,
    }))
}

#[async_trait]
impl Component for Aggregate {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let name = self.name.clone();
        let services = &ctx.topology.services;
        let codec = Codec::for_registry(&services.registry_url)?;
        let opts = RunOptions {
            name: self.name,
            brokers: services.brokers.clone(),
            passthrough: ctx.topology.kafka.clone(),
            group: self.group,
            inputs: self.inputs,
            database_url: services.database_url.clone(),
            settings: self.settings,
            codec: Arc::new(codec),
            start: StartAt::Beginning,
            stop_at: None,
            progress: None,
        };
        ctx.health.ok(&name);
        ctx.watch(vec![
            Dependency::Broker,
            Dependency::Postgres,
            Dependency::Registry,
        ]);
        match run(opts, ctx.shutdown.clone()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                ctx.health.failing(&name, e.to_string());
                Err(e.into_runtime(&name))
            }
        }
    }
}
