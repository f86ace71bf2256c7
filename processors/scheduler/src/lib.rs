//! `scheduler`: scheduled campaigns. A `campaign.scheduled {campaign_id,
//! send_at, throttle_per_minute?}` becomes exactly one `campaign.launched`
//! at `send_at`, unless a `campaign.cancelled` comes first.
//!
//! **Guarantee, in plain words.** Each scheduled campaign is launched once:
//! one `campaign.launched` event on the topic, never two, never none, also
//! across kill -9 and restarts and with several instances running. It
//! leaves within about a second of `send_at` (normally within
//! milliseconds); a scheduler that was down at `send_at` launches it as
//! soon as it is back, late, and says how late (a WARN with `late_ms`, the
//! histogram `pushflow_scheduler_launch_lateness_seconds`, the counter
//! `pushflow_scheduler_late_launches_total` and the row's `lateness_ms`).
//! A cancel the broker acknowledged before the launch fired prevents it; a
//! cancel after it is reported as too late. Inputs are exactly once into
//! Postgres: each batch of records and its offsets commit in ONE
//! transaction, so a crash neither loses nor doubles a schedule or a
//! cancel. Bad records go to `<topic>.dlq` (at least once: a crash between
//! the dead letter and the batch commit writes it twice) and never stop it.
//!
//! **Semantics** ([`schedule`]): everything is keyed by (store_id,
//! campaign_id), since ids are unique per store only. `campaign.scheduled`
//! and `campaign.cancelled` are ordered by event time (`occurred_at`, then
//! `event_id`; a cancel wins a tie), so the outcome does not depend on the
//! order Kafka delivers the two topics in: a later schedule reschedules a
//! pending campaign, a cancel calls off every schedule before it, and a
//! schedule after a cancel schedules the campaign again. Launched is final:
//! a campaign launched directly (`campaign.launched` posted through the
//! API) makes its schedule moot.
//!
//! **How** ([`launcher`]): one instance is active (a Postgres advisory
//! lock; the others stand by and take over when its connection goes). It
//! reads the three campaign topics (`read_committed`, every partition, from
//! offsets stored in Postgres) and writes launches through an
//! [`Outbox`](pushflow_runtime::kafka::outbox::Outbox): a transactional
//! producer with the fixed id `<group>-launcher`, whose opening fences any
//! zombie and aborts the transaction it left open. Each launch's `event_id`
//! is UUIDv5 of (store, campaign, the schedule's version = the
//! `campaign.scheduled` event_id), its `occurred_at` the firing time.
//!
//! **Crash points.**
//! 1. While applying inputs: the Postgres transaction rolls back; the
//!    records are read again from the stored offsets.
//! 2. A round, after its launches were produced but before the Kafka
//!    commit: the transaction never commits (the next start's fencing
//!    aborts it, or the broker's transaction timeout does); the rows are
//!    still pending and fire again, with the same event ids.
//! 3. After the Kafka commit, before the Postgres commit: the rows are
//!    still pending, but on start, BEFORE firing anything, the scheduler
//!    reads `campaign.launched` up to the high watermark taken after the
//!    fencing: the committed launches are there (each carries the
//!    [`SEND_AT_HEADER`](launcher::SEND_AT_HEADER)), so their rows are
//!    marked launched and are not fired again.
//! 4. After the Postgres commit: nothing to redo.
//! 5. A zombie (an instance that lost its Postgres connection, and with it
//!    the lock, but still runs): the next active instance's fencing makes
//!    its Kafka commit fail, and it cannot write Postgres.
//!
//! Cancels are applied before firing: a round first reads
//! `campaign.scheduled` and `campaign.cancelled` up to their high
//! watermarks (at start without a time limit; afterwards for at most
//! `catch_up_timeout`, which only another producer's open transaction can
//! exhaust).

pub mod component;
pub mod config;
pub mod launcher;
pub mod schedule;
pub mod store;

pub use component::Scheduler;
pub use config::SchedulerSettings;
pub use launcher::Topics;

use pushflow_runtime::codec::CodecError;
use pushflow_runtime::postgres::PgError;
use pushflow_runtime::RuntimeError;

/// Errors of the scheduler. Each knows whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// A record that decodes but cannot be used: a schedule without
    /// `send_at`, a throttle of zero (goes to the dead-letter topic;
    /// retrying cannot help).
    #[error("{0}")]
    BadRecord(String),
    /// Postgres failed or refused while the schedules, the offsets or the
    /// leader lock were read or written.
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// A campaign event could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// Kafka (the consumer, the outbox, the read back) or the topology
    /// failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl SchedulerError {
    /// Whether trying again later could succeed. Postgres errors are,
    /// except those of a wrong statement or schema or of data
    /// ([`PgError::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            SchedulerError::Postgres(e) => e.is_retryable(),
            SchedulerError::Codec(e) => e.is_retryable(),
            SchedulerError::Runtime(e) => e.is_retryable(),
            SchedulerError::BadRecord(_) => false,
        }
    }

    /// As the runtime's error for `component`.
    pub fn into_runtime(self, component: &str) -> RuntimeError {
        match self {
            SchedulerError::Runtime(e) => e,
            e => RuntimeError::Component {
                component: component.to_string(),
                retryable: e.is_retryable(),
                message: e.to_string(),
            },
        }
    }
}
