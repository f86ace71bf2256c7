//! Independent clients against the registry over real HTTP: two registry
//! instances sharing one database, the Rust `schema_registry_converter`
//! crate, and Confluent's own Python client.

mod common;

use apache_avro::types::Value as Avro;
use common::{delivered, fresh_database, serve, start, with_field};
use pushflow_registry::connect;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_over_one_database_hand_out_distinct_ids() {
    let (database, url) = fresh_database();
    // Both start at once: database creation and migrations race.
    let (a, b) = tokio::join!(connect(&url), connect(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let urls = [serve(&a).await, serve(&b).await];
    let http = reqwest::Client::new();

    // 40 different schemas, alternating instances, all in flight at once.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let base = urls[i % 2].clone();
        let http = http.clone();
        let schema = with_field(
            delivered(),
            json!({"name": format!("f{i}"), "type": "int", "default": 0}),
        );
        tasks.push(tokio::spawn(async move {
            let reply = http
                .post(format!("{base}/subjects/subject-{i}-value/versions"))
                .json(&json!({ "schema": schema }))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200);
            reply.json::<serde_json::Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "duplicate ids: {ids:?}");

    // One schema, one subject, registered 20 times at once through both
    // instances: one id, one version.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let base = urls[i % 2].clone();
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let reply = http
                .post(format!("{base}/subjects/shared-value/versions"))
                .json(&json!({ "schema": delivered() }))
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200);
            reply.json::<serde_json::Value>().await.unwrap()["id"]
                .as_i64()
                .unwrap()
        }));
    }
    let mut shared = Vec::new();
    for task in tasks {
        shared.push(task.await.unwrap());
    }
    assert!(shared.windows(2).all(|w| w[0] == w[1]), "{shared:?}");
    assert!(!ids.contains(&shared[0]));
    let versions: serde_json::Value = http
        .get(format!("{}/subjects/shared-value/versions", urls[1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions, json!([1]));

    drop((a, b));
    common::drop_database(&database).await;
}

#[tokio::test]
async fn schema_registry_converter_client_round_trips() {
    let t = start().await;
    let topic = "notification.delivered";
    let subject = format!("{topic}-value");
    let sr = SrSettings::new(t.url.clone());

    let registered = post_schema(
        &sr,
        subject.clone(),
        SuppliedSchema::new(None, SchemaType::Avro, delivered().to_owned()),
    )
    .await
    .expect("post_schema");
    assert!(registered.id > 0);
    let fetched = get_schema_by_id(registered.id, &sr)
        .await
        .expect("get_schema_by_id");
    assert_eq!(fetched.schema, delivered());
    assert_eq!(fetched.schema_type, SchemaType::Avro);

    let encoder = AvroEncoder::new(SrSettings::new(t.url.clone()));
    let event_id = apache_avro::Uuid::parse_str("6f1c1b8e-3c5a-4d4e-9a51-0b6c1d2e3f40").unwrap();
    let bytes = encoder
        .encode(
            vec![
                ("event_id", Avro::Uuid(event_id)),
                ("occurred_at", Avro::TimestampMillis(1_700_000_000_000)),
                ("store_id", Avro::String("store-1".into())),
                ("notification_id", Avro::String("n-1".into())),
                ("campaign_id", Avro::String("c-1".into())),
            ],
            SubjectNameStrategy::TopicNameStrategy(topic.to_owned(), false),
        )
        .await
        .expect("encode");
    assert_eq!(bytes[0], 0, "magic byte");
    assert_eq!(
        u32::from_be_bytes(bytes[1..5].try_into().unwrap()),
        registered.id
    );

    let decoder = AvroDecoder::new(SrSettings::new(t.url.clone()));
    let decoded = decoder.decode(Some(&bytes)).await.expect("decode");
    let Avro::Record(fields) = decoded.value else {
        panic!("not a record: {:?}", decoded.value)
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("event_id"), Some(Avro::Uuid(event_id)));
    assert_eq!(
        get("occurred_at"),
        Some(Avro::TimestampMillis(1_700_000_000_000))
    );
    assert_eq!(get("campaign_id"), Some(Avro::String("c-1".into())));

    // Its incompatibility error carries our 409.
    let bad = with_field(delivered(), json!({"name": "region", "type": "string"}));
    let err = post_schema(
        &sr,
        subject,
        SuppliedSchema::new(None, SchemaType::Avro, bad),
    )
    .await
    .expect_err("incompatible schema must be refused");
    assert!(format!("{err:?}").contains("409"), "{err:?}");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_confluent_client_round_trips() {
    let t = start().await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/python/registry_compat.py");
    let url = t.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&script)
            .arg(&url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("cannot import confluent_kafka") {
        panic!(
            "the Python Confluent client is not installed: pip install confluent-kafka fastavro \
             (with its schema-registry extras: pip install \"confluent-kafka[schemaregistry,avro]\" fastavro)\n{stderr}"
        );
    }
    assert!(
        output.status.success(),
        "registry_compat.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("registry_compat: OK"), "{stdout}\n{stderr}");
    t.finish().await;
}
