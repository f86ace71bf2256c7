//! Dead letters: a record that cannot be decoded or validated goes to
//! `<topic>.dlq`, unchanged, with headers saying why and where it came from.
//!
//! Guarantee: [`DeadLetters::send`] returns after the broker acknowledged
//! the dead letter, so the caller may then commit past the bad record.

use super::{Producer, Record};
use crate::RuntimeError;

/// Header names on every dead letter.
pub mod headers {
    /// Why the record was refused (human-readable, says what to fix).
    pub const ERROR: &str = "pushflow.dlq.error";
    /// The component that refused it.
    pub const COMPONENT: &str = "pushflow.dlq.component";
    /// Source topic.
    pub const TOPIC: &str = "pushflow.dlq.source.topic";
    /// Source partition (decimal).
    pub const PARTITION: &str = "pushflow.dlq.source.partition";
    /// Source offset (decimal).
    pub const OFFSET: &str = "pushflow.dlq.source.offset";
}

/// Writes dead letters for one component.
#[derive(Clone)]
pub struct DeadLetters {
    producer: Producer,
    component: String,
}

impl DeadLetters {
    /// Dead letters of `component`, written with `producer`.
    pub fn new(producer: Producer, component: impl Into<String>) -> DeadLetters {
        DeadLetters {
            producer,
            component: component.into(),
        }
    }

    /// Sends `record` to `<record.topic>.dlq` with the reason.
    pub async fn send(&self, record: &Record, error: &str) -> Result<(), RuntimeError> {
        let dlq = pushflow_schemas::catalogue::dlq_topic(&record.topic);
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let mut hs: Vec<(&str, &[u8])> = record
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        hs.extend([
            (headers::ERROR, error.as_bytes()),
            (headers::COMPONENT, self.component.as_bytes()),
            (headers::TOPIC, record.topic.as_bytes()),
            (headers::PARTITION, partition.as_bytes()),
            (headers::OFFSET, offset.as_bytes()),
        ]);
        let payload = record.payload.as_deref().unwrap_or_default();
        self.producer
            .send(&dlq, record.key.as_deref(), payload, &hs)
            .await?;
        tracing::warn!(
            component = %self.component,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            error,
            "record sent to dead-letter topic {dlq}"
        );
        metrics::counter!(
            "pushflow_records_dlq_total",
            "component" => self.component.clone(),
            "topic" => record.topic.clone()
        )
        .increment(1);
        Ok(())
    }
}
