//! Records a component emits at a time of its own choosing (a scheduled
//! launch, a throttled batch), exactly once: an [`Outbox`] to write them
//! and a [`Tail`] to read its own output back on start.
//!
//! Guarantee (exactly once, with the caller's help): an [`Outbox`] is a
//! transactional producer with a FIXED `transactional.id` shared by every
//! instance of the component, so opening one fences any older producer
//! with that id (a zombie's later commit fails) and aborts the transaction
//! it left open. What it emits is in one Kafka transaction per
//! [`Outbox::emit`]: all of it or none is ever seen by `read_committed`
//! readers. The caller records in its own store (Postgres) that it emitted,
//! after the commit; a crash between the Kafka commit and that record is
//! recovered by reading the output topic back with a [`Tail`], from a
//! position the caller stored, up to the high watermark taken AFTER
//! [`Outbox::open`] ([`Tail::high_watermarks`], [`Tail::reached`]): every
//! committed record of a predecessor is below it, every aborted one is
//! skipped (`read_committed`), so once the tail reached it the caller knows
//! everything that was ever emitted, and may emit what is still due.
//!
//! Only one instance may emit at a time (the fixed id fences the others);
//! callers elect it, e.g. with a Postgres advisory lock.

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::{Delivery, Producer, Record};
use crate::RuntimeError;

/// One record to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Topic.
    pub topic: String,
    /// Key (UTF-8 id).
    pub key: String,
    /// Value bytes (Confluent wire format).
    pub payload: Vec<u8>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A topic partition.
pub type Part = (String, i32);

/// A transactional producer with a fixed id (see the module doc).
#[derive(Clone)]
pub struct Outbox {
    producer: Producer,
    id: String,
}

/// How long to wait for the broker in a commit or abort.
const TXN_WAIT: Duration = Duration::from_secs(30);

impl Outbox {
    /// Opens the outbox `transactional_id`: fences every older producer
    /// with that id and aborts what it left open. The transaction timeout
    /// is 10 s unless the pass-through map says otherwise: a transaction
    /// left open by a process that never comes back holds `read_committed`
    /// readers of its partitions back for that long.
    pub async fn open(
        brokers: &str,
        passthrough: &BTreeMap<String, String>,
        transactional_id: &str,
    ) -> Result<Outbox, RuntimeError> {
        let producer = Producer::transactional(
            brokers,
            passthrough,
            Duration::from_secs(10),
            transactional_id,
        )
        .await?;
        tracing::info!(
            transactional_id,
            "outbox open: older producers with this id are fenced"
        );
        Ok(Outbox {
            producer,
            id: transactional_id.to_string(),
        })
    }

    /// Its transactional id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Begins a transaction and sends `records` into it, waiting for every
    /// acknowledgement; nothing is visible until [`Outbox::commit`]. On a
    /// failure the transaction is aborted and the error returned.
    pub async fn send(&self, records: &[Outgoing]) -> Result<Vec<Delivery>, RuntimeError> {
        self.producer.begin()?;
        let sends = records.iter().map(|r| {
            let headers: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            async move {
                self.producer
                    .send(&r.topic, Some(r.key.as_bytes()), &r.payload, &headers)
                    .await
            }
        });
        let mut out = Vec::with_capacity(records.len());
        let mut failed = None;
        for r in futures::future::join_all(sends).await {
            match r {
                Ok(d) => out.push(d),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            self.abort().await;
            return Err(e);
        }
        Ok(out)
    }

    /// Commits the open transaction. An error means it may or may not have
    /// committed: open the outbox again and read the output back.
    pub async fn commit(&self) -> Result<(), RuntimeError> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            p.commit_with_offsets(&TopicPartitionList::new(), None, TXN_WAIT)
        })
        .await
        .map_err(|e| RuntimeError::Component {
            component: "outbox".into(),
            message: format!("transaction commit panicked: {e}"),
            retryable: true,
        })?
    }

    /// Aborts the open transaction, if any (best effort: an abort that
    /// fails leaves it to the next [`Outbox::open`] or the broker's
    /// transaction timeout; either way it never commits).
    pub async fn abort(&self) {
        let p = self.producer.clone();
        match tokio::task::spawn_blocking(move || p.abort(TXN_WAIT)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(outbox = %self.id, error = %e, "abort did not complete"),
            Err(e) => tracing::warn!(outbox = %self.id, error = %e, "abort panicked"),
        }
    }

    /// [`Outbox::send`] then [`Outbox::commit`]: `records` in one
    /// transaction; returns where the broker stored them once committed.
    pub async fn emit(&self, records: &[Outgoing]) -> Result<Vec<Delivery>, RuntimeError> {
        let d = self.send(records).await?;
        self.commit().await?;
        Ok(d)
    }
}

/// Where a [`Tail`] starts a partition it has no stored position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// At the log start.
    Beginning,
    /// At the high watermark (nothing before it is of interest).
    End,
}

/// A `read_committed` reader of every partition of some topics, from given
/// positions (no consumer group: the caller stores positions itself).
pub struct Tail {
    consumer: StreamConsumer,
    meta: Arc<BaseConsumer>,
    topics: Vec<String>,
    /// Per partition: the next offset known to be read past (the start,
    /// the last record handed out + 1, or the consumer's position, which
    /// also moves past transaction markers and aborted records).
    read: HashMap<Part, i64>,
}

/// Every partition of `topics` with its (low, high) watermarks. Blocking.
fn partitions(
    meta: &BaseConsumer,
    topics: &[String],
) -> Result<BTreeMap<Part, (i64, i64)>, RuntimeError> {
    let mut out = BTreeMap::new();
    for topic in topics {
        let md = meta.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in md.topics() {
            if let Some(e) = t.error() {
                return Err(RuntimeError::Component {
                    component: "tail".into(),
                    message: format!("topic {topic}: {e:?}"),
                    retryable: true,
                });
            }
            for p in t.partitions() {
                let w = super::admin::watermarks(meta, topic, p.id())?;
                out.insert((topic.clone(), p.id()), w);
            }
        }
    }
    Ok(out)
}

/// The high watermark of every partition of `topics` now (of the log, not
/// the last stable offset): everything acknowledged so far, committed,
/// aborted or still open, is below it.
pub async fn high_watermarks(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    topics: &[String],
) -> Result<HashMap<Part, i64>, RuntimeError> {
    let mut cfg = super::client_config(brokers, passthrough);
    cfg.set("isolation.level", "read_uncommitted");
    let meta: BaseConsumer = cfg.create()?;
    let topics = topics.to_vec();
    let parts = tokio::task::spawn_blocking(move || partitions(&meta, &topics))
        .await
        .map_err(|e| RuntimeError::Component {
            component: "outbox".into(),
            message: format!("watermark task panicked: {e}"),
            retryable: true,
        })??;
    Ok(parts.into_iter().map(|(p, (_, high))| (p, high)).collect())
}

impl Tail {
    /// Assigns every partition of `topics`, each from its position in
    /// `from` (the next offset to read), else as `absent` says. A stored
    /// position below the log start (retention) starts at the log start.
    pub async fn open(
        brokers: &str,
        passthrough: &BTreeMap<String, String>,
        topics: &[String],
        from: &HashMap<Part, i64>,
        absent: Absent,
    ) -> Result<Tail, RuntimeError> {
        let mut cfg = super::client_config(brokers, passthrough);
        // Watermarks as the log has them: a read_committed client is told
        // the last stable offset instead, which an open transaction holds
        // back.
        cfg.set("isolation.level", "read_uncommitted");
        let meta: Arc<BaseConsumer> = Arc::new(cfg.create()?);
        let m = meta.clone();
        let list = topics.to_vec();
        let parts = tokio::task::spawn_blocking(move || partitions(&m, &list))
            .await
            .map_err(|e| RuntimeError::Component {
                component: "tail".into(),
                message: format!("metadata task panicked: {e}"),
                retryable: true,
            })??;
        let mut cfg = super::consumer_config(brokers, "pushflow-tail-unused");
        cfg.set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("isolation.level", "read_committed");
        for (k, v) in passthrough {
            cfg.set(k, v);
        }
        let consumer: StreamConsumer = cfg.create()?;
        let mut tpl = TopicPartitionList::new();
        let mut read = HashMap::new();
        for (part, (low, high)) in &parts {
            let start = match (from.get(part), absent) {
                (Some(o), _) => (*o).max(*low),
                (None, Absent::Beginning) => *low,
                (None, Absent::End) => *high,
            };
            tpl.add_partition_offset(&part.0, part.1, Offset::Offset(start))?;
            read.insert(part.clone(), start);
        }
        consumer.assign(&tpl)?;
        Ok(Tail {
            consumer,
            meta,
            topics: topics.to_vec(),
            read,
        })
    }

    /// The partitions read.
    pub fn partitions(&self) -> Vec<Part> {
        let mut p: Vec<Part> = self.read.keys().cloned().collect();
        p.sort();
        p
    }

    /// The high watermark of every partition now: everything acknowledged
    /// so far (committed, aborted or still open) is below it.
    pub async fn high_watermarks(&self) -> Result<HashMap<Part, i64>, RuntimeError> {
        let m = self.meta.clone();
        let topics = self.topics.clone();
        let parts = tokio::task::spawn_blocking(move || partitions(&m, &topics))
            .await
            .map_err(|e| RuntimeError::Component {
                component: "tail".into(),
                message: format!("watermark task panicked: {e}"),
                retryable: true,
            })??;
        Ok(parts.into_iter().map(|(p, (_, high))| (p, high)).collect())
    }

    fn note_positions(&mut self) {
        let Ok(at) = self.consumer.position() else {
            return;
        };
        for e in at.elements() {
            if let Offset::Offset(o) = e.offset() {
                let k = (e.topic().to_string(), e.partition());
                if let Some(r) = self.read.get_mut(&k) {
                    *r = (*r).max(o);
                }
            }
        }
    }

    /// How far each partition is read (next offset).
    pub fn positions(&mut self) -> HashMap<Part, i64> {
        self.note_positions();
        self.read.clone()
    }

    /// The partitions not yet read up to `targets` (e.g. high watermarks);
    /// empty once every one is. A partition the tail does not read (one
    /// added to the topic since it opened) counts as not reached.
    pub fn behind(&mut self, targets: &HashMap<Part, i64>) -> Vec<(Part, i64, i64)> {
        self.note_positions();
        let mut out: Vec<(Part, i64, i64)> = targets
            .iter()
            .filter_map(|(p, want)| {
                let at = self.read.get(p).copied().unwrap_or(-1);
                (at < *want).then(|| (p.clone(), at, *want))
            })
            .collect();
        out.sort();
        out
    }

    /// Whether every partition is read up to `targets`.
    pub fn reached(&mut self, targets: &HashMap<Part, i64>) -> bool {
        self.behind(targets).is_empty()
    }

    /// The next records: waits up to `wait` for one, then takes what
    /// follows at once, up to `max`. Empty when nothing came. A consume
    /// error is logged and yields what was gathered (the client retries on
    /// its own).
    pub async fn next_batch(&mut self, max: usize, wait: Duration) -> Vec<Record> {
        let mut batch = Vec::new();
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => {
                self.note_positions();
                return batch;
            }
            Ok(Err(e)) => {
                tracing::warn!(topics = ?self.topics, error = %e, "tail: consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                return batch;
            }
            Ok(Ok(m)) => Record::from_message(&m),
        };
        batch.push(first);
        while batch.len() < max.max(1) {
            match tokio::time::timeout(Duration::from_millis(10), self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(Record::from_message(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(topics = ?self.topics, error = %e, "tail: consume error");
                    break;
                }
                Err(_) => break,
            }
        }
        for r in &batch {
            let k = (r.topic.clone(), r.partition);
            let e = self.read.entry(k).or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
        }
        self.note_positions();
        batch
    }
}
