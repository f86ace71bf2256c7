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
