//! The idempotent producer every component writes with.
//!
//! Guarantee: [`Producer::send`] returns only once the broker acknowledged
//! the record (`acks=all`, idempotence on, so a retry inside librdkafka
//! never duplicates); the returned partition and offset are the broker's.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::RuntimeError;

/// Where the broker stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An idempotent producer (cheap to clone).
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
}

impl Producer {
    /// Connects to `brokers`. `delivery_timeout` bounds how long a send may
    /// wait for the broker before it fails.
    pub fn new(
        brokers: &str,
        passthrough: &BTreeMap<String, String>,
        delivery_timeout: Duration,
    ) -> Result<Producer, RuntimeError> {
        let mut cfg = super::client_config(brokers, &BTreeMap::new());
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("compression.type", "lz4")
            .set(
                "message.timeout.ms",
                delivery_timeout.as_millis().max(1).to_string(),
            );
        for (k, v) in passthrough {
            cfg.set(k, v);
        }
        Ok(Producer {
            inner: cfg.create()?,
        })
    }

    /// Sends one record and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<Delivery, RuntimeError> {
        let mut h = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic)
            .payload(payload)
            .headers(h);
        if let Some(k) = key {
            rec = rec.key(k);
        }
        let d = self
            .inner
            .send(rec, Timeout::Never)
            .await
            .map_err(|(e, _)| RuntimeError::Kafka(e))?;
        metrics::counter!("pushflow_produced_total", "topic" => topic.to_string()).increment(1);
        Ok(Delivery {
            partition: d.partition,
            offset: d.offset,
        })
    }

    /// Waits until every record in flight is acknowledged.
    pub fn flush(&self, timeout: Duration) -> Result<(), RuntimeError> {
        self.inner.flush(timeout)?;
        Ok(())
    }
}
