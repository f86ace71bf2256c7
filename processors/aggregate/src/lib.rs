//! `aggregate`: exact windowed impressions and clicks into Postgres, and
//! the billing view `billing_monthly_impressions`.
//!
//! **Guarantee (exactly once into Postgres).** Each batch's aggregate
//! deltas, its dedup-state changes (`seen` rows, late events) and the next
//! offsets of its partitions are committed in ONE Postgres transaction per
//! lane of partitions (`partition % commit_connections`, default 2 lanes
//! committing at once on their own connections; a lane's transaction holds
//! everything of its partitions, so each is exactly-once on its own). On
//! start and on every rebalance the processor seeks to the offsets stored
//! in Postgres and skips any record below them, so a crash (kill -9) at any
//! point costs only the uncommitted batches (at most [`pipeline::QUEUE`] + 1
//! per lane), which are read and counted again after restart: totals equal
//! those of an uninterrupted run. Kafka's own
//! offset commits happen after the Postgres commit and are informational.
//! Dead letters are at-least-once: a crash between the dead letter and the
//! batch commit writes that dead letter twice. Per partition, transactions
//! run one at a time in batch order while the next batch is fetched and
//! decoded ([`pipeline`]); a failed transaction is retried with the same
//! staged part, and one that can never succeed stops the processor (a
//! restart resumes from Postgres).
//!
//! **Distinct counting.** A (notification_id, kind) pair counts at most
//! once, ever. The truth is the table `seen` (primary key on the pair):
//! every batch runs one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO
//! NOTHING RETURNING`, in the batch's transaction, and counts only the
//! pairs it returns. This is exact across restarts, replays and two
//! instances racing on a rebalance, because Postgres decides under the
//! primary key. In front of it, each partition keeps in memory the pairs it
//! committed whose event time lies within `dedup_horizon` of the
//! partition's watermark (max event time seen); a repeat found there (a
//! retrying service worker) is dropped without a round trip. The set only
//! holds committed pairs, so it never causes a miscount; a pair it has
//! forgotten (older than the horizon, or after a restart) is checked
//! against `seen` instead of counted blindly.
//!
//! **Memory.** Per notification in flight (a pair inside the horizon) the
//! set holds the id twice (hash set + eviction queue) plus the table and
//! queue slots: about 230 bytes for a 36-character id, measured by
//! `pushflow bench aggregate` (218–240 B from 10 k to 1 M pairs, linear).
//! The reference workload (40 M notifications on a peak day, 30 % delivered,
//! 1.5 % clicked ≈ 12.6 M pairs a day) puts ≈ 1.05 M pairs in a 2 h
//! horizon: ≈ 240 MB over all partitions, split across instances. The
//! horizon only trades memory for Postgres round trips on repeats; it never
//! changes a count, so lowering it is always safe. `seen` grows by one row
//! per counted pair (~60 bytes + index); drop old rows only once no replay
//! can reach them.
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
