//! `dispatch`: from a launched campaign to encrypted web pushes.
//!
//! Delivery guarantee, in plain words: every subscriber of a launched
//! campaign ends with exactly one `notification.dispatched` or
//! `notification.failed` event, even across kill -9 and restart; no event
//! (`event_id`) is ever on an output topic twice; and nobody is sent the
//! same notification twice — except a send whose outcome was not yet
//! written to Postgres when the process died (at most one chunk of
//! in-flight sends per batch). Both loops write through Kafka
//! transactions that commit the records they produce together with the
//! offsets they consumed, so a crash leaves both or neither (readers use
//! `read_committed`, librdkafka's default). Notification ids and event ids
//! are deterministic (UUIDv5 of campaign and subscriber), so a replay finds
//! the decided outcome, and an outcome whose transaction never committed is
//! published again with the same event ids.
//!
//! How: a view loop (consumer group `<group>`) keeps the store's active
//! subscriptions and the campaigns' content in Postgres (see [`store`] for
//! why Postgres) and plans each launch into batch records of
//! `batch_size` subscribers on the partitioned `dispatch.batches` topic
//! (key `<campaign_id>:<batch_no>`); a batch loop (group
//! `<group>-batches`) lets N instances share one campaign evenly. Each push
//! is encrypted (RFC 8291 aes128gcm, [`rfc8291`]), signed with a VAPID JWT
//! cached per push-service origin ([`vapid`]) and sent with bounded
//! concurrency per origin and the retry policy of [`sender`].
//!
//! Throttled launches (`campaign.launched` with `throttle_per_minute = N`,
//! e.g. from the scheduler) are sent at no more than N notifications per
//! minute for that campaign, across instances and restarts: planned into
//! Postgres, released batch by batch by one releaser through an exactly-once
//! outbox ([`release`]), and sent by a paced loop of their own (group
//! `<group>-paced`) in send slots claimed atomically in Postgres
//! ([`throttle`]). An unthrottled launch goes exactly as before.

pub mod batch;
pub mod component;
pub mod config;
pub mod outcomes;
pub mod release;
pub mod rfc8291;
pub mod send;
pub mod sender;
pub mod shared;
pub mod store;
pub mod throttle;
pub mod vapid;
pub mod view;

pub use component::Dispatch;
pub use config::DispatchSettings;
pub use shared::{notification_id, Topics};
pub use vapid::VapidKey;

use pushflow_runtime::codec::CodecError;
use pushflow_runtime::postgres::PgError;
use pushflow_runtime::RuntimeError;

/// Errors of dispatch. Each knows whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Settings, keys or URLs are wrong (retrying cannot help).
    #[error("configuration: {0}")]
    Config(String),
    /// Postgres failed or is unreachable (what was being done, and why).
    #[error(transparent)]
    Postgres(#[from] PgError),
    /// Kafka failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Encoding or decoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A record cannot be processed (goes to the dead-letter topic).
    #[error("{0}")]
    BadRecord(String),
    /// A subscription's keys or endpoint are unusable.
    #[error("invalid subscription: {0}")]
    InvalidSubscription(String),
    /// A cryptographic operation failed.
    #[error("crypto: {0}")]
    Crypto(String),
}

impl DispatchError {
    /// Whether trying again later could succeed. Every failure the server
    /// answered is taken for transient (the loops back off, warn and try
    /// again), also those [`PgError::is_retryable`] calls permanent; a
    /// database URL or pool that cannot be built is not.
    pub fn is_retryable(&self) -> bool {
        match self {
            DispatchError::Postgres(e) => e.is_retryable() || e.code().is_some(),
            DispatchError::Runtime(e) => e.is_retryable(),
            DispatchError::Codec(e) => e.is_retryable(),
            DispatchError::Config(_)
            | DispatchError::BadRecord(_)
            | DispatchError::InvalidSubscription(_)
            | DispatchError::Crypto(_) => false,
        }
    }

    /// As the runtime's error, for the consumer loop.
    pub fn into_runtime(self, component: &str) -> RuntimeError {
        match self {
            DispatchError::Runtime(e) => e,
            e => RuntimeError::Component {
                component: component.to_string(),
                retryable: e.is_retryable(),
                message: e.to_string(),
            },
        }
    }
}
