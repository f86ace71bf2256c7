//! The broker's raw consume rate: the ceiling every consuming benchmark is
//! compared against (records read with a bare rdkafka consumer, no decode,
//! no commit).

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use std::time::{Duration, Instant};

use crate::RuntimeError;

/// Reads `expected` records of `topic` from the beginning with a fresh
/// group and pushflow's consumer fetch pacing (the same as every
/// component's, [`super::FETCH_QUEUE_BACKOFF_MS`]) and returns (records,
/// bytes, seconds). Gives up after `limit`.
pub fn raw_consume(
    brokers: &str,
    topic: &str,
    expected: u64,
    limit: Duration,
) -> Result<(u64, u64, f64), RuntimeError> {
    let mut cfg = super::consumer_config(
        brokers,
        &format!("pushflow-bench-raw-{}", std::process::id()),
    );
    cfg.set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = cfg.create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while n < expected && started.elapsed() < limit {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            first.get_or_insert_with(Instant::now);
            n += 1;
            bytes += m.payload().map_or(0, <[u8]>::len) as u64;
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok((n, bytes, secs))
}
