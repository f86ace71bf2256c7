//! The codec against the real registry (served over HTTP on its own
//! database) and the real broker: every event type round-trips, a
//! compatible evolution still decodes with the old reader, and an
//! incompatible change is refused with the registry's message.

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use pushflow_runtime::codec::{wire, Codec};
use pushflow_runtime::kafka::Producer;
use pushflow_runtime::topology::apply::{ensure_schema, SchemaChange};
use pushflow_schemas::*;
use pushflow_testkit::{brokers, create_topics, start_registry, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const ID: &str = "0d6f8a52-1c0e-4f57-a1a8-5d6c3f0e9a11";

async fn produce_and_read_back(topic: &str, bytes: Vec<u8>) -> Vec<u8> {
    create_topics(&[(topic, 1)]).await;
    let p = Producer::new(&brokers(), &BTreeMap::new(), Duration::from_secs(30)).unwrap();
    p.send(topic, Some(b"k"), &bytes, &[]).await.unwrap();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", unique("codec"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        c.subscribe(&[&topic]).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Some(m) = c.poll(Duration::from_millis(200)) {
                return m.unwrap().payload().unwrap().to_vec();
            }
        }
        panic!("record not read back from {topic}");
    })
    .await
    .unwrap()
}

async fn round_trip<E: Event + PartialEq + std::fmt::Debug>(codec: &Codec, e: E) {
    let bytes = codec.encode(&e).await.unwrap();
    let read = produce_and_read_back(&unique(E::TOPIC), bytes).await;
    let back: E = codec.decode(&read).await.unwrap();
    assert_eq!(back, e, "{}", E::TOPIC);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_type_round_trips_through_registry_and_broker() {
    let url = start_registry().await;
    let codec = Codec::for_registry(&url).unwrap();
    let (t, s) = (1_767_225_600_123_i64, "store-1".to_string());
    round_trip(
        &codec,
        CampaignCreated {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s.clone(),
            campaign_id: "c1".into(),
            title: "Sale ✓".into(),
            body: "50% off".into(),
            url: "https://shop.example/sale".into(),
            icon: None,
            ttl_seconds: 86_400,
            urgency: Urgency::High,
        },
    )
    .await;
    round_trip(
        &codec,
        CampaignLaunched {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s.clone(),
            campaign_id: "c1".into(),
            throttle_per_minute: None,
        },
    )
    .await;
    round_trip(
        &codec,
        SubscriptionCreated {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s.clone(),
            subscriber_id: "u1".into(),
            endpoint: "https://push.example/x".into(),
            p256dh: "BK".into(),
            auth: "au".into(),
        },
    )
    .await;
    round_trip(
        &codec,
        SubscriptionExpired {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s.clone(),
            subscriber_id: "u1".into(),
            reason: "410".into(),
        },
    )
    .await;
    round_trip(
        &codec,
        NotificationDispatched {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s.clone(),
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
            subscriber_id: "u1".into(),
        },
    )
    .await;
    round_trip(
        &codec,
        NotificationFailed {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s.clone(),
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
            subscriber_id: "u1".into(),
            error: "410 Gone".into(),
            kind: FailureKind::Gone,
            retryable: false,
            status_code: Some(410),
        },
    )
    .await;
    round_trip(
        &codec,
        NotificationDelivered {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s.clone(),
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
        },
    )
    .await;
    round_trip(
        &codec,
        NotificationClicked {
            event_id: ID.into(),
            occurred_at: t,
            store_id: s,
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
        },
    )
    .await;

    // Ids are cached: a second encode gives the same id without asking.
    let e = NotificationClicked {
        event_id: ID.into(),
        occurred_at: t,
        store_id: "s".into(),
        notification_id: "n".into(),
        campaign_id: "c".into(),
    };
    let a = codec.encode(&e).await.unwrap();
    let b = codec.encode(&e).await.unwrap();
    assert_eq!(wire::split(&a).unwrap().0, wire::split(&b).unwrap().0);
}

fn evolved(topic: &Topic, extra: serde_json::Value) -> String {
    let mut json: serde_json::Value = serde_json::from_str(topic.schema_text).unwrap();
    json["fields"].as_array_mut().unwrap().push(extra);
    json.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compatible_evolution_registers_and_old_readers_still_decode() {
    let url = start_registry().await;
    let http = reqwest::Client::new();
    let topic = NotificationDelivered::topic();
    let old = ensure_schema(&http, &url, &topic.subject(), topic.schema_text)
        .await
        .unwrap();
    assert!(matches!(old, SchemaChange::Registered { .. }));

    let new_text = evolved(
        topic,
        serde_json::json!(
            {"name": "device", "type": ["null", "string"], "default": null, "doc": "Device class reported by the service worker."}
        ),
    );
    let SchemaChange::Registered { id: new_id, .. } =
        ensure_schema(&http, &url, &topic.subject(), &new_text)
            .await
            .unwrap()
    else {
        panic!("the evolved schema should be a new version")
    };

    // A producer on the new schema writes a record with the new field…
    let new_schema = Schema::parse_str(&new_text).unwrap();
    let e = NotificationDelivered {
        event_id: ID.into(),
        occurred_at: 5,
        store_id: "s".into(),
        notification_id: "n".into(),
        campaign_id: "c".into(),
    };
    let mut v = e.to_avro().unwrap();
    if let Value::Record(f) = &mut v {
        f.push((
            "device".into(),
            Value::Union(1, Box::new(Value::String("mobile".into()))),
        ));
    }
    let body = GenericDatumWriter::builder(&new_schema)
        .build()
        .unwrap()
        .write_value_to_vec(v)
        .unwrap();
    let read = produce_and_read_back(&unique("evolution"), wire::frame(new_id, &body)).await;
    // …and a consumer built on the old schema still decodes it.
    let codec = Codec::for_registry(&url).unwrap();
    let back: NotificationDelivered = codec.decode(&read).await.unwrap();
    assert_eq!(back, e);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incompatible_change_is_refused_naming_the_field() {
    let url = start_registry().await;
    let http = reqwest::Client::new();
    let topic = NotificationClicked::topic();
    ensure_schema(&http, &url, &topic.subject(), topic.schema_text)
        .await
        .unwrap();
    // A new required field without a default: new readers cannot read old
    // records, so BACKWARD refuses it.
    let bad = evolved(
        topic,
        serde_json::json!({"name": "position", "type": "int", "doc": "Button index."}),
    );
    let err = ensure_schema(&http, &url, &topic.subject(), &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("409"), "{err}");
    assert!(err.contains("position"), "{err}");
    assert!(err.contains("incompatible"), "{err}");
}
