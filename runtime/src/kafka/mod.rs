//! Kafka, through rdkafka: the consumer loop, the producer, dead letters
//! and topic administration.

pub mod admin;
pub mod consumer;
pub mod dlq;
pub mod outbox;
pub mod positions;
pub mod producer;
pub mod rate;

use rdkafka::ClientConfig;
use std::collections::BTreeMap;

pub use consumer::{
    run_consumer, run_consumer_transactional, ConsumerSettings, Durable, Handler, Position, Record,
};
pub use dlq::DeadLetters;
pub use positions::{PartitionKey, RunOptions, StartAt, StopAt};
pub use producer::{instance_id, Delivery, Producer};

/// How long librdkafka waits before fetching again for a partition whose
/// prefetch queue was full, in every consumer of pushflow (librdkafka's
/// default: 1000 ms).
///
/// librdkafka stops fetching a partition once `queued.min.messages`
/// (100,000) records are prefetched — counted over the consumer's ONE
/// queue, which every assigned partition feeds — and looks again only
/// after this backoff. A consumer handing records over faster than
/// 100,000 a second therefore drains the queue and waits out the rest of
/// the second: the aggregate ran at 180,000 records/s, half of it waiting,
/// with nothing busy (BENCHMARKS.md, 2026-12-04). 10 ms keeps the queue
/// topped up at the same memory bound; a topology's `kafka:` map can still
/// override it.
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A consumer config for `brokers` in group `group` with pushflow's fetch
/// pacing ([`FETCH_QUEUE_BACKOFF_MS`]); the caller sets the rest and
/// applies the pass-through map last.
pub fn consumer_config(brokers: &str, group: &str) -> ClientConfig {
    let mut c = client_config(brokers, &BTreeMap::new());
    c.set("group.id", group)
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    c
}

/// A client config for `brokers` with the topology's pass-through map
/// applied last (so an operator can override anything).
pub fn client_config(brokers: &str, passthrough: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c.set("client.id", "pushflow");
    for (k, v) in passthrough {
        c.set(k, v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_refetch_a_full_queue_after_10_ms_not_a_second() {
        let c = consumer_config("127.0.0.1:1", "g");
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(c.get("group.id"), Some("g"));
    }
}
