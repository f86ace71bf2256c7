//! `aggregate`: exact windowed impressions and clicks into Postgres, and
//! the billing view `billing_monthly_impressions`.
//!
//! **Guarantee (exactly once into Postgres).** Each batch's aggregate
//! deltas, its dedup changelog rows (`dedup_log`) and late events, and the
//! next offsets of its partitions are committed in ONE Postgres transaction
//! per lane of partitions (`partition % commit_connections`, default 1;
//! lanes commit side by side on their own connections; a lane merges the
//! parts queued behind each other into one transaction — group commit —
//! and each transaction holds everything of its partitions, so each is
//! exactly-once on its own). On start and on every rebalance the processor
//! loads each partition's stored offset and dedup state from Postgres in
//! one snapshot, seeks there and skips any record below it, so a crash
//! (kill -9) at any point costs only the uncommitted batches (at most
//! [`pipeline::MERGE`] + [`pipeline::QUEUE`] per lane, a lane gathering
//! parts for `settings.commit_interval`, default 250 ms, before each
//! transaction), which are read and counted again after restart: totals
//! equal those of an uninterrupted run. Offsets are saved FENCED
//! ([`pushflow_runtime::postgres::OffsetsTable::save_expecting`]): only if
//! the stored offset is still the one this instance loaded or last
//! committed. Two instances that briefly both hold a partition during a
//! rebalance therefore cannot both extend it: the stale one's transaction
//! is rolled back whole, it drops that partition's state, loads it again
//! from Postgres and reads again from there
//! ([`pushflow_runtime::kafka::Handler::take_seeks`]). Kafka's own offset
//! commits happen after the Postgres commit and are informational. Dead
//! letters are at-least-once: a crash between the dead letter and the batch
//! commit writes that dead letter twice. A failed transaction is retried
//! with the same staged parts; one that can never succeed stops the
//! processor (a restart resumes from Postgres).
//!
//! **Distinct counting.** A (notification_id, kind) pair counts at most
//! once within the ping horizon: `pings.token_ttl + pings.clock_skew` of
//! the topology (default 7 d + 10 min), measured in Kafka RECORD time (the
//! time ingest produced the ping, stored in the log). Dispatch mints every
//! ping token with `exp = issued + pings.token_ttl` and ingest refuses
//! expired tokens, so no ping of a notification can be produced later than
//! that after its first one (the skew covers the clocks of dispatch, ingest
//! and the broker disagreeing): within the horizon "at most once" is "at
//! most once, ever". Precisely: a pair first seen at record time `t`
//! (rounded up to the second) is a duplicate while its partition's max
//! record time is at most `t + horizon`; a repeat after that counts again.
//! This is decided from the log alone, so a replay counts exactly as the
//! live run did. The state lives in memory per partition ([`dedup`]: keys
//! are the first 128 bits of SHA-256(kind ‖ notification_id); two pairs of
//! one partition collide with probability ≈ n²/2^129 for n keys in its
//! horizon, 1.5 × 10⁻²⁵ at 10 M) and in its changelog `dedup_log`
//! ([`changelog`]: one row per committed transaction and partition with the
//! batch's new keys; rows whose keys are all past the horizon are deleted
//! inside a later batch's transaction, when the oldest row is past it). No
//! Postgres row per event.
//!
//! **Upgrade from the `seen` table (migration 5).** `seen` is kept but no
//! longer read or written; the in-memory state of a partition starts from
//! the changelog, empty on the first start after the upgrade. So a REPEAT,
//! after the upgrade, of a ping counted before it (a service worker
//! retrying within its token's lifetime) counts again, once: at most one
//! extra count per pair over the 7 days after the upgrade. Upgrade while
//! no campaign is sending, or accept that bound (`seen` holds the pairs for
//! a manual check).
//!
//! **Memory.** 20 bytes per pair in a hash table (plus its control byte and
//! free slots) and 16 bytes per changelog row: measured by `pushflow bench
//! aggregate`, ≈ 44 B per pair at 1 M and ≈ 35 B at 10 M pairs in one
//! partition. The reference workload (40 M notifications on a peak day,
//! 30 % delivered, 1.5 % clicked ≈ 12.6 M pairs a day) holds ≤ 7 × 12.6 M
//! ≈ 88 M pairs in a 7-day horizon: ≈ 3.1 GB over all partitions, split
//! across instances (a shorter `pings.token_ttl` shrinks it in proportion).
//! Loading a partition reads its changelog (`pushflow bench aggregate`
//! times 10 M pairs).
//!
//! **Windows.** Event-time tumbling windows per (store_id, campaign_id),
//! several sizes at once, each with a grace period. A ping whose window
//! closed (window end + grace ≤ the partition's watermark) is late for that
//! window: it is not added to it, it is written to `late_events` and
//! counted in `pushflow_aggregate_late_events_total`, and it still counts
//! in the monthly totals. Watermarks are stored with the offsets, so
//! lateness is the same after a restart.

pub mod billing;
pub mod changelog;
pub mod component;
pub mod config;
pub mod dedup;
pub mod pipeline;
pub mod processor;
pub mod replay;
pub mod store;
pub mod tally;

pub use component::Aggregate;
pub use config::AggregateSettings;
pub use processor::{run, RunOptions, RunSummary, StartAt};

use pushflow_runtime::postgres::PgError;
use pushflow_runtime::RuntimeError;

/// Errors of the aggregate.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// Postgres failed or refused (what was being done, and why).
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// The shared runtime (Kafka, codec, topology) failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Kafka metadata or offsets could not be read.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A command-line argument or setting is wrong (retrying cannot help).
    #[error("{0}")]
    Invalid(String),
}

impl AggregateError {
    /// Whether trying again later could succeed. Postgres errors are,
    /// except those of a wrong statement or schema or of data
    /// ([`PgError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            AggregateError::Postgres(e) => e.is_retryable(),
            AggregateError::Runtime(e) => e.is_retryable(),
            AggregateError::Kafka(_) => true,
            AggregateError::Invalid(_) => false,
        }
    }

    /// The partitions a fenced commit found moved by another instance
    /// (reload them and go on; see [`PgError::needs_reload`]).
    pub fn fenced(&self) -> Option<&[pushflow_runtime::kafka::PartitionKey]> {
        match self {
            AggregateError::Postgres(e) => e.needs_reload(),
            _ => None,
        }
    }

    /// Whether the error is the caller's configuration or arguments (the
    /// binary exits with code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, AggregateError::Invalid(_))
    }

    /// As the runtime's error for `component`.
    pub fn into_runtime(self, component: &str) -> RuntimeError {
        match self {
            AggregateError::Runtime(e) => e,
            e => RuntimeError::Component {
                component: component.to_string(),
                retryable: e.is_retryable(),
                message: e.to_string(),
            },
        }
    }
}
