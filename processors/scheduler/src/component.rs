//! The `scheduler` component of `pushflow up` (type `scheduler`): a pure
//! [`Kind::validate`] of its topology entry, then [`Scheduler::run_until`].
//! Guarantee: see the crate doc (each scheduled campaign launched once).

use async_trait::async_trait;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::component::{Component, ConfigError, Context, Entry, Kind};
use pushflow_runtime::http::Health;
use pushflow_runtime::kafka::{DeadLetters, Producer};
use pushflow_runtime::probe::Dependency;
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{SchedulerSettings, Validated};
use crate::launcher::{self, Options, Topics};

/// A validated scheduler, ready to connect.
pub struct Scheduler {
    /// Component name.
    pub name: String,
    /// Checked settings.
    pub settings: Validated,
    /// Topic names.
    pub topics: Topics,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka pass-through.
    pub kafka: BTreeMap<String, String>,
    /// Postgres URL.
    pub database_url: String,
    /// Schema registry URL.
    pub registry_url: String,
    /// Group name: the launches' transactional id is `<group>-launcher`.
    pub group: String,
}

impl Kind for Scheduler {
    const TYPE: &'static str = "scheduler";
    type Settings = SchedulerSettings;

    fn validate(e: Entry<'_, SchedulerSettings>) -> Result<Self, ConfigError> {
        let (spec, t) = (e.spec, e.topology);
        let settings = e.settings.validate()?;
        let topics = Topics::default();
        let inputs = topics.inputs();
        spec.require_inputs("the scheduler", &inputs)?;
        if let Some(other) = spec.inputs.iter().find(|i| !inputs.contains(i)) {
            return Err(ConfigError::new(
                "inputs",
                format!("the scheduler reads only campaign.scheduled, campaign.cancelled and campaign.launched, not {other:?}"),
            ));
        }
        if spec.outputs != [topics.launched.clone()] {
            return Err(ConfigError::new(
                "outputs",
                format!(
                    "the scheduler writes {:?} only; set outputs to it",
                    topics.launched
                ),
            ));
        }
        let s = &t.services;
        Ok(Scheduler {
            name: spec.name.clone(),
            settings,
            topics,
            brokers: s.brokers.clone(),
            kafka: t.kafka.clone(),
            database_url: s.database_url.clone(),
            registry_url: s.registry_url.clone(),
            group: spec.group_id(),
        })
    }
}

impl Scheduler {
    /// Runs until `shutdown` is cancelled: stands by until it is the
    /// active instance, then reads, fires and records.
    pub async fn run_until(
        self,
        shutdown: CancellationToken,
        health: Option<Health>,
    ) -> Result<(), RuntimeError> {
        let name = self.name.clone();
        let codec = Codec::for_registry(&self.registry_url)?;
        let producer = Producer::new(&self.brokers, &self.kafka, Duration::from_secs(30))?;
        let opts = Options {
            dlq: DeadLetters::new(producer, self.name.clone()),
            codec: Arc::new(codec),
            name: self.name,
            settings: self.settings,
            topics: self.topics,
            brokers: self.brokers,
            kafka: self.kafka,
            database_url: self.database_url,
            group: self.group,
        };
        tracing::info!(component = %name, schema = %opts.settings.schema, inputs = ?opts.topics.inputs(), "scheduler starting");
        match launcher::run(&opts, shutdown, health.as_ref()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(h) = &health {
                    h.failing(&name, e.to_string());
                }
                Err(e.into_runtime(&name))
            }
        }
    }
}

#[async_trait]
impl Component for Scheduler {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        ctx.watch(Dependency::processor());
        (*self)
            .run_until(ctx.shutdown.clone(), Some(ctx.health.clone()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushflow_runtime::topology::Topology;

    #[test]
    fn validates_the_repository_entry_and_names_wrong_fields() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../topology.yaml");
        let t = Topology::load(&path).unwrap();
        let spec = t
            .component("scheduler")
            .expect("topology.yaml has a scheduler");
        assert!(pushflow_runtime::component::validate::<Scheduler>(spec, &t).is_ok());
        let mut bad = spec.clone();
        bad.inputs.retain(|i| i != "campaign.cancelled");
        assert_eq!(
            pushflow_runtime::component::validate::<Scheduler>(&bad, &t)
                .err()
                .unwrap()
                .field,
            "inputs"
        );
        let mut bad = spec.clone();
        bad.outputs.push("campaign.created".into());
        assert_eq!(
            pushflow_runtime::component::validate::<Scheduler>(&bad, &t)
                .err()
                .unwrap()
                .field,
            "outputs"
        );
        let mut bad = spec.clone();
        bad.settings = serde_yaml::from_str("max_sleep: forever").unwrap();
        assert_eq!(
            pushflow_runtime::component::validate::<Scheduler>(&bad, &t)
                .err()
                .unwrap()
                .field,
            "settings.max_sleep"
        );
    }
}
