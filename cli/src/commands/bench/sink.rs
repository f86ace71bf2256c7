//! `pushflow bench sink`: how fast records go from the broker to Parquet.
//!
//! Measured in one run, single process:
//! 1. the broker's raw consume rate (bare rdkafka consumer: the ceiling of
//!    any consumer);
//! 2. end to end: the sink (consumer loop, Avro decode, typed builders,
//!    Parquet zstd, local disk) until every record is in a file;
//! 3. in process, on one core: Avro bodies → Parquet bytes the sink's way
//!    (the fast decoder straight into the builders, then the writer), the
//!    same through apache-avro's generic `Value`s (the path of schemas with
//!    nested fields), decoded `Value`s → Parquet (builders + writer), and
//!    the ceiling, arrow-rs's own `ArrowWriter` fed the same data as
//!    prebuilt RecordBatches. Each is the best of [`ROUNDS`] rounds taken
//!    in turns.

use indicatif::{ProgressBar, ProgressStyle};
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::kafka::{run_consumer, ConsumerSettings, DeadLetters, Producer};
use pushflow_runtime::CancellationToken;
use pushflow_s3_parquet::sink::{SinkConfig, SinkHandler};
use pushflow_s3_parquet::{Lake, LakeError};
use pushflow_schemas::NotificationDelivered;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sink_in_process::{in_process, ROUNDS};

/// `pushflow bench sink`
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events to produce and write.
    #[arg(long, default_value_t = 500_000)]
    pub events: u64,
}

/// The `i`-th benchmark record: 500 stores, 2,000 campaigns, 7 ms apart
/// from `t0`.
pub(super) fn event(i: u64, t0: i64) -> NotificationDelivered {
    NotificationDelivered {
        event_id: format!(
            "{:08x}-0000-4000-8000-{:012x}",
            i >> 32,
            i & 0xffff_ffff_ffff
        ),
        occurred_at: t0 + (i as i64) * 7,
        store_id: format!("store-{}", i % 500),
        notification_id: format!("notif-{i:012}"),
        campaign_id: format!("camp-{}", i % 2000),
    }
}

/// A benchmark failure, as the lake's error.
pub(super) fn err(e: impl std::fmt::Display) -> LakeError {
    LakeError::Config(e.to_string())
}

/// Runs the benchmark with `events` records against `brokers`, printing
/// as it goes.
pub async fn run(brokers: &str, events: u64) -> Result<(), LakeError> {
    let resolver = Arc::new(InMemoryResolver::new());
    let codec = Codec::new(resolver.clone());
    let t0 = 1_767_225_600_000; // 2026-01-01T00:00Z; 7 ms apart → a few hours
    let bar = |n: u64, what: &str| {
        let b = ProgressBar::new(n);
        b.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message(what.to_string());
        b
    };
    let pb = bar(events, "encode");
    let mut payloads = Vec::with_capacity(events as usize);
    for i in 0..events {
        payloads.push(codec.encode(&event(i, t0)).await.map_err(err)?);
        if i % 10_000 == 0 {
            pb.set_position(i);
        }
    }
    pb.finish();
    let avro_bytes: usize = payloads.iter().map(|p| p.len() - 5).sum();

    // Produce to a fresh topic of one partition.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let topic = format!("pushflow-bench-sink-{}-{nanos}", std::process::id());
    super::create_topics(brokers, &BTreeMap::new(), &[(topic.clone(), 1)])
        .await
        .map_err(err)?;
    let producer: FutureProducer =
        pushflow_runtime::kafka::client_config(brokers, &BTreeMap::new())
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "1000000")
            .create()?;
    let pb = bar(events, "produce");
    for chunk in payloads.chunks(20_000) {
        let sends: Vec<_> = chunk
            .iter()
            .map(|p| {
                producer.send(
                    FutureRecord::<[u8], [u8]>::to(&topic).payload(p),
                    Duration::from_secs(60),
                )
            })
            .collect();
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| err(e))?;
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish();

    // 1. The broker's raw rate.
    let (brokers_c, topic_c) = (brokers.to_string(), topic.clone());
    let (n, _, secs) = tokio::task::spawn_blocking(move || {
        pushflow_runtime::kafka::rate::raw_consume(
            &brokers_c,
            &topic_c,
            events,
            Duration::from_secs(300),
        )
    })
    .await
    .map_err(err)??;
    let raw_rate = n as f64 / secs.max(1e-9);
    println!("broker raw consume: {n} records in {secs:.2}s = {raw_rate:.0}/s");

    // 2. End to end through the sink.
    let dir = std::env::temp_dir().join(format!("pushflow-bench-lake-{}", std::process::id()));
    let lake = Lake::open(&format!("file://{}", dir.display()), &[])?;
    let config = SinkConfig {
        flush_idle: "200ms".into(),
        max_batch: 20_000,
        ..SinkConfig::default()
    };
    let dlq = DeadLetters::new(
        Producer::new(brokers, &BTreeMap::new(), Duration::from_secs(30))?,
        "bench-lake",
    );
    let mut handler = SinkHandler::new(
        "bench-lake",
        lake,
        config.validate().map_err(|e| err(e.to_string()))?,
        resolver.clone(),
        Some(dlq),
    );
    let stats = handler.stats();
    let mut cs = ConsumerSettings::new(
        "bench-lake",
        brokers,
        &format!("{topic}-group"),
        vec![topic.clone()],
    );
    cs.max_batch = 20_000;
    cs.tick = Duration::from_millis(100);
    cs.passthrough
        .insert("fetch.max.bytes".into(), "104857600".into());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { run_consumer(&cs, &mut handler, stop).await });
    let pb = bar(events, "sink");
    let mut started: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let w = stats.rows_written.load(Ordering::Relaxed);
        pb.set_position(w);
        if started.is_none() {
            // Start the clock at the first record read (not at group join).
            if stats.records_in.load(Ordering::Relaxed) > 0 {
                started = Some(Instant::now());
            }
        }
        if w >= events || Instant::now() > deadline || task.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    pb.finish();
    shutdown.cancel();
    task.await.map_err(err)??;
    let written = stats.rows_written.load(Ordering::Relaxed);
    let sink_rate = written as f64 / secs.max(1e-9);
    let files = stats.files_written.load(Ordering::Relaxed);
    println!("sink end to end: {written} records, {files} files in {secs:.2}s = {sink_rate:.0}/s ({:.0}% of raw)", 100.0 * sink_rate / raw_rate);
    let _ = std::fs::remove_dir_all(&dir);

    // 3. In process, one core.
    let ip = in_process(&payloads)?;
    println!(
        "in process, 1 core, best of {ROUNDS} rounds:\n  \
         Avro -> Parquet, the sink's path (decoder -> builders -> writer): {:.0}/s ({:.1} MB/s of Avro) = {:.0}% of ceiling\n  \
         Avro -> Parquet through apache-avro Values (nested schemas): {:.0}/s\n  \
         decoded Values -> Parquet (builders -> writer): {:.0}/s = {:.0}% of ceiling\n  \
         ArrowWriter on prebuilt batches (ceiling): {:.0}/s",
        ip.decode_encode_rate,
        ip.decode_encode_mb_s,
        100.0 * ip.decode_encode_rate / ip.ceiling_rate,
        ip.generic_decode_encode_rate,
        ip.encode_rate,
        100.0 * ip.encode_rate / ip.ceiling_rate,
        ip.ceiling_rate
    );
    println!(
        "parquet size: {:.1} bytes/event (Avro {:.1})",
        ip.parquet_bytes_per_event,
        avro_bytes as f64 / events as f64
    );
    Ok(())
}
