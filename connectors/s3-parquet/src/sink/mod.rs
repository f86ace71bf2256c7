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

mod component;
pub mod config;
mod files;
mod ids;
pub mod writer;

#[cfg(test)]
mod tests;

use pushflow_runtime::component::ConfigError;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use std::sync::Arc;

pub use config::{Settings, SinkConfig};
pub use writer::{SinkHandler, Stats};

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
