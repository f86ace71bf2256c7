//! Writing a test's records to the test broker and reading topics back,
//! independently of the component under test.

use pushflow_runtime::kafka::{Delivery, PartitionKey, Producer, Record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// An idempotent producer to the test broker (no pass-through settings,
/// 30 s to deliver).
pub fn producer() -> Producer {
    Producer::new(&crate::brokers(), &BTreeMap::new(), Duration::from_secs(30))
        .expect("a producer to the test broker")
}

/// The log end (next offset) of every partition a test wrote to, from the
/// producer's acknowledgements: where a run that must consume everything
/// produced so far stops. Serializable, for a crash test's child.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEnds(Vec<(String, i32, i64)>);

impl LogEnds {
    /// Records acknowledged (topic, delivery) pairs.
    pub fn note(&mut self, deliveries: impl IntoIterator<Item = (String, Delivery)>) {
        for (t, d) in deliveries {
            match self.0.iter_mut().find(|e| e.0 == t && e.1 == d.partition) {
                Some(e) => e.2 = e.2.max(d.offset + 1),
                None => self.0.push((t, d.partition, d.offset + 1)),
            }
        }
    }

    /// The end of each partition written.
    pub fn by_partition(&self) -> HashMap<PartitionKey, i64> {
        self.0
            .iter()
            .map(|(t, p, e)| (PartitionKey::new(t.clone(), *p), *e))
            .collect()
    }

    /// The sum of the ends: how many offsets were written.
    pub fn total(&self) -> i64 {
        self.0.iter().map(|e| e.2).sum()
    }
}

/// Sends every (topic, key, value) with `producer`, up to 1000 at once (so
/// the producer batches them), and notes the acknowledgements in `ends`.
pub async fn send_all(
    producer: &Producer,
    records: impl IntoIterator<Item = (String, String, Vec<u8>)>,
    ends: &mut LogEnds,
) {
    let mut sends = Vec::new();
    for (topic, key, value) in records {
        let producer = producer.clone();
        sends.push(async move {
            let d = producer
                .send(&topic, Some(key.as_bytes()), &value, &[])
                .await
                .unwrap_or_else(|e| panic!("send to {topic}: {e}"));
            (topic, d)
        });
        if sends.len() >= 1000 {
            ends.note(futures::future::join_all(std::mem::take(&mut sends)).await);
        }
    }
    ends.note(futures::future::join_all(sends).await);
}

/// A consumer config for the test broker: a fresh group `<prefix>-<random>`
/// that commits nothing.
pub fn consumer_config(group_prefix: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", crate::brokers())
        .set("group.id", crate::unique(group_prefix))
        .set("enable.auto.commit", "false");
    config
}

/// The value of header `name` of `record` as text ("" when absent).
pub fn header(record: &Record, name: &str) -> String {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        .unwrap_or_default()
}

/// Reads every committed record of `topic` on the test broker from the
/// beginning (`read_committed`), up to each partition's high watermark as
/// it is when called: everything acknowledged before then. Panics after
/// `limit`.
pub fn read_topic(topic: &str, limit: Duration) -> Vec<Record> {
    read(topic, None, limit)
}

/// Reads the first `n` committed records of `topic` (all partitions, from
/// the beginning); panics when there are not so many within `limit`.
pub fn read_records(topic: &str, n: usize, limit: Duration) -> Vec<Record> {
    read(topic, Some(n), limit)
}

fn read(topic: &str, n: Option<usize>, limit: Duration) -> Vec<Record> {
    let consumer: BaseConsumer = consumer_config("testkit-reader")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a consumer of the test broker");
    // The high watermark, not the last stable offset (which is what a
    // read_committed client is told): a transaction a killed component
    // left open holds the LSO back until the broker aborts it, and
    // committed records after it must still be read.
    let watermarks: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", crate::brokers())
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("a watermark client of the test broker");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("a partition to read");
        let (_, high) = watermarks
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{}: {e}", p.id()));
        ends.insert(p.id(), high);
    }
    consumer.assign(&tpl).expect("assign the partitions");
    let started = Instant::now();
    let mut out = Vec::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    // The consumer's position, not the last record seen: reading
    // read_committed, records of aborted transactions and transaction
    // markers are skipped.
    let done = |out: &Vec<Record>, next: &HashMap<i32, i64>| match n {
        Some(n) => out.len() >= n,
        None => {
            let at = consumer.position().unwrap_or_default();
            ends.iter().all(|(p, end)| {
                let position = match at.find_partition(topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                position.max(next.get(p).copied().unwrap_or(0)) >= *end
            })
        }
    };
    while !done(&out, &next) {
        assert!(
            started.elapsed() < limit,
            "read {} records of {topic} in {limit:?}, expected {}",
            out.len(),
            n.map_or_else(
                || format!("up to the high watermarks {ends:?}"),
                |n| n.to_string()
            )
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let r = Record::from_message(&m);
            next.insert(r.partition, r.offset + 1);
            out.push(r);
        }
    }
    out
}
