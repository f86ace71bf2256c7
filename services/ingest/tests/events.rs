//! `/v1/events/{topic}` over real HTTP, the real broker and registry.

mod common;

use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_schemas::{CampaignCreated, CampaignLaunched, Urgency};
use serde_json::{json, Value};
use std::time::Duration;

fn campaign(i: usize) -> Value {
    json!({"store_id": "s1", "campaign_id": format!("c-{i}"), "title": format!("T{i}"), "body": "B",
           "url": "https://shop.example/x", "ttl_seconds": 60, "urgency": "high"})
}

async fn post(
    s: &Server,
    topic: &str,
    token: Option<&str>,
    ct: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client()
        .post(format!("{}/v1/events/{topic}", s.url))
        .header("content-type", ct)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body, headers)
}

#[tokio::test]
async fn a_valid_batch_is_on_the_topic_and_decodes() {
    let s = start("", &["campaign.created", "campaign.launched"]).await;
    let batch = json!([campaign(0), campaign(1), campaign(2)]);
    let (st, body, _) = post(
        &s,
        "campaign.created",
        Some(BILLING_TOKEN),
        "application/json",
        batch.to_string(),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let recs = body["records"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    let got = consume(&s.topic("campaign.created"), 3, Duration::from_secs(20));
    assert_eq!(got.len(), 3);
    let codec = Codec::for_registry(&s.registry).unwrap();
    for (p, o, key, payload) in got {
        let e: CampaignCreated = codec.decode(&payload).await.unwrap();
        assert_eq!(key, e.campaign_id.as_bytes());
        assert_eq!(e.urgency, Urgency::High);
        let i: usize = e.campaign_id[2..].parse().unwrap();
        assert_eq!(e.title, format!("T{i}"));
        assert_eq!(recs[i]["partition"], json!(p));
        assert_eq!(recs[i]["offset"], json!(o));
        assert_eq!(recs[i]["event_id"], json!(e.event_id));
        assert!(e.occurred_at > 1_700_000_000_000);
    }
    // NDJSON with a given event_id and an RFC 3339 time.
    let id = "7b0c1a52-9d55-4f57-a1a8-5d6c3f0e9a11";
    let nd = format!(
        "{}\n\n{}\n",
        json!({"store_id": "s1", "campaign_id": "L1", "event_id": id, "occurred_at": "2026-01-01T00:00:00Z"}),
        json!({"store_id": "s1", "campaign_id": "L2", "occurred_at": 1_767_225_600_001_i64})
    );
    let (st, body, _) = post(
        &s,
        "campaign.launched",
        Some(DEV_TOKEN),
        "application/x-ndjson",
        nd,
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["records"][0]["event_id"], json!(id));
    let got = consume(&s.topic("campaign.launched"), 2, Duration::from_secs(20));
    let mut events = Vec::new();
    for (_, _, _, payload) in got {
        events.push(codec.decode::<CampaignLaunched>(&payload).await.unwrap());
    }
    events.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
    assert_eq!(events[0].event_id, id);
    assert_eq!(events[0].occurred_at, 1_767_225_600_000);
    assert_eq!(events[1].occurred_at, 1_767_225_600_001);
}

#[tokio::test]
async fn every_error_path_answers_with_its_status_and_message() {
    let s = start("max_body: 2KiB\n", &["campaign.created"]).await;
    let topic = "campaign.created";
    // 400 naming the record's index and the field; nothing of the batch produced.
    let mut bad = campaign(2);
    bad["urgency"] = json!("urgentish");
    let batch = json!([campaign(0), campaign(1), bad]);
    let (st, body, _) = post(
        &s,
        topic,
        Some(DEV_TOKEN),
        "application/json",
        batch.to_string(),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        body["error"],
        json!("record 2: field `urgency`: \"urgentish\" is not one of very_low, low, normal, high")
    );
    let mut missing = campaign(0);
    missing.as_object_mut().unwrap().remove("url");
    let (st, body, _) = post(
        &s,
        topic,
        Some(DEV_TOKEN),
        "application/json",
        missing.to_string(),
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str().unwrap()),
        (400, "record 0: field `url`: required but missing")
    );
    // Malformed JSON: line and column.
    let (st, body, _) = post(
        &s,
        topic,
        Some(DEV_TOKEN),
        "application/json",
        "{\n  \"store_id\": }",
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON at line 2 column 15"),
        "{body}"
    );
    // 401 missing / invalid, 403 scope, 404 topic, 413 size, 415 type.
    let one = campaign(0).to_string();
    let (st, body, _) = post(&s, topic, None, "application/json", one.clone()).await;
    assert_eq!(st, 401, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("missing bearer token"));
    let (st, body, _) = post(
        &s,
        topic,
        Some("wrong-token"),
        "application/json",
        one.clone(),
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str().unwrap()),
        (401, "invalid bearer token")
    );
    let (st, body, _) = post(
        &s,
        "campaign.launched",
        Some(BILLING_TOKEN),
        "application/json",
        "{}",
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(
        body["error"],
        json!("token \"billing\" may not write to topic \"campaign.launched\"")
    );
    let (st, body, _) = post(
        &s,
        "no.such.topic",
        Some(DEV_TOKEN),
        "application/json",
        one.clone(),
    )
    .await;
    assert_eq!(st, 404);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("unknown topic \"no.such.topic\""));
    let big = Value::Array(vec![campaign(0); 40]).to_string();
    assert!(big.len() > 2048);
    let (st, body, _) = post(&s, topic, Some(DEV_TOKEN), "application/json", big).await;
    assert_eq!(st, 413, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("limit of 2048 bytes"));
    let (st, body, _) = post(&s, topic, Some(DEV_TOKEN), "text/csv", one).await;
    assert_eq!(st, 415);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("application/x-ndjson"));
    // All or nothing: none of the refused records reached the topic; only
    // a valid marker sent afterwards is there.
    let (st, _, _) = post(
        &s,
        topic,
        Some(DEV_TOKEN),
        "application/json",
        campaign(7).to_string(),
    )
    .await;
    assert_eq!(st, 201);
    let all = consume_all(&s.topic(topic), Duration::from_secs(20));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].2, b"c-7");
}

#[tokio::test]
async fn billable_topics_and_other_stores_are_refused_whole() {
    let s = start("", &["campaign.created"]).await;
    // Impressions and clicks enter only as signed pings, whatever the token.
    for topic in ["notification.delivered", "notification.clicked"] {
        let one = json!({"store_id": "s1", "notification_id": "n1", "campaign_id": "c1"});
        let (st, body, _) = post(
            &s,
            topic,
            Some(DEV_TOKEN),
            "application/json",
            one.to_string(),
        )
        .await;
        assert_eq!(st, 403, "{topic}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{topic} is billable")), "{msg}");
        assert!(msg.contains("/v1/pings"), "{msg}");
    }
    // A store-scoped token: a batch with one record of another store is
    // refused whole, naming the record and the store.
    let mut other = campaign(1);
    other["store_id"] = json!("s2");
    let batch = json!([campaign(0), other]);
    let (st, body, _) = post(
        &s,
        "campaign.created",
        Some(SHOP_TOKEN),
        "application/json",
        batch.to_string(),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(
        body["error"],
        json!("record 1: token \"shop\" may not write for store \"s2\" (it covers: s1); the whole batch was refused")
    );
    let (st, body, _) = post(
        &s,
        "campaign.created",
        Some(SHOP_TOKEN),
        "application/json",
        campaign(2).to_string(),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let all = consume_all(&s.topic("campaign.created"), Duration::from_secs(20));
    assert_eq!(all.len(), 1, "only the covered record");
    assert_eq!(all[0].2, b"c-2");
}

#[tokio::test]
async fn an_unreachable_broker_gets_503_with_retry_after_within_the_bound() {
    let settings = settings_yaml("produce_timeout: 1s\n");
    let s = start_with(&settings, "127.0.0.1:1", &[], None).await;
    let started = std::time::Instant::now();
    let (st, body, headers) = post(
        &s,
        "campaign.created",
        Some(DEV_TOKEN),
        "application/json",
        campaign(0).to_string(),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("broker did not acknowledge"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn refuses_to_start_with_no_tokens_unless_anonymous_is_explicit() {
    let t = pushflow_testkit::topology_with("127.0.0.1:9092", "http://127.0.0.1:1", "postgres://x");
    let spec: pushflow_runtime::topology::ComponentSpec =
        serde_yaml::from_str("name: ingest\ntype: ingest\n").unwrap();
    let e = pushflow_ingest::IngestComponent::with_env(&spec, &t, |_| None)
        .err()
        .unwrap();
    assert!(e.to_string().contains("allow_anonymous"), "{e}");
    let spec: pushflow_runtime::topology::ComponentSpec =
        serde_yaml::from_str("name: ingest\ntype: ingest\nsettings: {allow_anonymous: true}\n")
            .unwrap();
    assert!(pushflow_ingest::IngestComponent::with_env(&spec, &t, |_| None).is_ok());
    // The repository's topology declares ingest with the dev token.
    let repo = t
        .components
        .iter()
        .find(|c| c.kind == "ingest")
        .expect("topology.yaml declares ingest");
    assert!(pushflow_ingest::IngestComponent::with_env(repo, &t, |_| None).is_ok());
}

#[tokio::test]
async fn confluent_clients_decode_what_ingest_wrote() {
    let s = start("", &["campaign.created"]).await;
    let mut batch = vec![campaign(0), campaign(1)];
    batch[1]["icon"] = json!("https://shop.example/i.png");
    batch[1]["occurred_at"] = json!("2026-03-01T12:00:00.123Z");
    let (st, body, _) = post(
        &s,
        "campaign.created",
        Some(DEV_TOKEN),
        "application/json",
        Value::Array(batch.clone()).to_string(),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let expected: Vec<Value> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&batch)
        .map(|(r, sent)| {
            let mut fields = sent.clone();
            if fields["occurred_at"].is_string() {
                fields["occurred_at"] = json!(1_772_366_400_123_i64);
            } else {
                fields.as_object_mut().unwrap().remove("occurred_at");
            }
            json!({"partition": r["partition"], "offset": r["offset"], "event_id": r["event_id"], "fields": fields})
        })
        .collect();
    let file =
        std::env::temp_dir().join(format!("{}.json", pushflow_testkit::unique("ingest-wire")));
    std::fs::write(&file, serde_json::to_vec(&expected).unwrap()).unwrap();
    // Async: the registry is served by this test's runtime.
    let stdout = pushflow_testkit::python_async(
        "ingest_wire.py",
        &[
            &pushflow_testkit::brokers(),
            &s.topic("campaign.created"),
            &s.registry,
            file.to_str().unwrap(),
        ],
        Duration::from_secs(90),
    )
    .await;
    let _ = std::fs::remove_file(&file);
    assert!(stdout.contains("2 records decoded"));
}

/// High watermark summed over `topic`'s partitions (records written,
/// committed or not).
fn written(c: &rdkafka::consumer::BaseConsumer, topic: &str) -> i64 {
    use rdkafka::consumer::Consumer;
    (0..3)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(2))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// Records and distinct event ids on `topic`, read_committed by an
/// independent client (tests/python/event_ids.py).
fn committed(brokers: &str, registry: &str, topic: &str) -> (i64, i64) {
    let out = pushflow_testkit::python("event_ids.py", &[brokers, registry, topic]);
    let v: Value = serde_json::from_str(&out).unwrap();
    (
        v[topic]["records"].as_i64().unwrap(),
        v[topic]["distinct_event_ids"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_written_whole_or_not_at_all_when_the_broker_stops_mid_batch() {
    const N: usize = 60_000;
    let mut broker = pushflow_testkit::PrivateBroker::start();
    let s = start_with(
        &settings_yaml("max_body: 16MiB\nproduce_timeout: 3s\n"),
        &broker.addr,
        &["campaign.launched"],
        None,
    )
    .await;
    let topic = s.topic("campaign.launched");
    let body: String = (0..N)
        .map(|i| {
            let id = format!("00000000-0000-4000-8000-{i:012}");
            format!(
                "{}\n",
                json!({"store_id": "s1", "campaign_id": format!("c-{i}"), "event_id": id})
            )
        })
        .collect();
    let http = client();
    let send = |body: String| {
        http.post(format!("{}/v1/events/campaign.launched", s.url))
            .bearer_auth(DEV_TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };

    // The broker dies once the first records of the batch are on it.
    let watcher: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        // The high watermark, not the last stable offset: records of an
        // open transaction count.
        .set("isolation.level", "read_uncommitted")
        .set("log_level", "0")
        .create()
        .unwrap();
    written(&watcher, &topic); // connected before the batch starts
    let first = tokio::spawn(send(body.clone()));
    let started = std::time::Instant::now();
    while written(&watcher, &topic) == 0 {
        assert!(
            !first.is_finished() && started.elapsed() < Duration::from_secs(30),
            "the batch was answered before any record reached the broker"
        );
    }
    broker.stop();
    let r = first.await.unwrap().unwrap();
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        status,
        503,
        "the batch committed before the broker died (a faster machine than this test assumes): {}",
        answer.to_string().chars().take(300).collect::<String>()
    );
    let msg = answer["error"].as_str().unwrap();
    assert!(
        msg.contains(&format!("none of its {N} records was written")),
        "{msg}"
    );

    // Back up: nothing of that batch is visible to read_committed readers
    // (the aborted transaction's records are skipped) ...
    broker.restart();
    assert_eq!(
        committed(&broker.addr, &s.registry, &topic),
        (0, 0),
        "a 503 that says nothing was written"
    );
    // ... and the client's retry of the same batch writes each event once.
    let started = std::time::Instant::now();
    let records = loop {
        let r = send(body.clone()).await.unwrap();
        if r.status().as_u16() == 201 {
            let v: Value = r.json().await.unwrap();
            break v["records"].as_array().unwrap().len();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the retry was not accepted within 90 s: {}",
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(records, N);
    assert_eq!(
        committed(&broker.addr, &s.registry, &topic),
        (N as i64, N as i64),
        "every record of the batch once"
    );
}
