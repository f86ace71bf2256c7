//! Helpers of the lake's integration tests: events, producing raw records,
//! running the sink component, a moto S3 server.
#![allow(dead_code)]

pub mod proxy;

use pushflow_runtime::codec::Codec;
use pushflow_runtime::topology::ComponentSpec;
use pushflow_runtime::CancellationToken;
use pushflow_s3_parquet::sink::{S3ParquetSink, SinkConfig, Stats};
use pushflow_schemas::{Event, NotificationDelivered};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// 2026-01-01T00:30:00Z.
pub const T0: i64 = 1_767_227_400_000;

/// Event `i`: one every 1.5 s from T0, so 2,400 per hour.
pub fn delivered(i: u64) -> NotificationDelivered {
    NotificationDelivered {
        event_id: uuid::Uuid::new_v4().to_string(),
        occurred_at: T0 + i as i64 * 1_500,
        store_id: format!("store-{}", i % 7),
        notification_id: format!("n-{i}"),
        campaign_id: format!("c-{}", i % 3),
    }
}

/// Produces framed payloads to `topic` (keyed by `key`, all acknowledged),
/// in multi-record producer batches as a real producer sends them.
pub async fn produce(topic: &str, records: &[(String, Vec<u8>)]) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pushflow_testkit::brokers())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let futs: Vec<_> = records
        .iter()
        .map(|(k, v)| {
            let p = p.clone();
            async move {
                p.send(
                    FutureRecord::to(topic).key(k).payload(v),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .unwrap()
            }
        })
        .collect();
    futures::future::join_all(futs).await;
}

/// Encodes `n` events from `start` with the registry's codec.
pub async fn encoded<E: Event>(codec: &Codec, events: &[E]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in events {
        out.push((e.key().to_string(), codec.encode(e).await.unwrap()));
    }
    out
}

/// A running sink.
pub struct Running {
    /// Cancel to drain and stop.
    pub shutdown: CancellationToken,
    /// Its task.
    pub task: JoinHandle<Result<(), pushflow_runtime::RuntimeError>>,
    /// Its counters.
    pub stats: Arc<Stats>,
}

impl Running {
    /// Waits until `rows` rows are written (panics after `limit`).
    pub async fn wait_rows(&self, rows: u64, limit: Duration) {
        let started = Instant::now();
        loop {
            let n = self
                .stats
                .rows_written
                .load(std::sync::atomic::Ordering::Relaxed);
            if n >= rows {
                return;
            }
            assert!(!self.task.is_finished(), "the sink stopped early");
            assert!(
                started.elapsed() < limit,
                "only {n} of {rows} rows written after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Drains and stops.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Starts the `s3-parquet` component over `topics`.
pub fn start_sink(
    registry_url: &str,
    group: &str,
    topics: &[String],
    lake_url: &str,
    lake_options: &[(&str, &str)],
    config: SinkConfig,
) -> Running {
    let topology = pushflow_testkit::topology_with(
        &pushflow_testkit::brokers(),
        registry_url,
        "postgres://unused",
    );
    let spec = ComponentSpec {
        name: "lake".into(),
        kind: "s3-parquet".into(),
        inputs: topics.to_vec(),
        outputs: vec![],
        group: Some(group.to_string()),
        settings: serde_yaml::Value::Null,
    };
    let sink = S3ParquetSink::new(config.validate().unwrap(), topics.to_vec(), lake_url)
        .with_lake_options(lake_options);
    let stats = sink.stats();
    let (shutdown, task) = pushflow_testkit::run_component(sink, spec, topology);
    Running {
        shutdown,
        task,
        stats,
    }
}

/// Small files, fast idle flush (tests).
pub fn test_config(max_records: u64) -> SinkConfig {
    SinkConfig {
        max_records,
        flush_idle: "1s".into(),
        ..SinkConfig::default()
    }
}

/// An S3 server ([`pushflow_testkit::s3_endpoint`]) with a fresh bucket
/// named after `prefix`: (endpoint, bucket, the private server to keep
/// alive, if one was started).
pub fn moto_bucket(prefix: &str) -> (String, String, Option<pushflow_testkit::Moto>) {
    let (endpoint, child) = pushflow_testkit::s3_endpoint();
    let bucket = pushflow_testkit::unique(prefix).to_lowercase();
    python("lake_s3_check.py", &["create", &endpoint, &bucket]);
    (endpoint, bucket, child)
}

#[allow(unused_imports)] // not every test binary runs Python
pub use pushflow_testkit::python;
