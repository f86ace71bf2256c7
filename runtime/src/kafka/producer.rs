//! The idempotent producer every component writes with.
//!
//! Guarantee: [`Producer::send`] returns only once the broker acknowledged
//! the record (`acks=all`, idempotence on, so a retry inside librdkafka
//! never duplicates); the returned partition and offset are the broker's.
//!
//! A [`Producer::transactional`] one also writes Kafka transactions: the
//! consumer loop ([`super::consumer::run_consumer_transactional`]) begins
//! one per batch and commits the handler's records together with the
//! consumed offsets, so a crash leaves either both or neither
//! (`read_committed` consumers, librdkafka's default, see only committed
//! records).

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use rdkafka::TopicPartitionList;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::RuntimeError;

/// This process's instance id in transactional ids: `PUSHFLOW_INSTANCE_ID`,
/// else the host name, and how many ids this process asked for before
/// (`host-0`, `host-1`, …), so each component instance of a process gets
/// its own. Two processes on one host must set distinct
/// `PUSHFLOW_INSTANCE_ID`s (the broker would fence one).
pub fn instance_id() -> String {
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if let Some(id) = std::env::var("PUSHFLOW_INSTANCE_ID")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return if n == 0 { id } else { format!("{id}-{n}") };
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{host}-{n}")
}

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
        Ok(Producer {
            inner: Self::config(brokers, passthrough, delivery_timeout).create()?,
        })
    }

    /// A transactional producer with `transactional_id`, which must be
    /// unique among running instances and should be the same for an
    /// instance's restart: starting aborts what a predecessor with the same
    /// id left open. A transaction left open by an instance that never
    /// comes back blocks `read_committed` readers of its partitions until
    /// the broker aborts it after `transaction.timeout.ms` (10 s unless the
    /// pass-through map says otherwise).
    pub async fn transactional(
        brokers: &str,
        passthrough: &BTreeMap<String, String>,
        delivery_timeout: Duration,
        transactional_id: &str,
    ) -> Result<Producer, RuntimeError> {
        let mut cfg = Self::config(brokers, &BTreeMap::new(), delivery_timeout);
        cfg.set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", "10000");
        for (k, v) in passthrough {
            cfg.set(k, v);
        }
        // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
        let txn_ms: u64 = cfg
            .get("transaction.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        if delivery_timeout.as_millis() as u64 > txn_ms {
            cfg.set("message.timeout.ms", txn_ms.to_string());
        }
        let inner: FutureProducer = cfg.create()?;
        let p = inner.clone();
        tokio::task::spawn_blocking(move || p.init_transactions(Duration::from_secs(60)))
            .await
            .map_err(|e| RuntimeError::Component {
                component: "producer".into(),
                message: format!("init_transactions panicked: {e}"),
                retryable: false,
            })??;
        Ok(Producer { inner })
    }

    fn config(
        brokers: &str,
        passthrough: &BTreeMap<String, String>,
        delivery_timeout: Duration,
    ) -> rdkafka::ClientConfig {
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
        cfg
    }

    /// Begins a transaction (transactional producers only).
    pub fn begin(&self) -> Result<(), RuntimeError> {
        self.inner.begin_transaction()?;
        Ok(())
    }

    /// Adds `offsets` (next offsets to read) of the consumer `group` to the
    /// open transaction and commits it. Blocking: call it off the runtime's
    /// worker threads ([`tokio::task::spawn_blocking`]).
    pub fn commit_with_offsets(
        &self,
        offsets: &TopicPartitionList,
        group: Option<&ConsumerGroupMetadata>,
        timeout: Duration,
    ) -> Result<(), RuntimeError> {
        if let Some(g) = group.filter(|_| offsets.count() > 0) {
            self.inner
                .send_offsets_to_transaction(offsets, g, timeout)?;
        }
        self.inner.commit_transaction(timeout)?;
        Ok(())
    }

    /// Aborts the open transaction (its records are never seen by
    /// `read_committed` readers). Blocking, like the commit.
    pub fn abort(&self, timeout: Duration) -> Result<(), RuntimeError> {
        self.inner.abort_transaction(timeout)?;
        Ok(())
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
