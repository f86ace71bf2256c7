//! Issue 7, item 5: an unreachable or failing object store makes the sink
//! back off and retry, committing nothing it has not written and losing
//! nothing.
//!
//! The sink writes to moto through a TCP proxy the test controls, while
//! records keep arriving. The proxy first refuses every connection (the
//! store is unreachable), then passes requests but withholds every answer
//! (the store may have written the object, the sink cannot know), then
//! heals. Moto itself keeps its data throughout. Checked: the store client
//! gives up at least once (so the sink's own backoff and retry is what
//! carries on), the sink keeps running and retrying and counts nothing as
//! written while the store is down, the group's committed offsets never
//! pass what the lake holds (compared every 250 ms during the whole run,
//! reading the lake straight from moto), and after recovery pyarrow (an
//! independent reader) finds every record exactly once, in the right hour.

mod common;

use common::proxy::{Mode, Proxy};
use common::*;
use futures::TryStreamExt;
use pushflow_runtime::codec::Codec;
use pushflow_s3_parquet::lake::FileName;
use pushflow_s3_parquet::Lake;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOTAL: u64 = 3_000;
const PARTITIONS: i32 = 2;

/// Produces `records` in chunks of `chunk`, one chunk every `every`,
/// counting what the broker acknowledged.
async fn trickle(
    topic: String,
    records: Vec<(String, Vec<u8>)>,
    chunk: usize,
    every: Duration,
    produced: Arc<AtomicU64>,
) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pushflow_testkit::brokers())
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for part in records.chunks(chunk) {
        let sends: Vec<_> = part
            .iter()
            .map(|(k, v)| {
                p.send(
                    FutureRecord::to(&topic).key(k).payload(v),
                    Duration::from_secs(30),
                )
            })
            .collect();
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).unwrap();
        }
        produced.fetch_add(part.len() as u64, Ordering::Relaxed);
        tokio::time::sleep(every).await;
    }
}

/// The group's committed offsets (next offset to read) per partition;
/// partitions without a commit are left out.
async fn committed(group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let (group, topic) = (group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", pushflow_testkit::brokers())
            .set("group.id", &group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&topic, p);
        }
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

/// Per partition, the end of the prefix of offsets the lake holds: every
/// offset below it is in a file. Read straight from moto (not through the
/// proxy), from the file names (which carry their offset ranges).
async fn lake_prefix(lake: &Lake) -> BTreeMap<i32, i64> {
    let names: Vec<FileName> = lake
        .store
        .list(None)
        .try_filter_map(|m| async move { Ok(m.location.filename().and_then(FileName::parse)) })
        .try_collect()
        .await
        .unwrap();
    let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for n in names {
        ranges
            .entry(n.partition)
            .or_default()
            .push((n.first, n.last));
    }
    let mut out = BTreeMap::new();
    for (p, mut r) in ranges {
        r.sort();
        let mut end = 0;
        for (first, last) in r {
            if first > end {
                break; // a gap: later files do not extend the prefix
            }
            end = end.max(last + 1);
        }
        out.insert(p, end);
    }
    out
}

/// Partitions whose committed offset passes what the lake holds, as
/// messages (empty: none). Commits are read before the lake, which only
/// grows, so a message is never a false alarm.
async fn commits_beyond_lake(group: &str, topic: &str, lake: &Lake) -> Vec<String> {
    let commits = committed(group, topic).await;
    let held = lake_prefix(lake).await;
    commits
        .iter()
        .filter(|(p, c)| **c > held.get(p).copied().unwrap_or(0))
        .map(|(p, c)| {
            format!(
                "partition {p} committed up to {c} but the lake holds only offsets below {} \
                 (commits {commits:?}, lake {held:?})",
                held.get(p).copied().unwrap_or(0)
            )
        })
        .collect()
}

/// Compares the group's commits with the lake every 250 ms in the
/// background, for the whole run.
struct CommitWatch {
    group: String,
    topic: String,
    lake: Lake,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    checks: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CommitWatch {
    fn start(group: &str, topic: &str, lake: &Lake) -> CommitWatch {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let checks = Arc::new(AtomicU64::new(0));
        let (g, t, l, s, c) = (
            group.to_string(),
            topic.to_string(),
            lake.clone(),
            seen.clone(),
            checks.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let found = commits_beyond_lake(&g, &t, &l).await;
                s.lock().unwrap().extend(found);
                c.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        CommitWatch {
            group: group.to_string(),
            topic: topic.to_string(),
            lake: lake.clone(),
            seen,
            checks,
            task,
        }
    }

    /// Fails if a commit ever passed the lake (checking once more now).
    async fn assert_clean(&self, when: &str) {
        let now = commits_beyond_lake(&self.group, &self.topic, &self.lake).await;
        let seen = self.seen.lock().unwrap().clone();
        assert!(
            now.is_empty() && seen.is_empty(),
            "{when}: offsets committed before their records were in the lake: {now:?} {seen:?}"
        );
    }

    fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

impl Drop for CommitWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rows(sink: &Running) -> u64 {
    sink.stats.rows_written.load(Ordering::Relaxed)
}

/// Keeps `mode` for at least `min`, until `enough()` holds (at most 25 s).
async fn hold(proxy: &Proxy, mode: Mode, min: Duration, enough: impl Fn(&Proxy) -> bool) {
    proxy.set(mode);
    let started = Instant::now();
    tokio::time::sleep(min).await;
    while !enough(proxy) && started.elapsed() < Duration::from_secs(25) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rides_out_an_unreachable_then_failing_store() {
    let test_started = Instant::now();
    let (endpoint, bucket, moto_child) = moto_bucket("faults");
    let upstream = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("moto on 127.0.0.1:PORT");
    let proxy = Proxy::start(upstream).await;

    let registry = pushflow_testkit::start_registry().await;
    let codec = Codec::for_registry(&registry).unwrap();
    let u = pushflow_testkit::unique("flt").replace('-', "_");
    let topic = format!("{u}.notification.delivered");
    pushflow_testkit::create_topics(&[(&topic, PARTITIONS), (&format!("{topic}.dlq"), 1)]).await;

    // 3,000 deliveries from 00:30, 1.5 s apart: 1,200 in hour 00, 1,800 in
    // hour 01; produced over about 15 s so that they keep arriving while
    // the store is down.
    let events: Vec<_> = (0..TOTAL).map(delivered).collect();
    let records = encoded(&codec, &events).await;
    let produced = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn(trickle(
        topic.clone(),
        records,
        50,
        Duration::from_millis(250),
        produced.clone(),
    ));

    let prefix = "lake";
    let creds = [
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ];
    let through_proxy = proxy.endpoint();
    let mut options = vec![("aws_endpoint", through_proxy.as_str())];
    options.extend(creds);
    let group = pushflow_testkit::unique("faults-group");
    let sink = start_sink(
        &registry,
        &group,
        std::slice::from_ref(&topic),
        &format!("s3://{bucket}/{prefix}"),
        &options,
        test_config(150),
    );
    // The checker's own view of the lake, straight from moto.
    let mut direct = vec![("aws_endpoint", endpoint.as_str())];
    direct.extend(creds);
    let lake = Lake::open(&format!("s3://{bucket}/{prefix}"), &direct).unwrap();

    // Healthy start: some files land and some offsets commit.
    let watch = CommitWatch::start(&group, &topic, &lake);
    sink.wait_rows(300, Duration::from_secs(30)).await;
    watch.assert_clean("before the outage").await;

    // 1. Unreachable: every connection is reset before a request gets in.
    // Held until the store client has given up at least once (its own
    // retries exhausted), so that the sink's backoff and retry is what
    // carries the records through.
    proxy.set(Mode::Refuse);
    let outage_started = Instant::now();
    let arrived_before = produced.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await; // answers already on the wire
    let frozen = rows(&sink);
    let failures = |s: &Running| s.stats.upload_failures.load(Ordering::Relaxed);
    hold(&proxy, Mode::Refuse, Duration::from_secs(4), |p| {
        p.refused() >= 3 && failures(&sink) >= 1
    })
    .await;
    assert!(
        failures(&sink) >= 1,
        "the store client never gave up ({} connection attempts): nothing reached the sink's retry",
        proxy.refused()
    );
    // Batches go on being retried (and would be committed if the sink
    // wrongly treated the failed file as done).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!sink.task.is_finished(), "the sink stopped in the outage");
    assert_eq!(
        rows(&sink),
        frozen,
        "rows counted as written while unreachable"
    );
    assert!(
        produced.load(Ordering::Relaxed) > arrived_before,
        "no record arrived during the outage: the test tested nothing"
    );
    watch.assert_clean("store unreachable").await;
    let unreachable_for = outage_started.elapsed();

    // 2. Failing after the fact: requests reach moto (which may store the
    // object) but every answer is lost, so the sink must retry the same
    // file, under the same name.
    hold(&proxy, Mode::DropResponses, Duration::from_secs(3), |p| {
        p.dropped_responses() >= 2
    })
    .await;
    assert!(
        proxy.dropped_responses() >= 1,
        "no request reached the store while it was failing"
    );
    assert!(!sink.task.is_finished(), "the sink stopped in the outage");
    assert_eq!(
        rows(&sink),
        frozen,
        "rows counted as written without an answer"
    );
    watch.assert_clean("store failing").await;

    // 3. Healed: everything lands, once.
    proxy.set(Mode::Forward);
    producer.await.unwrap();
    sink.wait_rows(TOTAL, Duration::from_secs(40)).await;
    let stats = sink.stats.clone();
    sink.stop().await; // drains and commits synchronously
    assert_eq!(stats.rows_written.load(Ordering::Relaxed), TOTAL);
    assert_eq!(stats.dead_letters.load(Ordering::Relaxed), 0);
    let commits = committed(&group, &topic).await;
    assert_eq!(
        commits.values().sum::<i64>(),
        TOTAL as i64,
        "after the stop every offset is committed: {commits:?}"
    );
    watch.assert_clean("after recovery").await;
    assert!(
        watch.checks() >= 10,
        "only {} commit checks",
        watch.checks()
    );

    let out = python("lake_s3_check.py", &["check", &endpoint, &bucket, prefix]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let table = format!("{u}_notification_delivered");
    assert_eq!(v["ids"], TOTAL, "{v}");
    assert_eq!(v["distinct_ids"], TOTAL, "{v}");
    assert_eq!(v["files"][&table]["dt=2026-01-01/hour=00"], 1200, "{v}");
    assert_eq!(v["files"][&table]["dt=2026-01-01/hour=01"], 1800, "{v}");
    assert_eq!(v["misplaced"], 0, "{v}");
    eprintln!(
        "outage: {} connections refused, {} answers withheld, {} failed uploads ({:.1} s unreachable); \
         {} commit checks; {:?} in all",
        proxy.refused(),
        proxy.dropped_responses(),
        stats.upload_failures.load(Ordering::Relaxed),
        unreachable_for.as_secs_f64(),
        watch.checks(),
        test_started.elapsed()
    );
    drop(moto_child);
}
