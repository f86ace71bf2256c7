//! Helpers: an ingest server on 127.0.0.1:0 over the real broker and an
//! in-process registry, writing to its own randomly prefixed topics.
#![allow(dead_code)]

use pushflow_ingest::{router, Deps, IngestSettings};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::http::serve;
use pushflow_runtime::kafka::{Producer, Record};
use pushflow_runtime::token::PingKeys;
use pushflow_runtime::CancellationToken;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const DEV_TOKEN: &str = "test-token-all-topics";
pub const BILLING_TOKEN: &str = "test-token-billing";
/// Writes campaign.created for store `s1` only.
pub const SHOP_TOKEN: &str = "test-token-shop-s1";
pub const PING_KEYS: &str = "k1:0123456789abcdef-test";

/// Settings with three tokens: one for every topic, one for
/// campaign.created, one for campaign.created of store `s1`.
pub fn settings_yaml(extra: &str) -> String {
    format!(
        "tokens:\n  - {{name: dev, sha256: \"{}\", topics: [\"*\"]}}\n  - {{name: billing, sha256: \"{}\", topics: [campaign.created]}}\n  - {{name: shop, sha256: \"{}\", topics: [campaign.created], stores: [s1]}}\n{extra}",
        pushflow_ingest::hash_token(DEV_TOKEN),
        pushflow_ingest::hash_token(BILLING_TOKEN),
        pushflow_ingest::hash_token(SHOP_TOKEN)
    )
}

pub struct Server {
    pub url: String,
    pub prefix: String,
    pub registry: String,
    pub keys: PingKeys,
    pub shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// Starts ingest with `settings` (YAML), producing to `brokers`, with
/// `topics` of the catalogue created under a random prefix.
pub async fn start_with(
    settings: &str,
    brokers: &str,
    topics: &[&str],
    registry: Option<String>,
) -> Server {
    let registry = match registry {
        Some(r) => r,
        None => pushflow_testkit::start_registry().await,
    };
    let prefix = format!("{}.", pushflow_testkit::unique("ingest-test"));
    let names: Vec<String> = topics.iter().map(|t| format!("{prefix}{t}")).collect();
    if !names.is_empty() {
        let specs: Vec<(&str, i32)> = names.iter().map(|n| (n.as_str(), 3)).collect();
        pushflow_testkit::create_topics_on(brokers, &specs).await;
    }
    start_on(settings, brokers, &prefix, registry).await
}

/// Starts ingest writing to `<prefix><topic>` (topics already created).
pub async fn start_on(settings: &str, brokers: &str, prefix: &str, registry: String) -> Server {
    let prefix = prefix.to_string();
    let s: IngestSettings = serde_yaml::from_str(settings).expect("test settings parse");
    let cfg = s.validate(|_| None).expect("test settings validate");
    let keys = PingKeys::parse(PING_KEYS).unwrap();
    let deps = Deps {
        producer: Producer::new(brokers, &BTreeMap::new(), cfg.produce_timeout).unwrap(),
        codec: Arc::new(Codec::for_registry(&registry).unwrap()),
        ping_keys: keys.clone(),
        topic_prefix: prefix.clone(),
        batches: Arc::new(pushflow_ingest::batches::Batches::new(
            brokers,
            &BTreeMap::new(),
            cfg.produce_timeout,
            &prefix,
        )),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, router(cfg, deps), shutdown.clone()));
    Server {
        url: format!("http://{addr}"),
        prefix,
        registry,
        keys,
        shutdown,
    }
}

pub async fn start(extra_settings: &str, topics: &[&str]) -> Server {
    start_with(
        &settings_yaml(extra_settings),
        &pushflow_testkit::brokers(),
        topics,
        None,
    )
    .await
}

/// Reads `n` records of `topic` from the beginning (all partitions).
pub fn consume(topic: &str, n: usize, limit: Duration) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    key_values(pushflow_testkit::read_records(topic, n, limit))
}

/// Reads every committed record of `topic` (read_committed): up to each
/// partition's high watermark as it is when called (everything
/// acknowledged before then).
pub fn consume_all(topic: &str, limit: Duration) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    key_values(pushflow_testkit::read_topic(topic, limit))
}

/// (partition, offset, key, value) of each record.
fn key_values(records: Vec<Record>) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    records
        .into_iter()
        .map(|r| {
            (
                r.partition,
                r.offset,
                r.key.unwrap_or_default(),
                r.payload.unwrap_or_default(),
            )
        })
        .collect()
}

/// Total records on `topic` (sum of high watermarks).
pub fn count(topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", pushflow_testkit::brokers())
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}
