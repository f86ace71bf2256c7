//! The consumer loop against the real broker: offsets are stored only
//! after the handler confirms the effect, poison records go to the DLQ,
//! and SIGTERM leaves nothing processed-but-uncommitted.
//!
//! Crash tests run the loop in a child process: this test binary re-executed
//! with `PF_CHILD` set, running the ignored test `child_consumer`.

use async_trait::async_trait;
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::kafka::dlq::headers;
use pushflow_runtime::kafka::{
    run_consumer, ConsumerSettings, DeadLetters, Durable, Handler, Producer, Record,
};
use pushflow_runtime::{CancellationToken, RuntimeError};
use pushflow_testkit::{brokers, create_topics, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Appends one line per processed record to a file (the "effect"), with
/// an fsync, optionally killing its own process with SIGKILL right after
/// the effect of the record at `crash_at` (before confirming it).
struct FileEffect {
    path: String,
    crash_at: Option<String>,
    delay: Duration,
}

#[async_trait]
impl Handler for FileEffect {
    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap();
        for r in batch {
            let payload =
                String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).to_string();
            writeln!(f, "{payload}").unwrap();
            f.sync_all().unwrap();
            if self.crash_at.as_deref() == Some(payload.as_str()) {
                let pid = std::process::id().to_string();
                Command::new("kill").args(["-9", &pid]).status().unwrap();
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        tokio::time::sleep(self.delay).await;
        Ok(Durable::All)
    }
}

/// The child process: runs the loop until SIGTERM.
#[test]
#[ignore = "run only as a child of the crash tests"]
fn child_consumer() {
    let Ok(topic) = std::env::var("PF_CHILD") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut settings = ConsumerSettings::new(
            "test-child",
            &brokers(),
            &std::env::var("PF_GROUP").unwrap(),
            vec![topic],
        );
        settings.max_batch = std::env::var("PF_BATCH").unwrap().parse().unwrap();
        let mut handler = FileEffect {
            path: std::env::var("PF_EFFECT").unwrap(),
            crash_at: std::env::var("PF_CRASH_AT").ok(),
            delay: Duration::from_millis(std::env::var("PF_DELAY_MS").unwrap().parse().unwrap()),
        };
        let shutdown = CancellationToken::new();
        pushflow_runtime::component::cancel_on_signal(shutdown.clone());
        run_consumer(&settings, &mut handler, shutdown)
            .await
            .unwrap();
    });
}

fn spawn_child(
    topic: &str,
    group: &str,
    effect: &str,
    batch: usize,
    delay_ms: u64,
    crash_at: Option<&str>,
) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_consumer",
        "--nocapture",
        "--include-ignored",
    ])
    .env("PF_CHILD", topic)
    .env("PF_GROUP", group)
    .env("PF_EFFECT", effect)
    .env("PF_BATCH", batch.to_string())
    .env("PF_DELAY_MS", delay_ms.to_string());
    if let Some(c) = crash_at {
        cmd.env("PF_CRASH_AT", c);
    }
    cmd.spawn().unwrap()
}

fn lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn counts(path: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for l in lines(path) {
        *m.entry(l).or_default() += 1;
    }
    m
}

async fn produce(topic: &str, n: usize) -> Vec<String> {
    let p = Producer::new(&brokers(), &BTreeMap::new(), Duration::from_secs(30)).unwrap();
    let mut sent = Vec::new();
    for i in 0..n {
        let v = format!("{topic}#{i}");
        p.send(topic, Some(format!("k{i}").as_bytes()), v.as_bytes(), &[])
            .await
            .unwrap();
        sent.push(v);
    }
    sent
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

fn sigterm(child: &mut Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "child exited with {status} after SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_confirmation_replays_the_record() {
    let topic = unique("loop-crash");
    create_topics(&[(&topic, 2)]).await;
    let sent = produce(&topic, 20).await;
    let group = unique("g");
    let dir = std::env::temp_dir().join(unique("effects"));
    let effect = dir.to_str().unwrap().to_string();
    let victim = sent[7].clone();

    // First run: the child kills itself (SIGKILL) right after the effect of
    // `victim`, before the loop could commit it.
    let mut child = spawn_child(&topic, &group, &effect, 1, 0, Some(&victim));
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success(), "child should have died by SIGKILL");
    assert_eq!(counts(&effect).get(&victim), Some(&1));

    // Second run: no crash; wait until every record has been processed.
    let mut child = spawn_child(&topic, &group, &effect, 1, 0, None);
    let all = sent.clone();
    let e2 = effect.clone();
    let done = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(60), || {
            let c = counts(&e2);
            all.iter().all(|s| c.contains_key(s))
        })
    })
    .await
    .unwrap();
    sigterm(&mut child);
    assert!(
        done,
        "not every record was processed: {:?}",
        counts(&effect)
    );
    let c = counts(&effect);
    assert!(
        c[&victim] >= 2,
        "the record whose effect was not confirmed must be processed again, got {}",
        c[&victim]
    );
    let _ = std::fs::remove_file(&effect);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_leaves_no_processed_but_uncommitted_record() {
    let topic = unique("loop-term");
    create_topics(&[(&topic, 3)]).await;
    let sent = produce(&topic, 300).await;
    let group = unique("g");
    let effect = std::env::temp_dir()
        .join(unique("effects"))
        .to_str()
        .unwrap()
        .to_string();

    // Stop the first child with SIGTERM mid-way through, then a second
    // child finishes. Every record must be processed exactly once.
    let mut child = spawn_child(&topic, &group, &effect, 10, 20, None);
    let e = effect.clone();
    assert!(
        tokio::task::spawn_blocking(move || wait_until(Duration::from_secs(60), || lines(&e)
            .len()
            >= 60))
        .await
        .unwrap()
    );
    sigterm(&mut child);
    let after_first = lines(&effect).len();
    assert!(
        after_first < sent.len(),
        "first child should not have finished"
    );

    let mut child = spawn_child(&topic, &group, &effect, 50, 0, None);
    let e = effect.clone();
    let n = sent.len();
    let done = tokio::task::spawn_blocking(move || {
        wait_until(Duration::from_secs(60), || lines(&e).len() >= n)
    })
    .await
    .unwrap();
    // Give a duplicate (if any) time to show up before stopping.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&mut child);
    assert!(
        done,
        "only {} of {} records processed",
        lines(&effect).len(),
        n
    );
    let c = counts(&effect);
    let dups: Vec<_> = c.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "records processed twice after a clean stop: {dups:?}"
    );
    assert_eq!(c.len(), sent.len());
    let _ = std::fs::remove_file(&effect);
}

/// Decodes every record as a `notification.delivered`; a record that does
/// not decode goes to the DLQ.
struct Decoding {
    codec: Arc<Codec>,
    dlq: DeadLetters,
    decoded: Vec<String>,
}

#[async_trait]
impl Handler for Decoding {
    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        for r in batch {
            let bytes = r.payload.clone().unwrap_or_default();
            match self
                .codec
                .decode::<pushflow_schemas::NotificationDelivered>(&bytes)
                .await
            {
                Ok(e) => self.decoded.push(e.notification_id),
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => self.dlq.send(r, &e.to_string()).await?,
            }
        }
        Ok(Durable::All)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_record_goes_to_the_dlq_and_the_loop_goes_on() {
    let topic = unique("loop-poison");
    let dlq = format!("{topic}.dlq");
    create_topics(&[(&topic, 1), (&dlq, 1)]).await;
    let codec = Arc::new(Codec::new(Arc::new(InMemoryResolver::new())));
    let producer = Producer::new(&brokers(), &BTreeMap::new(), Duration::from_secs(30)).unwrap();
    let event = |n: &str| pushflow_schemas::NotificationDelivered {
        event_id: pushflow_schemas::new_event_id(),
        occurred_at: 1_767_225_600_000,
        store_id: "s".into(),
        notification_id: n.into(),
        campaign_id: "c".into(),
    };
    let good1 = codec.encode(&event("n1")).await.unwrap();
    let good2 = codec.encode(&event("n2")).await.unwrap();
    for (k, v) in [
        ("n1", good1),
        ("bad", b"{\"not\":\"avro\"}".to_vec()),
        ("n2", good2),
    ] {
        producer
            .send(&topic, Some(k.as_bytes()), &v, &[("trace", b"t1")])
            .await
            .unwrap();
    }

    let mut handler = Decoding {
        codec,
        dlq: DeadLetters::new(producer, "loop-test"),
        decoded: Vec::new(),
    };
    let settings =
        ConsumerSettings::new("loop-test", &brokers(), &unique("g"), vec![topic.clone()]);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let run = async {
        run_consumer(&settings, &mut handler, shutdown)
            .await
            .unwrap();
    };
    let watchdog = async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        stop.cancel();
    };
    // Read the DLQ while the loop runs; stop the loop once it is there.
    let dlq_reader = {
        let dlq = dlq.clone();
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || {
            let c: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", brokers())
                .set("group.id", unique("dlq-reader"))
                .set("auto.offset.reset", "earliest")
                .create()
                .unwrap();
            c.subscribe(&[&dlq]).unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(60) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                    let hs: HashMap<String, String> = m
                        .headers()
                        .unwrap()
                        .iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap()).to_string(),
                            )
                        })
                        .collect();
                    let payload = m.payload().unwrap().to_vec();
                    let key = m.key().unwrap().to_vec();
                    std::thread::sleep(Duration::from_millis(500));
                    stop.cancel();
                    return Some((key, payload, hs));
                }
            }
            stop.cancel();
            None
        })
    };
    tokio::select! {
        _ = run => {},
        _ = watchdog => {},
    }
    let (key, payload, hs) = dlq_reader.await.unwrap().expect("a dead letter arrived");
    assert_eq!(key, b"bad");
    assert_eq!(payload, b"{\"not\":\"avro\"}");
    assert_eq!(hs[headers::TOPIC], topic);
    assert_eq!(hs[headers::PARTITION], "0");
    assert_eq!(hs[headers::OFFSET], "1");
    assert_eq!(hs[headers::COMPONENT], "loop-test");
    assert_eq!(hs["trace"], "t1", "original headers are kept");
    assert!(
        hs[headers::ERROR].contains("wrong magic byte 123"),
        "{}",
        hs[headers::ERROR]
    );
    assert_eq!(
        handler.decoded,
        vec!["n1".to_string(), "n2".to_string()],
        "the loop went on past the poison record"
    );
}
