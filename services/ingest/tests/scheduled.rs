//! `POST /v1/events/campaign.scheduled` and `/v1/events/campaign.cancelled`
//! over real HTTP, the real broker and registry: accepted, on the topic,
//! decoding to the scheduler's input (send_at as ms or RFC 3339, the
//! optional throttle); a schedule without send_at or with a throttle that
//! is not an int is refused, naming the field.

mod common;

use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_schemas::{CampaignCancelled, CampaignScheduled};
use serde_json::{json, Value};
use std::time::Duration;

async fn post(s: &Server, topic: &str, ct: &str, body: String) -> (u16, Value) {
    let r = client()
        .post(format!("{}/v1/events/{topic}", s.url))
        .header("content-type", ct)
        .bearer_auth(DEV_TOKEN)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn scheduled_and_cancelled_campaigns_are_accepted_and_on_their_topics() {
    let s = start("", &["campaign.scheduled", "campaign.cancelled"]).await;
    let codec = Codec::for_registry(&s.registry).unwrap();
    // One as ms with a throttle, one (NDJSON) as RFC 3339 without.
    let (st, body) = post(
        &s,
        "campaign.scheduled",
        "application/json",
        json!({"store_id": "s1", "campaign_id": "spring", "send_at": 1_893_456_000_000_i64,
               "throttle_per_minute": 1000})
        .to_string(),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let id = body["records"][0]["event_id"].as_str().unwrap().to_string();
    let (st, body) = post(
        &s,
        "campaign.scheduled",
        "application/x-ndjson",
        format!(
            "{}\n",
            json!({"store_id": "s1", "campaign_id": "summer", "send_at": "2030-01-01T00:00:05Z"})
        ),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let got = consume(&s.topic("campaign.scheduled"), 2, Duration::from_secs(20));
    let mut events = Vec::new();
    for (_, _, key, payload) in got {
        let e: CampaignScheduled = codec.decode(&payload).await.unwrap();
        assert_eq!(key, e.campaign_id.as_bytes());
        events.push(e);
    }
    events.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
    assert_eq!(events[0].campaign_id, "spring");
    assert_eq!(events[0].event_id, id);
    assert_eq!(events[0].send_at, 1_893_456_000_000);
    assert_eq!(events[0].throttle_per_minute, Some(1000));
    assert_eq!(events[1].send_at, 1_893_456_005_000);
    assert_eq!(events[1].throttle_per_minute, None);

    let (st, body) = post(
        &s,
        "campaign.cancelled",
        "application/json",
        json!({"store_id": "s1", "campaign_id": "spring"}).to_string(),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let got = consume(&s.topic("campaign.cancelled"), 1, Duration::from_secs(20));
    let e: CampaignCancelled = codec.decode(&got[0].3).await.unwrap();
    assert_eq!(
        (e.store_id.as_str(), e.campaign_id.as_str()),
        ("s1", "spring")
    );
    assert!(e.occurred_at > 1_700_000_000_000, "occurred_at filled in");

    // Refused, naming the field; nothing written.
    let (st, body) = post(
        &s,
        "campaign.scheduled",
        "application/json",
        json!({"store_id": "s1", "campaign_id": "autumn"}).to_string(),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        body["error"],
        json!("record 0: field `send_at`: required but missing")
    );
    let (st, body) = post(
        &s,
        "campaign.scheduled",
        "application/json",
        json!({"store_id": "s1", "campaign_id": "autumn", "send_at": 1, "throttle_per_minute": "fast"})
            .to_string(),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("field `throttle_per_minute`"),
        "{body}"
    );
    assert_eq!(count(&s.topic("campaign.scheduled")), 2);
}
