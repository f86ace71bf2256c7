//! Schema evolution: a topic's schema gains an optional field; new files
//! carry the new column, old files stay readable, and one DataFusion query
//! reads both (the old rows' values are null).
#![cfg(feature = "query")]

mod common;

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use common::*;
use pushflow_runtime::codec::{wire, Codec, RegistryResolver, SchemaResolver};
use pushflow_s3_parquet::{query, Lake};
use pushflow_schemas::{Event, NotificationDelivered};
use std::time::Duration;

fn int(b: &arrow::record_batch::RecordBatch, i: usize) -> i64 {
    b.column(i)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_old_and_new_files_together() {
    let registry = pushflow_testkit::start_registry().await;
    let codec = Codec::for_registry(&registry).unwrap();
    let u = pushflow_testkit::unique("evo").replace('-', "_");
    let topic = format!("{u}.notification.delivered");
    pushflow_testkit::create_topics(&[(&topic, 1), (&format!("{topic}.dlq"), 1)]).await;

    // 100 events with the catalogue schema (v1) in hour 00...
    let v1: Vec<_> = (0..100).map(delivered).collect();
    let mut records = encoded(&codec, &v1).await;
    // ...then 60 with v2 (an optional `device`), in hours 00 and 01.
    let mut json: serde_json::Value =
        serde_json::from_str(NotificationDelivered::topic().schema_text).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!(
            {"name": "device", "type": ["null", "string"], "default": null, "doc": "new in v2"}
        ));
    let v2_text = json.to_string();
    let v2 = Schema::parse_str(&v2_text).unwrap();
    let id2 = RegistryResolver::new(&registry)
        .unwrap()
        .register(&NotificationDelivered::topic().subject(), &v2_text)
        .await
        .unwrap();
    for i in 1180..1240 {
        let mut value = delivered(i).to_avro().unwrap();
        if let Value::Record(fields) = &mut value {
            fields.push((
                "device".into(),
                Value::Union(1, Box::new(Value::String("ios".into()))),
            ));
        }
        let body = GenericDatumWriter::builder(&v2)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap();
        records.push((format!("n-{i}"), wire::frame(id2, &body)));
    }
    produce(&topic, &records).await;

    let dir = std::env::temp_dir().join(&u);
    let lake_url = format!("file://{}", dir.display());
    let sink = start_sink(
        &registry,
        &pushflow_testkit::unique("evo-group"),
        std::slice::from_ref(&topic),
        &lake_url,
        &[],
        test_config(1000),
    );
    sink.wait_rows(160, Duration::from_secs(60)).await;
    sink.stop().await;

    // Hour 00 holds a v1 file and a v2 file; hour 01 only v2.
    let hour0 = dir.join(format!(
        "events/{u}_notification_delivered/dt=2026-01-01/hour=00"
    ));
    let mut names: Vec<String> = std::fs::read_dir(&hour0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(&format!("+s{id2}.parquet"))),
        "{names:?}"
    );

    let lake = Lake::open(&lake_url, &[]).unwrap();
    let table = format!("{u}_notification_delivered");
    let b = query::query(
        &lake,
        &format!("SELECT count(*) AS n, count(device) AS with_device, count(DISTINCT event_id) AS d FROM \"{table}\""),
    )
    .await
    .unwrap();
    assert_eq!(
        (int(&b[0], 0), int(&b[0], 1), int(&b[0], 2)),
        (160, 60, 160)
    );
    // Partition columns prune and filter; old rows read device as null.
    let b = query::query(
        &lake,
        &format!("SELECT count(*) AS n, count(device) AS with_device FROM \"{table}\" WHERE dt = '2026-01-01' AND hour = 0"),
    )
    .await
    .unwrap();
    assert_eq!((int(&b[0], 0), int(&b[0], 1)), (100 + 20, 20));
    let b = query::query(
        &lake,
        &format!("SELECT device FROM \"{table}\" WHERE notification_id = 'n-0'"),
    )
    .await
    .unwrap();
    assert!(b[0].column(0).is_null(0));
    // A catalogue table without files is an empty table, not an error.
    let b = query::query(&lake, "SELECT count(*) AS n FROM subscription_expired")
        .await
        .unwrap();
    assert_eq!(int(&b[0], 0), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
