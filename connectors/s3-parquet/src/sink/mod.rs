//! The `s3-parquet` component: every input topic into the Parquet lake.
//!
//! Guarantee (exactly once in the lake, at least once from Kafka): a
//! record's offset is committed only after the object holding it is
//! written (a PUT, or a completed multipart upload, both atomic). A crash
//! replays the uncommitted records; the replay skips what the lake already
//! holds (see [`writer`]), so the lake never has a duplicate row, a missing
//! row or a partial file; a second copy of an event a producer sent twice
//! (same `event_id`) is dropped too (see [`ids`]). A record that cannot be decoded goes to
//! `<topic>.dlq` and the sink goes on; a failing object store makes the
//! batch fail with a retryable error, which the consumer loop retries with
//! backoff, committing nothing it has not written.

pub mod config;
mod files;
mod ids;
pub mod writer;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use pushflow_runtime::codec::RegistryResolver;
use pushflow_runtime::component::{Component, ConfigError, Context, Kind};
use pushflow_runtime::kafka::{run_consumer, ConsumerSettings, DeadLetters, Producer};
use pushflow_runtime::probe::{Dependency, Probe};
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::RuntimeError;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Settings, SinkConfig};
pub use writer::{SinkHandler, Stats};

use crate::lake::Lake;

/// The lake's object store answers: a listing of the lake's root (an
/// empty listing is fine; a missing bucket or refused connection is not).
struct LakeProbe {
    lake: Lake,
}

#[async_trait]
impl Probe for LakeProbe {
    fn name(&self) -> &str {
        "object-store"
    }

    async fn check(&mut self) -> Result<(), String> {
        self.lake
            .store
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(|e| format!("object store {} unreachable: {e}", self.lake.url))
    }
}

/// The validated component.
pub struct S3ParquetSink {
    settings: Settings,
    topics: Vec<String>,
    /// The lake URL; `None`: the topology's `services.lake_url`.
    lake_url: Option<String>,
    /// Extra object-store options (S3 endpoint, keys) over the environment.
    lake_options: Vec<(String, String)>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for S3ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3ParquetSink({:?})", self.topics)
    }
}

impl S3ParquetSink {
    /// Checks the entry without I/O: settings, at least one input, every
    /// input a topic of the topology.
    fn checked(
        config: SinkConfig,
        spec: &ComponentSpec,
        topology: &Topology,
    ) -> Result<S3ParquetSink, ConfigError> {
        let settings = config.validate()?;
        if spec.inputs.is_empty() {
            return Err(ConfigError::new(
                "inputs",
                "list the topics to write to the lake",
            ));
        }
        for t in &spec.inputs {
            if topology.topic(t).is_none() {
                return Err(ConfigError::new(
                    "inputs",
                    format!("{t:?} is not a topic of the topology"),
                ));
            }
        }
        Ok(S3ParquetSink {
            settings,
            topics: spec.inputs.clone(),
            lake_url: None,
            lake_options: Vec::new(),
            stats: Arc::new(Stats::default()),
        })
    }

    /// A sink of `topics` into `lake_url` (tests, benchmarks, the crash child).
    pub fn new(settings: Settings, topics: Vec<String>, lake_url: &str) -> S3ParquetSink {
        S3ParquetSink {
            settings,
            topics,
            lake_url: Some(lake_url.to_string()),
            lake_options: Vec::new(),
            stats: Arc::new(Stats::default()),
        }
    }

    /// Adds object-store options (keys such as `aws_endpoint`,
    /// `aws_access_key_id`) over the `AWS_*` environment.
    pub fn with_lake_options(mut self, options: &[(&str, &str)]) -> S3ParquetSink {
        self.lake_options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// Counters of the running sink.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }
}

impl Kind for S3ParquetSink {
    const TYPE: &'static str = "s3-parquet";
    type Settings = SinkConfig;

    fn validate(
        config: SinkConfig,
        spec: &ComponentSpec,
        topology: &Topology,
    ) -> Result<S3ParquetSink, ConfigError> {
        S3ParquetSink::checked(config, spec, topology)
    }
}

#[async_trait]
impl Component for S3ParquetSink {
    async fn run(self: Box<Self>, ctx: Context) -> Result<(), RuntimeError> {
        let name = ctx.spec.name.clone();
        let services = &ctx.topology.services;
        let url = self
            .lake_url
            .clone()
            .unwrap_or_else(|| services.lake_url.clone());
        let options: Vec<(&str, &str)> = self
            .lake_options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let lake = Lake::open(&url, &options).map_err(|e| e.into_runtime(&name))?;
        let lake_for_probe = lake.clone();
        let resolver = Arc::new(RegistryResolver::new(&services.registry_url)?);
        let producer = Producer::new(
            &services.brokers,
            &ctx.topology.kafka,
            Duration::from_secs(30),
        )?;
        let dlq = DeadLetters::new(producer, name.clone());
        let mut handler = SinkHandler::new(&name, lake, self.settings.clone(), resolver, Some(dlq));
        handler.share_stats(self.stats.clone());
        let mut cs = ConsumerSettings::new(
            &name,
            &services.brokers,
            &ctx.spec.group_id(),
            self.topics.clone(),
        );
        cs.passthrough = ctx.topology.kafka.clone();
        cs.max_batch = self.settings.max_batch;
        cs.max_wait = Duration::from_millis(100);
        ctx.health.ok(&name);
        ctx.watch(vec![
            Dependency::Broker,
            Dependency::Registry,
            Dependency::Other(Box::new(LakeProbe {
                lake: lake_for_probe,
            })),
        ]);
        tracing::info!(component = %name, lake = %url, topics = ?self.topics, "writing the lake");
        run_consumer(&cs, &mut handler, ctx.shutdown.clone()).await
    }
}
