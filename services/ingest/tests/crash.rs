//! kill -9 of ingest while clients are sending loses none of the records
//! answered 201: ingest runs in a child process (this test binary re-run
//! with `INGEST_CRASH_CHILD` set), clients record every acknowledged
//! (event_id, partition, offset), the child is SIGKILLed mid-way, and the
//! topic is read back.

mod common;

use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_schemas::CampaignLaunched;
use pushflow_testkit::crash::{child_settings, ChildTest};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "INGEST_CRASH_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_9_loses_no_acknowledged_record"]
async fn child_ingest_server() {
    let Some(cfg) = child_settings::<Value>(CHILD_ENV) else {
        return;
    };
    let arg = |k: &str| cfg[k].as_str().unwrap().to_string();
    let s = start_on(
        &settings_yaml(""),
        &pushflow_testkit::brokers(),
        &arg("prefix"),
        arg("registry"),
    )
    .await;
    std::fs::write(arg("addr_file"), &s.url).unwrap();
    // Bounded: the parent kills us long before this.
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_record() {
    let registry = pushflow_testkit::start_registry().await;
    let prefix = format!("{}.", pushflow_testkit::unique("ingest-crash"));
    let topic = format!("{prefix}campaign.launched");
    pushflow_testkit::create_topics(&[(&topic, 3)]).await;
    let dir = std::env::temp_dir().join(pushflow_testkit::unique("ingest-crash"));
    std::fs::create_dir_all(&dir).unwrap();
    let addr_file = dir.join("addr");
    let cfg = json!({"addr_file": addr_file, "registry": registry, "prefix": prefix});
    let mut child = ChildTest::new("child_ingest_server")
        .settings(CHILD_ENV, &cfg)
        .spawn();
    let started = Instant::now();
    let url = loop {
        if let Ok(u) = std::fs::read_to_string(&addr_file) {
            if !u.is_empty() {
                break u;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "child did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let acked: Arc<Mutex<HashMap<String, (i64, i64)>>> = Arc::default();
    let mut senders = Vec::new();
    for c in 0..8 {
        let (url, acked) = (url.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut failures = 0;
            for i in 0.. {
                let batch: Vec<Value> = (0..5)
                    .map(|j| json!({"store_id": "s", "campaign_id": format!("c{c}-{i}-{j}"), "event_id": uuid::Uuid::new_v4().to_string()}))
                    .collect();
                let r = client
                    .post(format!("{url}/v1/events/campaign.launched"))
                    .bearer_auth(DEV_TOKEN)
                    .json(&batch)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        let body: Value = r.json().await.unwrap();
                        let mut a = acked.lock().unwrap();
                        for rec in body["records"].as_array().unwrap() {
                            a.insert(
                                rec["event_id"].as_str().unwrap().to_string(),
                                (rec["partition"].as_i64().unwrap(), rec["offset"].as_i64().unwrap()),
                            );
                        }
                    }
                    _ => {
                        failures += 1;
                        if failures > 3 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }));
    }
    // Let clients get some acks, then kill -9 mid-stream.
    let t0 = Instant::now();
    while acked.lock().unwrap().len() < 200 && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill(); // SIGKILL
    for s in senders {
        tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .unwrap()
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "only {} records were acknowledged before the kill",
        acked.len()
    );

    // Read everything up to the high watermarks.
    let read = consume_all(&topic, Duration::from_secs(60));
    let total = read.len();
    let codec = Codec::for_registry(&registry).unwrap();
    let mut on_topic: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for (p, o, _, payload) in &read {
        let e: CampaignLaunched = codec.decode(payload).await.unwrap();
        on_topic
            .entry(e.event_id)
            .or_default()
            .push((i64::from(*p), *o));
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(id, at)| !on_topic.get(*id).is_some_and(|v| v.contains(at)))
        .map(|(id, at)| (id, at, on_topic.get(id)))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records missing or moved (read {total}), e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    println!(
        "kill -9: {} acknowledged records, all on the topic ({} records in total)",
        acked.len(),
        total
    );
    let _ = std::fs::remove_dir_all(dir);
}
