//! The sink writes a known event set to S3 (moto on loopback); pyarrow,
//! an independent reader, checks row counts per table and partition and
//! the timestamp type; an undecodable record goes to the DLQ.

mod common;

use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_schemas::CampaignLaunched;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_events_to_s3_exactly_and_readably() {
    let (endpoint, bucket, moto_child) = moto_bucket("lake");

    let registry = pushflow_testkit::start_registry().await;
    let codec = Codec::for_registry(&registry).unwrap();
    let u = pushflow_testkit::unique("s3t").replace('-', "_");
    let delivered_topic = format!("{u}.notification.delivered");
    let launched_topic = format!("{u}.campaign.launched");
    pushflow_testkit::create_topics(&[
        (&delivered_topic, 2),
        (&launched_topic, 1),
        (&format!("{delivered_topic}.dlq"), 1),
        (&format!("{launched_topic}.dlq"), 1),
    ])
    .await;

    // 3,000 deliveries from 00:30 (1,200 in hour 00, 1,800 in hour 01),
    // 40 launches at 23:00 of the day before, one undecodable record.
    let deliveries: Vec<_> = (0..3000).map(delivered).collect();
    let launches: Vec<_> = (0..40)
        .map(|i| CampaignLaunched {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: T0 - 5_400_000 + i * 1000,
            store_id: "s".into(),
            campaign_id: format!("c-{i}"),
            throttle_per_minute: None,
        })
        .collect();
    let mut records = encoded(&codec, &deliveries).await;
    records.insert(1500, ("bad".into(), b"{\"not\": \"avro\"}".to_vec()));
    produce(&delivered_topic, &records).await;
    produce(&launched_topic, &encoded(&codec, &launches).await).await;

    let prefix = "lake/prod";
    let options = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ];
    let sink = start_sink(
        &registry,
        &pushflow_testkit::unique("lake-group"),
        &[delivered_topic.clone(), launched_topic.clone()],
        &format!("s3://{bucket}/{prefix}"),
        &options,
        test_config(700),
    );
    sink.wait_rows(3040, Duration::from_secs(90)).await;
    let stats = sink.stats.clone();
    sink.stop().await;
    assert_eq!(
        stats
            .dead_letters
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    let out = python("lake_s3_check.py", &["check", &endpoint, &bucket, prefix]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let dt = format!("{u}_notification_delivered");
    let lt = format!("{u}_campaign_launched");
    assert_eq!(v["files"][&dt]["dt=2026-01-01/hour=00"], 1200, "{v}");
    assert_eq!(v["files"][&dt]["dt=2026-01-01/hour=01"], 1800, "{v}");
    assert_eq!(v["files"][&dt].as_object().unwrap().len(), 2, "{v}");
    assert_eq!(v["files"][&lt]["dt=2025-12-31/hour=23"], 40, "{v}");
    assert_eq!(v["ids"], 3040);
    assert_eq!(v["distinct_ids"], 3040);
    assert_eq!(v["misplaced"], 0, "{v}");
    assert_eq!(
        v["timestamp"],
        serde_json::json!([["INT64", "Timestamp(isAdjustedToUTC=true, timeUnit=milliseconds, is_from_converted_type=false, force_set_converted_type=false)"]]),
        "{v}"
    );
    assert_eq!(
        v["occurred_at"][&dt],
        serde_json::json!([T0, T0 + 2999 * 1500])
    );

    // The bad record is in the DLQ, unchanged.
    let (n, _, _) = pushflow_runtime::kafka::rate::raw_consume(
        &pushflow_testkit::brokers(),
        &format!("{delivered_topic}.dlq"),
        1,
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(n, 1);
    drop(moto_child);
}
