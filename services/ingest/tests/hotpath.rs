//! Per-ping CPU cost of the steps before the broker (run with --release
//! --ignored to print timings).

use apache_avro::types::Value;
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::token::{PingClaims, PingKeys};
use pushflow_schemas::Topic;
use std::sync::Arc;
use std::time::Instant;

#[tokio::test]
#[ignore = "timing only"]
async fn ping_hot_path_timings() {
    let keys = PingKeys::parse("k1:0123456789abcdef-test").unwrap();
    let token = keys.mint(&PingClaims {
        notification_id: "n-123456".into(),
        campaign_id: "c-1".into(),
        store_id: "s-1".into(),
        subscriber_id: "u-1".into(),
        exp: 4_000_000_000,
        iat: Some(1_700_000_000),
    });
    let body = serde_json::json!({"type": "delivered", "token": token}).to_string();
    let codec = Codec::new(Arc::new(InMemoryResolver::new()));
    let topic = Topic::by_name("notification.delivered").unwrap();
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        std::hint::black_box(v);
    }
    println!("json parse: {:?}/op", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(keys.verify(&token, 1).unwrap());
    }
    println!("verify: {:?}/op", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(pushflow_schemas::new_event_id());
    }
    println!("uuid: {:?}/op", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        let value = Value::Record(vec![
            ("event_id".into(), Value::Uuid(uuid::Uuid::new_v4())),
            ("occurred_at".into(), Value::TimestampMillis(1)),
            ("store_id".into(), Value::String("s".into())),
            ("notification_id".into(), Value::String("n".into())),
            ("campaign_id".into(), Value::String("c".into())),
        ]);
        std::hint::black_box(codec.encode_value(topic, value).await.unwrap());
    }
    println!("encode: {:?}/op", t.elapsed() / n);
}
