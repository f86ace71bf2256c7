//! A `/v1/events` batch of more than one record goes to Kafka as ONE
//! transaction, so it is acknowledged whole or not written at all.
//!
//! Guarantee: a 201 means the transaction committed (every record is on
//! its topic, visible to `read_committed` consumers — every pushflow
//! consumer reads so). A broker failure before the commit aborts it: the
//! answer is 503 saying that none of the batch was written, and a retry
//! of the same batch (same `event_id`s) writes it once. Only when the
//! commit itself got no answer is the outcome unknown; the 503 says so,
//! and a retry with the same `event_id`s is still safe for the lake, which
//! keeps each `event_id` once.
//!
//! A pool of [`SLOTS`] transactional producers serves concurrent batches
//! (a producer holds one transaction at a time). Slot `i`'s transactional
//! id is `pushflow-ingest[-<topic prefix>]-<instance>-<i>`, where the
//! instance is `PUSHFLOW_INSTANCE_ID` or the host name, so a restarted
//! ingest fences and aborts what its predecessor left open. A producer is
//! made when its slot is first used, and made again after a failure that
//! leaves it unusable.

use pushflow_runtime::kafka::{instance_id, Delivery, Producer};
use pushflow_runtime::RuntimeError;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{Mutex, Semaphore};

/// Transactions in flight at once.
pub const SLOTS: usize = 4;

/// What became of a batch.
#[derive(Debug)]
pub enum Outcome {
    /// Committed: where each record is, in the batch's order.
    Written(Vec<Delivery>),
    /// Aborted (or never begun): nothing of the batch is visible.
    NotWritten(String),
    /// The commit got no answer: the batch may or may not be visible.
    Unknown(String),
}

/// The pool of transactional producers.
pub struct Batches {
    brokers: String,
    passthrough: BTreeMap<String, String>,
    timeout: Duration,
    id_prefix: String,
    slots: Vec<Mutex<Option<Producer>>>,
    free: Semaphore,
}

impl Batches {
    /// A pool writing to `brokers`; `timeout` bounds each send and the
    /// commit; `topic_prefix` (tests) keeps transactional ids apart.
    pub fn new(
        brokers: &str,
        passthrough: &BTreeMap<String, String>,
        timeout: Duration,
        topic_prefix: &str,
    ) -> Batches {
        let scope = topic_prefix.trim_end_matches('.');
        let id_prefix = match scope {
            "" => format!("pushflow-ingest-{}", instance_id()),
            s => format!("pushflow-ingest-{s}-{}", instance_id()),
        };
        Batches {
            brokers: brokers.to_string(),
            passthrough: passthrough.clone(),
            timeout,
            id_prefix,
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            free: Semaphore::new(SLOTS),
        }
    }

    /// Writes `records` (topic, key, payload) in one transaction.
    pub async fn write(&self, records: &[(String, String, Vec<u8>)]) -> Outcome {
        let Ok(_permit) = self.free.acquire().await else {
            return Outcome::NotWritten("ingest is shutting down".into());
        };
        // A permit guarantees a free slot; take the first unlocked one.
        let (i, mut slot) = loop {
            if let Some(found) = self
                .slots
                .iter()
                .enumerate()
                .find_map(|(i, s)| s.try_lock().ok().map(|g| (i, g)))
            {
                break found;
            }
            tokio::task::yield_now().await;
        };
        if slot.is_none() {
            let id = format!("{}-{i}", self.id_prefix);
            match Producer::transactional(&self.brokers, &self.passthrough, self.timeout, &id).await
            {
                Ok(p) => *slot = Some(p),
                Err(e) => {
                    return Outcome::NotWritten(format!("cannot start a transaction: {e}"));
                }
            }
        }
        let producer = slot.clone().expect("made above");
        let outcome = self.transact(&producer, records).await;
        if !matches!(outcome, Outcome::Written(_)) {
            // Made again on the next use: its init aborts whatever this
            // one left open, and a fatal error does not stick.
            *slot = None;
        }
        outcome
    }

    async fn transact(&self, p: &Producer, records: &[(String, String, Vec<u8>)]) -> Outcome {
        if let Err(e) = p.begin() {
            return Outcome::NotWritten(format!("cannot begin a transaction: {e}"));
        }
        let sends = records
            .iter()
            .map(|(topic, key, payload)| p.send(topic, Some(key.as_bytes()), payload, &[]));
        let bound = self.timeout + Duration::from_millis(500);
        let sent = tokio::time::timeout(bound, futures::future::join_all(sends)).await;
        let failed = match &sent {
            Err(_) => Some(format!(
                "the broker did not acknowledge within {:?}",
                self.timeout
            )),
            Ok(results) => results
                .iter()
                .find_map(|r| r.as_ref().err())
                .map(|e| format!("the broker did not acknowledge: {e}")),
        };
        if let Some(why) = failed {
            self.abort(p).await;
            return Outcome::NotWritten(why);
        }
        let deliveries: Vec<Delivery> = sent
            .expect("checked")
            .into_iter()
            .map(|r| r.expect("checked"))
            .collect();
        let (committer, timeout) = (p.clone(), self.timeout);
        let committed = tokio::task::spawn_blocking(move || {
            committer.commit_with_offsets(&rdkafka::TopicPartitionList::new(), None, timeout)
        })
        .await;
        match committed {
            Ok(Ok(())) => Outcome::Written(deliveries),
            Ok(Err(e)) if aborts(&e) => {
                self.abort(p).await;
                Outcome::NotWritten(format!("the commit failed: {e}"))
            }
            Ok(Err(e)) => Outcome::Unknown(format!("the commit got no answer: {e}")),
            Err(e) => Outcome::Unknown(format!("the commit panicked: {e}")),
        }
    }

    async fn abort(&self, p: &Producer) {
        let (p, timeout) = (p.clone(), self.timeout);
        match tokio::task::spawn_blocking(move || p.abort(timeout)).await {
            Ok(Ok(())) => {}
            // Unreachable broker: the transaction stays open until the
            // producer is made again (its init aborts it) or the broker's
            // transaction timeout does; either way it is never committed.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "ingest: abort of a failed batch did not complete")
            }
            Err(e) => tracing::warn!(error = %e, "ingest: abort panicked"),
        }
    }
}

/// Whether a failed commit is known not to have committed (the
/// transaction must be aborted), rather than unanswered.
fn aborts(e: &RuntimeError) -> bool {
    match e {
        RuntimeError::Kafka(rdkafka::error::KafkaError::Transaction(t)) => {
            t.txn_requires_abort() || (t.is_fatal() && !t.is_retriable())
        }
        _ => false,
    }
}
