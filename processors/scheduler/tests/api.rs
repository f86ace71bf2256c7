//! Through the ingest API: `POST /v1/events/campaign.scheduled` and
//! `/v1/events/campaign.cancelled` over real HTTP to ingest (in-process,
//! writing to this test's topics), and the scheduler launches the one
//! scheduled campaign at its send_at and not the cancelled one.

mod common;

use common::{key, Env};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::http::serve;
use pushflow_runtime::kafka::Producer;
use pushflow_runtime::token::PingKeys;
use pushflow_runtime::CancellationToken;
use pushflow_scheduler::schedule::State;
use pushflow_schemas::now_millis;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "scheduler-api-test-token";

async fn ingest(env: &Env, stop: CancellationToken) -> String {
    let settings = format!(
        "tokens:\n  - {{name: ops, sha256: \"{}\", topics: [campaign.scheduled, campaign.cancelled]}}\n",
        pushflow_ingest::hash_token(TOKEN)
    );
    let s: pushflow_ingest::IngestSettings = serde_yaml::from_str(&settings).unwrap();
    let cfg = s.validate(|_| None).unwrap();
    let brokers = pushflow_testkit::brokers();
    let deps = pushflow_ingest::Deps {
        producer: Producer::new(&brokers, &BTreeMap::new(), cfg.produce_timeout).unwrap(),
        codec: Arc::new(Codec::for_registry(&env.services.registry).unwrap()),
        ping_keys: PingKeys::parse("k1:0123456789abcdef-test").unwrap(),
        topic_prefix: env.prefix.clone(),
        batches: Arc::new(pushflow_ingest::batches::Batches::new(
            &brokers,
            &BTreeMap::new(),
            cfg.produce_timeout,
            &env.prefix,
        )),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, pushflow_ingest::router(cfg, deps), stop));
    format!("http://{addr}")
}

async fn post(url: &str, topic: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/events/{topic}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scheduled_and_cancelled_through_the_ingest_api() {
    let env = Env::new().await;
    let stop = CancellationToken::new();
    let url = ingest(&env, stop.clone()).await;
    let task = tokio::spawn(env.scheduler().run_until(stop.clone(), None));
    let send_at = now_millis() + 3000;
    let (st, body) = post(
        &url,
        "campaign.scheduled",
        json!([
            {"store_id": "shop-1", "campaign_id": "api-1", "send_at": send_at, "throttle_per_minute": 60},
            {"store_id": "shop-1", "campaign_id": "api-2", "send_at": send_at}
        ]),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = post(
        &url,
        "campaign.cancelled",
        json!({"store_id": "shop-1", "campaign_id": "api-2"}),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    // A schedule without send_at is refused, naming the field.
    let (st, body) = post(
        &url,
        "campaign.scheduled",
        json!({"store_id": "shop-1", "campaign_id": "api-3"}),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        body["error"].as_str().unwrap().contains("send_at"),
        "{body}"
    );

    let launches = env
        .wait_launches(Duration::from_secs(30), "api-1 launched", |m| {
            m.contains_key(&key("shop-1", "api-1"))
        })
        .await;
    let l = &launches[&key("shop-1", "api-1")];
    assert_eq!(l.len(), 1);
    assert!(l[0].event.occurred_at >= send_at);
    assert_eq!(l[0].event.throttle_per_minute, Some(60));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let launches = env.launches_by_key().await;
    assert_eq!(launches.len(), 1, "only api-1: {:?}", launches.keys());
    assert_eq!(
        env.row("shop-1", "api-2").await.unwrap().state,
        State::Cancelled
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
