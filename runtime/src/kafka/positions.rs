//! Runs of a consumer that keeps its positions in Postgres (the aggregate,
//! analytics): which partition ([`PartitionKey`]), where a partition with
//! no stored position starts ([`StartAt`]), when a bounded run is over
//! ([`StopAt`]), and everything a run needs ([`RunOptions`]); the live
//! component, replays, tests and the bench differ only in those options.
//!
//! Guarantee: a stored position always wins over [`StartAt`] (so an
//! interrupted replay into the same schema resumes where it stopped), and
//! a [`StopAt`] ends a run only once the committed next offset of every
//! listed partition reached its target: everything below the targets is
//! durable in Postgres when it fires.

use indicatif::ProgressBar;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use super::{ConsumerSettings, DeadLetters, Position, Producer, Record};
use crate::codec::Codec;
use crate::RuntimeError;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
}

impl PartitionKey {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> PartitionKey {
        PartitionKey {
            topic: topic.into(),
            partition,
        }
    }

    /// The partition `record` was read from.
    pub fn of(record: &Record) -> PartitionKey {
        PartitionKey::new(record.topic.clone(), record.partition)
    }

    /// The consumer loop's (topic, partition) pairs (assigned or revoked).
    pub fn list(partitions: &[(String, i32)]) -> Vec<PartitionKey> {
        partitions.iter().map(PartitionKey::from).collect()
    }

    /// The partitions of `batch` that `known` does not know, sorted, each
    /// once (a batch may come before its partitions' assignment is handled).
    pub fn unknown(batch: &[Record], known: impl Fn(&PartitionKey) -> bool) -> Vec<PartitionKey> {
        let mut unknown: Vec<PartitionKey> = batch
            .iter()
            .map(PartitionKey::of)
            .filter(|p| !known(p))
            .collect();
        unknown.sort();
        unknown.dedup();
        unknown
    }

    /// The position before `next_offset` in this partition.
    pub fn position(&self, next_offset: i64) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            next_offset,
        }
    }
}

/// The consumer loop's (topic, partition) pairs.
impl From<&(String, i32)> for PartitionKey {
    fn from((topic, partition): &(String, i32)) -> PartitionKey {
        PartitionKey::new(topic.clone(), *partition)
    }
}

/// Where partitions without a stored position start.
#[derive(Debug, Clone)]
pub enum StartAt {
    /// At the beginning of the log (the live component).
    Beginning,
    /// At these offsets (a replay from a time); others at the beginning.
    Offsets(HashMap<PartitionKey, i64>),
}

impl StartAt {
    /// The first offset to read of `partition`, which has no stored position.
    pub fn next_offset(&self, partition: &PartitionKey) -> i64 {
        match self {
            StartAt::Beginning => 0,
            StartAt::Offsets(o) => o.get(partition).copied().unwrap_or(0),
        }
    }
}

/// When a bounded run is over: once every target partition's committed next
/// offset reached its target (a target of 0 or less is reached at once).
/// A run without targets is never over by itself.
#[derive(Debug)]
pub struct StopAt {
    targets: Option<HashMap<PartitionKey, i64>>,
    /// The furthest committed next offset seen per partition, owned now or
    /// not (a partition revoked after reaching its target stays reached).
    reached: HashMap<PartitionKey, i64>,
    done: CancellationToken,
}

impl StopAt {
    /// Cancels `done` once `targets` (if any) are reached.
    pub fn new(targets: Option<HashMap<PartitionKey, i64>>, done: CancellationToken) -> StopAt {
        StopAt {
            targets,
            reached: HashMap::new(),
            done,
        }
    }

    /// Notes that `partition`'s next offset `next` is committed (or stored).
    pub fn committed(&mut self, partition: &PartitionKey, next: i64) {
        let e = self.reached.entry(partition.clone()).or_insert(next);
        *e = (*e).max(next);
    }

    /// Whether every target is reached by the next offset `staged` gives
    /// for its partition (read but not yet committed) or by a committed
    /// one: nothing of a bounded run remains to be read, so its last
    /// commit need not wait for more. `false` for a run without targets.
    pub fn all_staged(&self, staged: impl Fn(&PartitionKey) -> Option<i64>) -> bool {
        let Some(targets) = &self.targets else {
            return false;
        };
        targets.iter().all(|(p, end)| {
            *end <= 0
                || self.reached.get(p).is_some_and(|n| n >= end)
                || staged(p).is_some_and(|n| n >= *end)
        })
    }

    /// Cancels the run's token if every target is reached.
    pub fn check(&self) {
        let Some(targets) = &self.targets else {
            return;
        };
        let reached = targets
            .iter()
            .all(|(p, end)| *end <= 0 || self.reached.get(p).is_some_and(|n| n >= end));
        if reached {
            self.done.cancel();
        }
    }
}

/// Everything a run of a Postgres-backed consumer needs, with `S` the
/// component's validated settings.
pub struct RunOptions<S> {
    /// Component name (metrics label, logs, dead-letter header).
    pub name: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka pass-through.
    pub passthrough: BTreeMap<String, String>,
    /// Consumer group (its Kafka commits are informational).
    pub group: String,
    /// Input topics (the component checks which it accepts).
    pub inputs: Vec<String>,
    /// Postgres URL (the database is created if missing).
    pub database_url: String,
    /// The component's validated settings (schema, batch size, …).
    pub settings: S,
    /// Decoder.
    pub codec: Arc<Codec>,
    /// Start of partitions with no stored position.
    pub start: StartAt,
    /// Stop once every listed partition's committed next offset reaches
    /// its value (replays, tests and the bench: see [`StopAt`]); `None`
    /// runs until shutdown.
    pub stop_at: Option<HashMap<PartitionKey, i64>>,
    /// Progress bar advanced per record handled.
    pub progress: Option<ProgressBar>,
}

impl<S> RunOptions<S> {
    /// The options of the live component `name` of a topology: from the
    /// beginning of partitions without a stored position, until shutdown,
    /// decoding through the topology's registry.
    pub fn live(
        ctx: &crate::component::Context,
        group: String,
        inputs: Vec<String>,
        settings: S,
    ) -> Result<RunOptions<S>, RuntimeError> {
        let services = &ctx.topology.services;
        Ok(RunOptions {
            name: ctx.spec.name.clone(),
            brokers: services.brokers.clone(),
            passthrough: ctx.topology.kafka.clone(),
            group,
            inputs,
            database_url: services.database_url.clone(),
            settings,
            codec: Arc::new(Codec::for_registry(&services.registry_url)?),
            start: StartAt::Beginning,
            stop_at: None,
            progress: None,
        })
    }

    /// The consumer loop's settings: batches of up to `max_batch` records,
    /// waiting at most 100 ms for one to fill, ticking every 200 ms.
    pub fn consumer_settings(&self, max_batch: usize) -> ConsumerSettings {
        let mut settings =
            ConsumerSettings::new(&self.name, &self.brokers, &self.group, self.inputs.clone())
                .with(&self.passthrough, max_batch);
        settings.max_wait = Duration::from_millis(100);
        settings.tick = Duration::from_millis(200);
        settings
    }

    /// The dead-letter writer of the run (its own idempotent producer).
    pub fn dead_letters(&self) -> Result<DeadLetters, RuntimeError> {
        let producer = Producer::new(&self.brokers, &self.passthrough, Duration::from_secs(30))?;
        Ok(DeadLetters::new(producer, self.name.clone()))
    }

    /// Advances the progress bar, if any, by `records`.
    pub fn advance(&self, records: u64) {
        if let Some(pb) = &self.progress {
            pb.inc(records);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_once_every_target_is_committed() {
        let done = CancellationToken::new();
        let (a, b) = (PartitionKey::new("t", 0), PartitionKey::new("t", 1));
        let mut stop = StopAt::new(
            Some(HashMap::from([(a.clone(), 10), (b.clone(), 0)])),
            done.clone(),
        );
        stop.check();
        assert!(!done.is_cancelled(), "nothing committed of t/0 yet");
        stop.committed(&a, 10);
        stop.committed(&a, 4);
        stop.check();
        assert!(
            done.is_cancelled(),
            "t/0 reached 10; t/1 has nothing to read"
        );
        let never = CancellationToken::new();
        StopAt::new(None, never.clone()).check();
        assert!(!never.is_cancelled());
    }

    #[test]
    fn everything_is_staged_once_read_or_committed_up_to_every_target() {
        let (a, b, c) = (
            PartitionKey::new("t", 0),
            PartitionKey::new("t", 1),
            PartitionKey::new("t", 2),
        );
        let targets = HashMap::from([(a.clone(), 10), (b.clone(), 5), (c.clone(), 0)]);
        let mut stop = StopAt::new(Some(targets), CancellationToken::new());
        let read = |at: i64| move |p: &PartitionKey| (p.partition == 0).then_some(at);
        assert!(!stop.all_staged(read(10)), "nothing of t/1 read yet");
        stop.committed(&b, 5);
        assert!(!stop.all_staged(read(9)), "t/0 read up to 9 of 10");
        assert!(
            stop.all_staged(read(10)),
            "t/0 read, t/1 committed, t/2 empty"
        );
        assert!(!StopAt::new(None, CancellationToken::new()).all_staged(|_| Some(i64::MAX)));
    }

    #[test]
    fn starts_unstored_partitions_where_told() {
        let p = PartitionKey::new("t", 3);
        assert_eq!(StartAt::Beginning.next_offset(&p), 0);
        let at = StartAt::Offsets(HashMap::from([(p.clone(), 42)]));
        assert_eq!(at.next_offset(&p), 42);
        assert_eq!(at.next_offset(&PartitionKey::new("t", 4)), 0);
    }
}
