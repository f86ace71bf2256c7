//! The consumer loop every Kafka-reading component runs.
//!
//! Guarantee (at least once): an offset is committed only after the
//! handler said the record's effect is durable ([`Durable`]). A crash
//! between the effect and the commit replays the record on restart; a
//! shutdown (Ctrl-C / SIGTERM) finishes the batch in hand, lets the handler
//! flush ([`Handler::close`]) and commits synchronously, so a clean stop
//! leaves no processed-but-uncommitted record.
//!
//! Partition assignments and revocations reach the handler before the next
//! batch; records of revoked partitions still in hand are dropped (their new
//! owner reads them from the last commit). A record is handed once per
//! assignment: when a partition is revoked and assigned back to the same
//! member, librdkafka fetches it again from its committed offset, and the
//! second copies of records handled meanwhile are dropped. A handler that keeps its own
//! offsets (the aggregate keeps them in Postgres) returns seek positions from
//! [`Handler::assigned`].
//!
//! A member without partitions (more members than partitions) simply
//! waits: it never leaves and rejoins on its own, since on Kafka every
//! join makes the whole group rebalance and pauses every working member.

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::{PartitionKey, Producer};
use crate::RuntimeError;

/// A record as the handler sees it (owned copies of key, value, headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub payload: Option<Vec<u8>>,
    /// Broker or producer timestamp, ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A position to commit or seek to: the NEXT offset to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to read.
    pub next_offset: i64,
}

/// What the handler made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durable {
    /// Every record of the batch just processed.
    All,
    /// Up to these positions (a buffering sink's flushed files).
    UpTo(Vec<Position>),
    /// Nothing new.
    Nothing,
}

/// A component's side of the loop. Only `process` is required.
#[async_trait]
pub trait Handler: Send {
    /// Partitions were assigned; return positions to seek to (empty: resume
    /// from the group's committed offsets).
    async fn assigned(
        &mut self,
        _partitions: &[PartitionKey],
    ) -> Result<Vec<Position>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Partitions were revoked: drop their state.
    async fn revoked(&mut self, _partitions: &[PartitionKey]) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Processes a batch (in offset order per partition). A retryable error
    /// makes the loop wait and hand the same batch again; a bad record
    /// should go to the dead-letter topic instead of failing the batch.
    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError>;

    /// Called about once per `tick` when idle or between batches (idle
    /// flushes of buffering sinks).
    async fn tick(&mut self) -> Result<Durable, RuntimeError> {
        Ok(Durable::Nothing)
    }

    /// Shutdown: flush what can be flushed.
    async fn close(&mut self) -> Result<Durable, RuntimeError> {
        Ok(Durable::Nothing)
    }

    /// Positions to read again from, polled by the loop after every
    /// `process` and `tick` (empty by default). A handler that keeps its
    /// own offsets and found its state of a partition behind the stored one
    /// (a fenced commit: another instance owned the partition meanwhile)
    /// reloads that state and returns where it now stands; the loop seeks
    /// there and hands every record from that position again, including
    /// those it handed before (see [`Handler::assigned`] for the seek
    /// rules).
    fn take_seeks(&mut self) -> Vec<Position> {
        Vec::new()
    }
}

/// How the loop consumes.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Component name (metrics label, logs).
    pub component: String,
    /// Bootstrap servers.
    pub brokers: String,
    /// Consumer group.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// librdkafka pass-through properties.
    pub passthrough: BTreeMap<String, String>,
    /// Largest batch handed to the handler.
    pub max_batch: usize,
    /// How long to wait for a batch to fill once it has a record.
    pub max_wait: Duration,
    /// Interval of [`Handler::tick`].
    pub tick: Duration,
}

impl ConsumerSettings {
    /// With the topology's librdkafka pass-through and batches of up to
    /// `max_batch` records.
    pub fn with(mut self, passthrough: &BTreeMap<String, String>, max_batch: usize) -> Self {
        self.passthrough = passthrough.clone();
        self.max_batch = max_batch;
        self
    }

    /// Settings with defaults: batches of up to 1000 records, 50 ms wait,
    /// 1 s tick.
    pub fn new(component: &str, brokers: &str, group_id: &str, topics: Vec<String>) -> Self {
        ConsumerSettings {
            component: component.to_string(),
            brokers: brokers.to_string(),
            group_id: group_id.to_string(),
            topics,
            passthrough: BTreeMap::new(),
            max_batch: 1000,
            max_wait: Duration::from_millis(50),
            tick: Duration::from_secs(1),
        }
    }
}

enum RebalanceEvent {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

struct LoopContext {
    events: mpsc::Sender<RebalanceEvent>,
}

fn list(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for LoopContext {}

impl ConsumerContext for LoopContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let _ = self.events.send(RebalanceEvent::Revoked(list(tpl)));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let _ = self.events.send(RebalanceEvent::Assigned(list(tpl)));
        }
    }
}

impl Record {
    /// An owned copy of a message as received from rdkafka.
    pub fn from_message<M: Message>(m: &M) -> Record {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers,
        }
    }
}

/// Per topic and partition: the offset after the last record handled.
type Handed = HashMap<String, HashMap<i32, i64>>;

/// Per record of `batch`: false for one below its partition's `handed`
/// offset or repeating a record earlier in `batch`. Looks up by borrowed
/// names: this runs on every record of every batch.
fn not_yet_handed(handed: &Handed, batch: &[Record]) -> Vec<bool> {
    let mut seen: HashSet<(&str, i32, i64)> = HashSet::with_capacity(batch.len());
    batch
        .iter()
        .map(|r| {
            let done = handed
                .get(r.topic.as_str())
                .and_then(|parts| parts.get(&r.partition))
                .is_some_and(|next| r.offset < *next);
            let first = seen.insert((r.topic.as_str(), r.partition, r.offset));
            !done && first
        })
        .collect()
}

struct Loop<'a> {
    settings: &'a ConsumerSettings,
    consumer: StreamConsumer<LoopContext>,
    events: mpsc::Receiver<RebalanceEvent>,
    /// Partitions assigned, by topic (looked up by `&str`: this runs on
    /// every record).
    owned: HashMap<String, HashSet<i32>>,
    /// Durable positions not yet committed.
    pending: HashMap<(String, i32), i64>,
    /// Positions the handler asked for, and whether the seek took effect;
    /// records below them are dropped until one at or past them arrives.
    seeks: HashMap<(String, i32), (i64, bool)>,
    /// Wait before handing an aborted transaction's batch again.
    backoff: Duration,
    /// Per owned partition: the offset after the last record handled
    /// (and, in a transaction, committed) since it was assigned. A record
    /// below it is a second copy: librdkafka fetches a partition revoked
    /// and assigned again to this member from its committed offset, while a
    /// copy fetched before the revocation may still be handed and
    /// committed; the refetched copy is dropped ([`Self::skip_handed`]).
    handed: Handed,
}

impl Loop<'_> {
    fn owns(&self, topic: &str, partition: i32) -> bool {
        self.owned
            .get(topic)
            .is_some_and(|parts| parts.contains(&partition))
    }

    async fn apply_events<H: Handler>(&mut self, handler: &mut H) -> Result<(), RuntimeError> {
        while let Ok(ev) = self.events.try_recv() {
            match ev {
                RebalanceEvent::Assigned(parts) => {
                    tracing::info!(component = %self.settings.component, partitions = ?parts, "partitions assigned");
                    for p in &parts {
                        self.owned.entry(p.0.clone()).or_default().insert(p.1);
                    }
                    for pos in handler.assigned(&PartitionKey::list(&parts)).await? {
                        tracing::info!(topic = %pos.topic, partition = pos.partition, offset = pos.next_offset, "resuming from the stored position");
                        self.seeks
                            .insert((pos.topic.clone(), pos.partition), (pos.next_offset, false));
                    }
                    self.seek_pending();
                }
                RebalanceEvent::Revoked(parts) => {
                    tracing::info!(component = %self.settings.component, partitions = ?parts, "partitions revoked");
                    for p in &parts {
                        if let Some(parts) = self.owned.get_mut(&p.0) {
                            parts.remove(&p.1);
                        }
                        self.pending.remove(p);
                        self.seeks.remove(p);
                        if let Some(parts) = self.handed.get_mut(&p.0) {
                            parts.remove(&p.1);
                        }
                    }
                    handler.revoked(&PartitionKey::list(&parts)).await?;
                }
            }
        }
        Ok(())
    }

    /// Applies the positions a handler asked to read again from
    /// ([`Handler::take_seeks`]): for each owned partition, the seek is
    /// queued, and the record of what was handed and is pending commit is
    /// forgotten (the records from there on are handed again, not dropped
    /// as second copies). Positions of partitions not owned are ignored.
    fn request_seeks(&mut self, positions: Vec<Position>) {
        if positions.is_empty() {
            return;
        }
        for pos in positions {
            let key = (pos.topic.clone(), pos.partition);
            if !self.owns(&key.0, key.1) {
                continue;
            }
            tracing::info!(component = %self.settings.component, topic = %pos.topic, partition = pos.partition, offset = pos.next_offset, "reading again from the handler's position");
            self.pending.remove(&key);
            if let Some(parts) = self.handed.get_mut(&pos.topic) {
                parts.remove(&pos.partition);
            }
            self.seeks.insert(key, (pos.next_offset, false));
        }
        self.seek_pending();
    }

    /// Seeks partitions to the positions their handler asked for. A
    /// partition assigned a moment ago cannot be sought yet (librdkafka:
    /// "Erroneous state" until its fetcher starts), so a failed seek is
    /// tried again at every turn of the loop; records below the position
    /// are dropped until one at or past it arrives ([`Self::skip_sought`]),
    /// also those fetched before the seek took effect.
    fn seek_pending(&mut self) {
        for ((topic, partition), (offset, sought)) in self.seeks.iter_mut().filter(|(_, s)| !s.1) {
            match self.consumer.seek(
                topic,
                *partition,
                Offset::Offset(*offset),
                Duration::from_secs(10),
            ) {
                Ok(()) => *sought = true,
                Err(e) => {
                    tracing::debug!(topic = %topic, partition, offset, error = %e, "seek not possible yet; trying again")
                }
            }
        }
    }

    /// Drops records already handled: below [`Self::handed`], or a second
    /// copy of a record earlier in the same batch.
    fn skip_handed(&self, batch: &mut Vec<Record>) {
        let keep = not_yet_handed(&self.handed, batch);
        let dropped = keep.iter().filter(|k| !**k).count();
        if dropped > 0 {
            tracing::info!(component = %self.settings.component, dropped,
                "dropped second copies of records already handled (refetched after a partition came back)");
            let mut k = keep.into_iter();
            batch.retain(|_| k.next().unwrap_or(true));
        }
    }

    /// Marks `batch` handled (see [`Self::handed`]).
    fn mark_handed(&mut self, batch: &[Record]) {
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        for r in batch {
            let e = next.entry((r.topic.as_str(), r.partition)).or_insert(0);
            *e = (*e).max(r.offset + 1);
        }
        for ((topic, partition), next) in next {
            if self.owns(topic, partition) {
                let e = self
                    .handed
                    .entry(topic.to_string())
                    .or_default()
                    .entry(partition)
                    .or_insert(next);
                *e = (*e).max(next);
            }
        }
    }

    /// Drops records below a requested position; a record at or past it
    /// ends the request.
    fn skip_sought(&mut self, batch: &mut Vec<Record>) {
        if self.seeks.is_empty() {
            return;
        }
        batch.retain(|r| {
            let key = (r.topic.clone(), r.partition);
            match self.seeks.get(&key) {
                Some((at, _)) if r.offset < *at => false,
                Some(_) => {
                    self.seeks.remove(&key);
                    true
                }
                None => true,
            }
        });
    }

    fn note(&mut self, durable: Durable, batch: &[Record]) {
        let positions: Vec<Position> = match durable {
            Durable::Nothing => return,
            Durable::UpTo(p) => p,
            Durable::All => {
                let mut max: HashMap<(String, i32), i64> = HashMap::new();
                for r in batch {
                    let e = max
                        .entry((r.topic.clone(), r.partition))
                        .or_insert(r.offset);
                    *e = (*e).max(r.offset);
                }
                max.into_iter()
                    .map(|((topic, partition), o)| Position {
                        topic,
                        partition,
                        next_offset: o + 1,
                    })
                    .collect()
            }
        };
        for p in positions {
            let key = (p.topic, p.partition);
            if self.owns(&key.0, key.1) {
                let e = self.pending.entry(key).or_insert(p.next_offset);
                *e = (*e).max(p.next_offset);
            }
        }
    }

    fn commit(&mut self, mode: CommitMode) {
        if self.pending.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &self.pending {
            if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
                continue;
            }
        }
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => self.pending.clear(),
            Err(e) => {
                tracing::warn!(component = %self.settings.component, error = %e, "offset commit failed; will retry")
            }
        }
    }

    async fn next_batch(&mut self, shutdown: &CancellationToken) -> Option<Vec<Record>> {
        let mut batch = Vec::new();
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            m = self.consumer.recv() => m,
            _ = tokio::time::sleep(self.settings.tick) => return Some(batch),
        };
        match first {
            Ok(m) => batch.push(Record::from_message(&m)),
            Err(e) => {
                tracing::warn!(component = %self.settings.component, error = %e, "consume error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Some(batch);
            }
        }
        let deadline = Instant::now() + self.settings.max_wait;
        while batch.len() < self.settings.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(Record::from_message(&m)),
                Ok(Err(e)) => {
                    tracing::warn!(component = %self.settings.component, error = %e, "consume error");
                    break;
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }
}

/// Runs `handler` over `settings.topics` until `shutdown` is cancelled,
/// committing offsets to the group once the handler says they are durable.
///
/// Returns an error only for what retrying cannot fix (a handler error that
/// is not retryable, an invalid configuration).
pub async fn run_consumer<H: Handler>(
    settings: &ConsumerSettings,
    handler: &mut H,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    run(settings, handler, None, shutdown).await
}

/// As [`run_consumer`], with every batch in one Kafka transaction of
/// `producer` (a [`Producer::transactional`]): what the handler produces
/// through it and the batch's consumed offsets commit together. A batch
/// whose handler fails, or whose transaction cannot commit, is aborted
/// (its records never reach `read_committed` readers), the partitions are
/// rewound to the batch's first offsets and it is fetched and handed again
/// after a backoff. `tick` and `close` run in transactions of their own.
pub async fn run_consumer_transactional<H: Handler>(
    settings: &ConsumerSettings,
    handler: &mut H,
    producer: &Producer,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    run(settings, handler, Some(producer), shutdown).await
}

async fn run<H: Handler>(
    settings: &ConsumerSettings,
    handler: &mut H,
    txn: Option<&Producer>,
    shutdown: CancellationToken,
) -> Result<(), RuntimeError> {
    let (tx, rx) = mpsc::channel();
    let mut cfg = super::consumer_config(&settings.brokers, &settings.group_id);
    cfg.set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    for (k, v) in &settings.passthrough {
        cfg.set(k, v);
    }
    let consumer: StreamConsumer<LoopContext> =
        cfg.create_with_context(LoopContext { events: tx })?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    let mut lp = Loop {
        settings,
        consumer,
        events: rx,
        owned: HashMap::new(),
        pending: HashMap::new(),
        seeks: HashMap::new(),
        backoff: Duration::from_millis(100),
        handed: HashMap::new(),
    };
    let component = settings.component.clone();
    let mut last_tick = Instant::now();
    while let Some(mut batch) = lp.next_batch(&shutdown).await {
        lp.apply_events(handler).await?;
        batch.retain(|r| lp.owns(&r.topic, r.partition));
        lp.skip_sought(&mut batch);
        lp.skip_handed(&mut batch);
        lp.seek_pending();
        if !batch.is_empty() {
            let started = Instant::now();
            let n = batch.len() as u64;
            let done = match txn {
                None => {
                    let durable =
                        process_with_retry(handler, &batch, &shutdown, &component).await?;
                    let handled = durable.is_some();
                    if let Some(d) = durable {
                        lp.note(d, &batch);
                    }
                    if handled {
                        lp.mark_handed(&batch);
                    }
                    lp.request_seeks(handler.take_seeks());
                    handled
                }
                Some(p) => {
                    lp.transact(p, handler, Step::Batch(&batch), &shutdown)
                        .await?
                }
            };
            if done {
                if txn.is_some() {
                    lp.mark_handed(&batch);
                }
                metrics::counter!("pushflow_records_in_total", "component" => component.clone())
                    .increment(n);
                metrics::histogram!("pushflow_batch_duration_seconds", "component" => component.clone())
                    .record(started.elapsed().as_secs_f64());
            }
        }
        if last_tick.elapsed() >= settings.tick {
            last_tick = Instant::now();
            match txn {
                None => {
                    let d = handler.tick().await?;
                    lp.note(d, &[]);
                    lp.request_seeks(handler.take_seeks());
                }
                Some(p) => {
                    lp.transact(p, handler, Step::Tick, &shutdown).await?;
                }
            }
        }
        if txn.is_none() {
            lp.commit(CommitMode::Async);
        }
    }
    lp.apply_events(handler).await?;
    match txn {
        None => {
            let d = handler.close().await?;
            lp.note(d, &[]);
            lp.commit(CommitMode::Sync);
        }
        Some(p) => {
            lp.transact(p, handler, Step::Close, &shutdown).await?;
        }
    }
    tracing::info!(component = %component, "consumer stopped; offsets committed");
    Ok(())
}

/// What [`Loop::transact`] hands the handler.
enum Step<'a> {
    Batch(&'a [Record]),
    Tick,
    Close,
}

impl Loop<'_> {
    /// One step inside one transaction (see [`run_consumer_transactional`]).
    /// `Ok(false)`: the transaction was aborted and the batch will come
    /// again.
    async fn transact<H: Handler>(
        &mut self,
        producer: &Producer,
        handler: &mut H,
        step: Step<'_>,
        shutdown: &CancellationToken,
    ) -> Result<bool, RuntimeError> {
        let component = self.settings.component.clone();
        producer.begin()?;
        let handled = match &step {
            Step::Batch(b) => handler.process(b).await,
            Step::Tick => handler.tick().await,
            Step::Close => handler.close().await,
        };
        let batch: &[Record] = match &step {
            Step::Batch(b) => b,
            _ => &[],
        };
        let failure = match handled {
            Ok(d) => {
                self.note(d, batch);
                let mut tpl = TopicPartitionList::new();
                for ((t, p), o) in &self.pending {
                    tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
                }
                let group = self.consumer.group_metadata();
                let p = producer.clone();
                let committed = tokio::task::spawn_blocking(move || {
                    p.commit_with_offsets(&tpl, group.as_ref(), Duration::from_secs(30))
                })
                .await
                .map_err(|e| RuntimeError::Component {
                    component: component.clone(),
                    message: format!("transaction commit panicked: {e}"),
                    retryable: false,
                })?;
                self.pending.clear();
                match committed {
                    Ok(()) => {
                        self.backoff = Duration::from_millis(100);
                        return Ok(true);
                    }
                    Err(e) => e,
                }
            }
            Err(e) if e.is_retryable() => e,
            Err(e) => {
                let _ = producer.abort(Duration::from_secs(30));
                return Err(e);
            }
        };
        metrics::counter!("pushflow_batch_retries_total", "component" => component.clone())
            .increment(1);
        tracing::warn!(component, error = %failure, backoff_ms = self.backoff.as_millis() as u64,
            "transaction aborted; the batch will be fetched and handed again");
        self.pending.clear();
        let p = producer.clone();
        let _ = tokio::task::spawn_blocking(move || p.abort(Duration::from_secs(30))).await;
        self.rewind(batch);
        tokio::select! {
            _ = shutdown.cancelled() => {},
            _ = tokio::time::sleep(self.backoff) => {},
        }
        self.backoff = (self.backoff * 2).min(Duration::from_secs(10));
        Ok(false)
    }

    /// Seeks each partition of `batch` back to its first offset in it.
    fn rewind(&mut self, batch: &[Record]) {
        let mut first: HashMap<(&str, i32), i64> = HashMap::new();
        for r in batch {
            let e = first
                .entry((r.topic.as_str(), r.partition))
                .or_insert(r.offset);
            *e = (*e).min(r.offset);
        }
        for ((topic, partition), offset) in first {
            if let Err(e) = self.consumer.seek(
                topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            ) {
                tracing::warn!(component = %self.settings.component, topic, partition, error = %e, "rewind failed; the partition resumes from its committed offset after the next rebalance");
            }
        }
    }
}

/// Hands `batch` to the handler until it succeeds, backing off on
/// retryable errors. `None` when shutdown came first (nothing is durable).
async fn process_with_retry<H: Handler>(
    handler: &mut H,
    batch: &[Record],
    shutdown: &CancellationToken,
    component: &str,
) -> Result<Option<Durable>, RuntimeError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match handler.process(batch).await {
            Ok(d) => return Ok(Some(d)),
            Err(e) if e.is_retryable() => {
                metrics::counter!("pushflow_batch_retries_total", "component" => component.to_string()).increment(1);
                tracing::warn!(component, error = %e, backoff_ms = backoff.as_millis() as u64, "batch failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(partition: i32, offset: i64) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            payload: None,
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_handler_seek_reads_a_partition_again_from_its_position() {
        let settings = ConsumerSettings::new("t", "127.0.0.1:1", "g", vec!["t".into()]);
        let (tx, events) = mpsc::channel();
        let mut cfg = super::super::client_config(&settings.brokers, &BTreeMap::new());
        cfg.set("group.id", "g");
        let consumer: StreamConsumer<LoopContext> =
            cfg.create_with_context(LoopContext { events: tx }).unwrap();
        let mut lp = Loop {
            settings: &settings,
            consumer,
            events,
            owned: HashMap::from([("t".to_string(), HashSet::from([0]))]),
            pending: HashMap::from([(("t".to_string(), 0), 50)]),
            seeks: HashMap::new(),
            backoff: Duration::from_millis(100),
            handed: HashMap::from([("t".to_string(), HashMap::from([(0, 50)]))]),
        };
        let at = |partition, next_offset| Position {
            topic: "t".into(),
            partition,
            next_offset,
        };
        // t/1 is not owned: ignored.
        lp.request_seeks(vec![at(0, 10), at(1, 5)]);
        assert_eq!(lp.seeks.len(), 1);
        assert_eq!(lp.seeks[&("t".to_string(), 0)].0, 10);
        assert!(lp.pending.is_empty(), "no commit of the old position");
        // Records below 10 (fetched before the seek) are dropped; 10..50,
        // handed before, are handed again.
        let mut batch = vec![rec(0, 8), rec(0, 10), rec(0, 11), rec(0, 49)];
        lp.skip_sought(&mut batch);
        lp.skip_handed(&mut batch);
        let offsets: Vec<i64> = batch.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![10, 11, 49]);
        assert!(
            lp.seeks.is_empty(),
            "reaching the position ends the request"
        );
    }

    #[test]
    fn records_already_handed_or_repeated_in_a_batch_are_dropped() {
        // Partition 0 handled up to offset 5 (a copy of 4 refetched after
        // the partition came back); partition 1 not yet.
        let handed = HashMap::from([("t".to_string(), HashMap::from([(0, 5)]))]);
        let batch = [
            rec(0, 4),
            rec(0, 5),
            rec(1, 4),
            rec(0, 5),
            rec(1, 4),
            rec(1, 5),
        ];
        assert_eq!(
            not_yet_handed(&handed, &batch),
            vec![false, true, true, false, false, true]
        );
    }
}
