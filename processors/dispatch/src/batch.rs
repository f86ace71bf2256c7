//! The internal batches topic (`dispatch.batches`): one record per slice of
//! a launched campaign's audience, keyed `<campaign_id>:<batch_no>` so one
//! campaign spreads over every partition and every instance of the group.
//! Avro in the Confluent wire format, schema `schemas/dispatch.batch.avsc`
//! registered under `dispatch.batches-value`.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use pushflow_runtime::codec::{wire, RegistryResolver, SchemaResolver};
use pushflow_schemas::catalogue::{Topic, DISPATCH_BATCHES};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::DispatchError;

/// The topic, from the catalogue's internal topics.
pub const TOPIC: Topic = DISPATCH_BATCHES;

/// The schema file's text.
pub const SCHEMA_TEXT: &str = TOPIC.schema_text;

fn schema() -> &'static Schema {
    TOPIC.schema()
}

/// One batch of a campaign's audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchBatch {
    /// Deterministic record id.
    pub event_id: String,
    /// Planning time, ms.
    pub occurred_at: i64,
    /// Store.
    pub store_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Position in the plan.
    pub batch_no: i32,
    /// `<campaign_id>:<batch_no>`.
    pub batch_key: String,
    /// Subscribers.
    pub subscriber_ids: Vec<String>,
    /// A throttled launch's batch: at most this many sends per minute for
    /// the campaign (sent by the paced loop, see [`crate::throttle`]).
    #[serde(default)]
    pub throttle_per_minute: Option<i32>,
    /// A throttled batch: the campaign's next send slot when it was
    /// released, ms.
    #[serde(default)]
    pub due_at: Option<i64>,
}

/// Encodes and decodes batches against the registry (ids cached).
pub struct BatchCodec {
    resolver: Arc<dyn SchemaResolver>,
    subject: String,
    id: RwLock<Option<u32>>,
    writers: RwLock<HashMap<u32, Arc<Schema>>>,
}

fn bad(m: impl std::fmt::Display) -> DispatchError {
    DispatchError::BadRecord(format!("dispatch batch: {m}"))
}

impl BatchCodec {
    /// A codec over the registry at `url`, for topic `topic`.
    pub fn for_registry(url: &str, topic: &str) -> Result<BatchCodec, DispatchError> {
        let r = RegistryResolver::new(url).map_err(|e| DispatchError::Config(e.to_string()))?;
        Ok(BatchCodec::new(Arc::new(r), topic))
    }

    /// A codec over `resolver`.
    pub fn new(resolver: Arc<dyn SchemaResolver>, topic: &str) -> BatchCodec {
        BatchCodec {
            resolver,
            subject: pushflow_schemas::catalogue::value_subject(topic),
            id: RwLock::new(None),
            writers: RwLock::new(HashMap::new()),
        }
    }

    /// Encodes a batch (registers the schema on first use).
    pub async fn encode(&self, b: &DispatchBatch) -> Result<Vec<u8>, DispatchError> {
        let cached = *self.id.read().unwrap();
        let id = match cached {
            Some(id) => id,
            None => {
                let id = self
                    .resolver
                    .register(&self.subject, SCHEMA_TEXT)
                    .await
                    .map_err(DispatchError::Codec)?;
                *self.id.write().unwrap() = Some(id);
                id
            }
        };
        let value = apache_avro::to_value(b)
            .and_then(|v| v.resolve(schema()))
            .map_err(bad)?;
        let body = GenericDatumWriter::builder(schema())
            .build()
            .map_err(bad)?
            .write_value_to_vec(value)
            .map_err(bad)?;
        Ok(wire::frame(id, &body))
    }

    /// Decodes a framed batch (resolving an older or newer writer schema).
    pub async fn decode(&self, bytes: &[u8]) -> Result<DispatchBatch, DispatchError> {
        let (id, mut body) = wire::split(bytes).map_err(DispatchError::Codec)?;
        let cached = self.writers.read().unwrap().get(&id).cloned();
        let writer = match cached {
            Some(w) => w,
            None => {
                let text = self
                    .resolver
                    .schema_text(id)
                    .await
                    .map_err(DispatchError::Codec)?;
                let w = Arc::new(Schema::parse_str(&text).map_err(bad)?);
                self.writers.write().unwrap().insert(id, w.clone());
                w
            }
        };
        let value: Value = GenericDatumReader::builder(&writer)
            .reader_schema(schema())
            .build()
            .map_err(bad)?
            .read_value(&mut body)
            .map_err(bad)?;
        apache_avro::from_value(&value).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushflow_runtime::codec::InMemoryResolver;

    #[tokio::test]
    async fn round_trips_and_refuses_garbage() {
        let codec = BatchCodec::new(Arc::new(InMemoryResolver::new()), TOPIC.name);
        let b = DispatchBatch {
            event_id: "e".into(),
            occurred_at: 1_767_225_600_000,
            store_id: "s".into(),
            campaign_id: "c".into(),
            batch_no: 3,
            batch_key: "c:3".into(),
            subscriber_ids: vec!["a".into(), "b".into()],
            throttle_per_minute: None,
            due_at: None,
        };
        let bytes = codec.encode(&b).await.unwrap();
        assert_eq!(codec.decode(&bytes).await.unwrap(), b);
        let throttled = DispatchBatch {
            throttle_per_minute: Some(240),
            due_at: Some(1_767_225_610_000),
            ..b.clone()
        };
        let bytes = codec.encode(&throttled).await.unwrap();
        assert_eq!(codec.decode(&bytes).await.unwrap(), throttled);
        assert!(codec.decode(b"nonsense").await.is_err());
        // A batch written before the throttle fields (the old schema)
        // decodes with them absent.
        let mut old: serde_json::Value = serde_json::from_str(SCHEMA_TEXT).unwrap();
        old["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["name"] != "throttle_per_minute" && f["name"] != "due_at");
        let old = Schema::parse_str(&old.to_string()).unwrap();
        let resolver = Arc::new(InMemoryResolver::new());
        let old_id = resolver
            .register(&TOPIC.subject(), &old.canonical_form())
            .await
            .unwrap();
        let value = apache_avro::to_value(&b).unwrap().resolve(&old).unwrap();
        let body = GenericDatumWriter::builder(&old)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        let reader = BatchCodec::new(resolver, TOPIC.name);
        let read = reader.decode(&wire::frame(old_id, &body)).await.unwrap();
        assert_eq!(read, b);
        assert!(!codec
            .decode(&bytes[..bytes.len() - 2])
            .await
            .unwrap_err()
            .is_retryable());
    }
}
