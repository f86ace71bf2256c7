//! Issue 7, item 2: a file larger than the multipart threshold goes up to
//! S3 (moto on loopback) as a multipart upload of `part_size` parts — 5 MiB,
//! the smallest part S3 accepts — and reads back exactly: boto3 sees one
//! object whose ETag names its parts, pyarrow finds every row, byte for
//! byte, once.

mod common;

use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_s3_parquet::sink::SinkConfig;
use pushflow_schemas::NotificationDelivered;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

const ROWS: u64 = 1_400;
const PART: u64 = 5 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_a_large_file_as_a_multipart_upload_that_reads_back_exactly() {
    let (endpoint, bucket, moto_child) = moto_bucket("multipart");

    let registry = pushflow_testkit::start_registry().await;
    let codec = Codec::for_registry(&registry).unwrap();
    let u = pushflow_testkit::unique("mpu").replace('-', "_");
    let topic = format!("{u}.notification.delivered");
    pushflow_testkit::create_topics(&[(&topic, 1), (&format!("{topic}.dlq"), 1)]).await;

    // 1,400 events of ~8 KiB of random text each (≈ 11 MiB uncompressed,
    // so 3 parts of 5 MiB), all in one hour so that they make one file.
    let events: Vec<NotificationDelivered> = (0..ROWS)
        .map(|i| NotificationDelivered {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: T0 + i as i64 * 100,
            store_id: format!("store-{}", i % 7),
            notification_id: format!("n-{i}"), // the Kafka key: kept short
            campaign_id: (0..256)
                .map(|_| uuid::Uuid::new_v4().simple().to_string())
                .collect(),
        })
        .collect();
    produce(&topic, &encoded(&codec, &events).await).await;
    let expected = std::env::temp_dir().join(format!("{u}.expected.jsonl"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&expected).unwrap());
        for e in &events {
            serde_json::to_writer(&mut f, e).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }

    let prefix = "lake";
    let options = [
        ("aws_endpoint", endpoint.as_str()),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ];
    let config = SinkConfig {
        compression: "none".into(),
        multipart_threshold: "5MiB".into(),
        part_size: "5MiB".into(),
        flush_idle: "5s".into(),
        ..SinkConfig::default()
    };
    let sink = start_sink(
        &registry,
        &pushflow_testkit::unique("multipart-group"),
        std::slice::from_ref(&topic),
        &format!("s3://{bucket}/{prefix}"),
        &options,
        config,
    );
    sink.wait_rows(ROWS, Duration::from_secs(60)).await;
    let stats = sink.stats.clone();
    sink.stop().await;
    assert_eq!(stats.files_written.load(Ordering::Relaxed), 1);
    assert_eq!(stats.multipart_files.load(Ordering::Relaxed), 1);
    assert_eq!(stats.upload_failures.load(Ordering::Relaxed), 0);

    let out = python(
        "lake_s3_check.py",
        &[
            "objects",
            &endpoint,
            &bucket,
            prefix,
            expected.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&expected);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let objects = v["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{}", v["objects"]);
    let size = objects[0]["size"].as_u64().unwrap();
    assert!(size > 2 * PART, "the file is only {size} bytes");
    assert_eq!(
        objects[0]["parts"].as_u64().unwrap(),
        size.div_ceil(PART),
        "a multipart upload of 5 MiB parts: {}",
        objects[0]
    );
    assert!(
        objects[0]["key"]
            .as_str()
            .unwrap()
            .contains("+0+00000000000000000000+00000000000000001399+s"),
        "{}",
        objects[0]
    );
    assert_eq!(v["rows"], ROWS, "{out:.300}");
    assert_eq!(v["missing"], 0, "{out:.300}");
    assert_eq!(v["unexpected"], 0, "{out:.300}");
    assert_eq!(v["duplicates"], 0, "{out:.300}");
    drop(moto_child);
}
