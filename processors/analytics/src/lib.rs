//! `analytics`: exact merchant analytics in Postgres — per campaign the
//! audience's outcomes (dispatched, failed, expired) per window and in
//! total, the campaign's schedule and launch; per store and UTC day the
//! subscribers who subscribed and expired. The dashboard reads them
//! (delivered and clicked come from the billing aggregate's tables).
//!
//! **Guarantee (exactly once into Postgres).** Each batch's deltas, its new
//! dedup keys (`seen` rows), its campaign rows and the next offsets of its
//! partitions are committed in ONE Postgres transaction; nothing of a batch
//! is visible before that commit. On start and on every rebalance the
//! component seeks to the offsets stored in Postgres (the truth; Kafka's
//! own offset commits are informational) and skips any record below them,
//! so a crash (kill -9) at any point costs only the batch in flight, which
//! is read and counted again after restart: the tables equal those of an
//! uninterrupted run, nothing lost and nothing counted twice. A failed
//! transaction is retried with backoff (also one whose COMMIT outcome is
//! unknown because the connection dropped: if it did commit, its keys are
//! in `seen` and the retry adds nothing); one that can never succeed stops
//! the component (a restart resumes from Postgres). Records that cannot be
//! decoded or name no store or id go to `<topic>.dlq` with the reason
//! (at least once: a crash between the dead letter and the commit writes it
//! again) and never stop the component.
//!
//! **What is counted** (every key holds `store_id`: ids are unique per
//! store only):
//! - *dispatched* = distinct notification_id with `notification.dispatched`;
//!   *expired* = distinct notification_id with `notification.failed` of kind
//!   `gone` (404/410: the subscription no longer exists); *failed* =
//!   distinct notification_id with `notification.failed` of any other kind.
//!   Each notification counts once among the three: the first outcome
//!   consumed wins (dispatch emits exactly one per notification).
//!   *audience* = dispatched + failed + expired (the API adds them up).
//! - Windows (`campaign_windows`) are tumbling, by the outcome event's
//!   `occurred_at` (UTC), `window_start` aligned to the size. Every record
//!   is counted in its window however late it comes (no grace: these are
//!   stored counts, not emitted once), so the windows of one size always
//!   sum to `campaign_totals`.
//! - `store_days`: *subscribed* = distinct (store_id, subscriber_id) with
//!   `subscription.created` on that UTC day of `occurred_at`; *expired* =
//!   the same with `subscription.expired`. A subscriber who comes back on a
//!   later day counts again that day. *Active at day end* = the running sum
//!   of subscribed − expired up to that day (the API computes it).
//! - `campaigns`: one row per campaign, upserted from `campaign.created`
//!   (title, created_at = occurred_at; the earliest wins),
//!   `campaign.scheduled` (scheduled_at = send_at and throttle; a later
//!   schedule replaces an earlier one), `campaign.cancelled` (cancelled_at,
//!   the earliest) and `campaign.launched` (launched_at, the earliest). Any
//!   of them may create the row: events arrive in any order across topics,
//!   and the merge gives the same row in every order.
//!
//! **Distinct counting.** The truth is the table `seen`: every batch runs
//! one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING` in
//! its transaction and counts only the keys Postgres inserted. This is
//! exact forever (no horizon) and across restarts, replays and two
//! instances racing on a rebalance, because Postgres decides under the
//! primary key. Keys repeated within a batch are dropped before. There is
//! no in-memory set of older keys: outcome and subscription events are
//! rarely repeated (their producers write each event once), so every
//! candidate simply asks Postgres. `seen` grows by one row per counted
//! fact (~70 bytes + index).
//!
//! **Replay.** `pushflow replay analytics` rebuilds every table from the
//! Kafka log into a fresh schema with this same code and reports every row
//! that differs from the live tables ([`replay`]).

pub mod component;
pub mod config;
pub mod facts;
pub mod processor;
pub mod replay;
pub mod store;
pub mod tally;

pub use component::Analytics;
pub use config::AnalyticsSettings;
pub use processor::{run, RunOptions, RunSummary, StartAt};

use pushflow_runtime::postgres::PgError;
use pushflow_runtime::RuntimeError;

/// Errors of the analytics component.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// Postgres failed or refused (what was being done, and why).
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// The shared runtime (Kafka, codec, topology) failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A command-line argument or setting is wrong (retrying cannot help).
    #[error("{0}")]
    Invalid(String),
    /// A replay found rows that differ from the live tables.
    #[error("{count} rows differ between the live schema {live} and the replay in {replay}")]
    Differs {
        /// Rows that differ.
        count: i64,
        /// The live schema.
        live: String,
        /// The replayed schema.
        replay: String,
    },
}

impl AnalyticsError {
    /// Whether trying again later could succeed. Postgres errors are,
    /// except those of a wrong statement or schema or of data
    /// ([`PgError::is_retryable`]) and, here, a constraint violation
    /// (class 23).
    pub fn is_retryable(&self) -> bool {
        match self {
            AnalyticsError::Postgres(e) => e.is_retryable() && e.sqlstate_class() != Some("23"),
            AnalyticsError::Runtime(e) => e.is_retryable(),
            AnalyticsError::Invalid(_) | AnalyticsError::Differs { .. } => false,
        }
    }

    /// Whether the error is the caller's configuration or arguments (the
    /// binary exits with code 2).
    pub fn is_config(&self) -> bool {
        matches!(self, AnalyticsError::Invalid(_))
    }

    /// As the runtime's error for `component`.
    pub fn into_runtime(self, component: &str) -> RuntimeError {
        match self {
            AnalyticsError::Runtime(e) => e,
            e => RuntimeError::Component {
                component: component.to_string(),
                retryable: e.is_retryable(),
                message: e.to_string(),
            },
        }
    }
}
