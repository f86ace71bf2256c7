//! Replays the fuzz corpora of the runtime's parsers (`fuzz/corpus/
//! {wire_decode,ping_token,topology}/`) through the fuzz targets' own
//! property checks (`fuzz/src/`, compiled in by path), on stable and
//! without libFuzzer, so every kept input stays checked.
//!
//! `cargo test --test fuzz_corpus -- --ignored` rewrites the seed inputs
//! (`seed-*`) from the real encoders: events encoded by the codec, tokens
//! minted by `PingKeys`, the repository's `topology.yaml` and variants of
//! it, beside known bad inputs of each kind.

#[path = "../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../fuzz/src/seeds.rs"]
mod seeds;
#[path = "../../fuzz/src/token.rs"]
mod token;
#[path = "../../fuzz/src/topology.rs"]
mod topology;
#[path = "../../fuzz/src/typed.rs"]
mod typed;
#[path = "../../fuzz/src/wire.rs"]
mod wire;

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use futures::executor::block_on;
use pushflow_runtime::codec::wire::frame;
use pushflow_runtime::token::{PingClaims, PingKeys};
use pushflow_schemas::*;

#[test]
fn wire_decode_corpus() {
    corpus::replay("wire_decode", wire::check);
}

#[test]
fn ping_token_corpus() {
    corpus::replay("ping_token", token::check);
}

#[test]
fn topology_corpus() {
    corpus::replay("topology", |b| {
        topology::check(corpus::repo_root(), b);
    });
}

const ID: &str = "3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11";
const AT: i64 = 1_767_225_600_000;

fn delivered() -> NotificationDelivered {
    NotificationDelivered {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        notification_id: "n-1".into(),
        campaign_id: "c-1".into(),
    }
}

fn failed() -> NotificationFailed {
    NotificationFailed {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        notification_id: "n-1".into(),
        campaign_id: "c-1".into(),
        subscriber_id: "u-1".into(),
        error: "boom".into(),
        kind: FailureKind::Other,
        retryable: true,
        status_code: Some(503),
    }
}

/// One encoded record of every catalogue topic, by the codec.
fn catalogue_records() -> Vec<(&'static str, Vec<u8>)> {
    let codec = &wire::registry().codec;
    let created = CampaignCreated {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        campaign_id: "c-1".into(),
        title: "Soldes d'été ☀".into(),
        body: "-50 % sur tout".into(),
        url: "https://shop.example/soldes".into(),
        icon: Some("https://shop.example/i.png".into()),
        ttl_seconds: 86_400,
        urgency: Urgency::High,
    };
    let launched = CampaignLaunched {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        campaign_id: "c-1".into(),
        throttle_per_minute: None,
    };
    let subscribed = SubscriptionCreated {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        subscriber_id: "u-1".into(),
        endpoint: "https://push.example/s/abc".into(),
        p256dh: "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM".into(),
        auth: "tBHItJI5svbpez7KI4CCXg".into(),
    };
    let expired = SubscriptionExpired {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        subscriber_id: "u-1".into(),
        reason: "410 Gone".into(),
    };
    let dispatched = NotificationDispatched {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        notification_id: "n-1".into(),
        campaign_id: "c-1".into(),
        subscriber_id: "u-1".into(),
    };
    let no_status = NotificationFailed {
        status_code: None,
        kind: FailureKind::Gone,
        retryable: false,
        ..failed()
    };
    let clicked = NotificationClicked {
        event_id: ID.into(),
        occurred_at: AT,
        store_id: "store-7".into(),
        notification_id: "n-1".into(),
        campaign_id: "c-1".into(),
    };
    let no_icon = CampaignCreated {
        icon: None,
        urgency: Urgency::VeryLow,
        ..created.clone()
    };
    block_on(async {
        vec![
            ("campaign.created", codec.encode(&created).await.unwrap()),
            (
                "campaign.created-no-icon",
                codec.encode(&no_icon).await.unwrap(),
            ),
            ("campaign.launched", codec.encode(&launched).await.unwrap()),
            (
                "subscription.created",
                codec.encode(&subscribed).await.unwrap(),
            ),
            (
                "subscription.expired",
                codec.encode(&expired).await.unwrap(),
            ),
            (
                "notification.dispatched",
                codec.encode(&dispatched).await.unwrap(),
            ),
            (
                "notification.failed",
                codec.encode(&failed()).await.unwrap(),
            ),
            (
                "notification.failed-no-status",
                codec.encode(&no_status).await.unwrap(),
            ),
            (
                "notification.delivered",
                codec.encode(&delivered()).await.unwrap(),
            ),
            (
                "notification.clicked",
                codec.encode(&clicked).await.unwrap(),
            ),
        ]
    })
}

/// A record of the registry's other writer `id`: `base` with `extra`
/// fields added and `drop` left out.
fn other_writer(id: u32, base: Value, extra: Vec<(&str, Value)>, drop: &[&str]) -> Vec<u8> {
    let wire::Writer::Avro(schema) = wire::writer(id) else {
        panic!("writer {id} is Avro");
    };
    let Value::Record(mut fields) = base else {
        panic!("a record")
    };
    fields.retain(|(n, _)| !drop.contains(&n.as_str()));
    fields.extend(extra.into_iter().map(|(n, v)| (n.to_string(), v)));
    let body = GenericDatumWriter::builder(schema)
        .build()
        .unwrap()
        .write_value_to_vec(Value::Record(fields))
        .unwrap();
    frame(id, &body)
}

/// `bytes` with the first occurrence of `from` replaced by `to`.
fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{from:?} is in the record"));
    [&bytes[..at], to, &bytes[at + from.len()..]].concat()
}

#[test]
#[ignore = "rewrites the seed corpus: cargo test --test fuzz_corpus -- --ignored"]
fn write_wire_decode_seeds() {
    let seed = |name: &str, bytes: &[u8]| seeds::write("wire_decode", name, bytes);
    for (name, bytes) in catalogue_records() {
        seed(name, &bytes);
    }
    let d = block_on(wire::registry().codec.encode(&delivered())).unwrap();
    let f = block_on(wire::registry().codec.encode(&failed())).unwrap();
    let dv = delivered().to_avro().unwrap();
    seed(
        "newer-writer",
        &other_writer(
            wire::NEWER_DELIVERED,
            dv.clone(),
            vec![(
                "device",
                Value::Union(1, Box::new(Value::String("ios".into()))),
            )],
            &[],
        ),
    );
    seed(
        "nested-writer",
        &other_writer(
            wire::NESTED_DELIVERED,
            dv,
            vec![
                ("tags", Value::Array(vec![Value::String("a".into())])),
                (
                    "attrs",
                    Value::Map([("k".to_string(), Value::Long(-3))].into()),
                ),
                ("via", Value::Union(2, Box::new(Value::Long(7)))),
                (
                    "origin",
                    Value::Record(vec![
                        ("host".into(), Value::String("h".into())),
                        ("port".into(), Value::Int(443)),
                    ]),
                ),
            ],
            &[],
        ),
    );
    let created = Topic::by_name("campaign.created").unwrap();
    let cv = block_on(
        wire::registry()
            .codec
            .decode_value(created, &catalogue_records()[0].1),
    )
    .unwrap();
    let Value::Record(mut cf) = cv else { panic!() };
    cf.retain(|(n, _)| n != "urgency");
    cf.push(("urgency".into(), Value::Enum(4, "urgent".into())));
    seed(
        "older-writer-unknown-symbol",
        &other_writer(wire::OLDER_CREATED, Value::Record(cf), vec![], &["icon"]),
    );
    seed("not-avro-schema", &frame(wire::NOT_AVRO, &d[5..]));
    seed("unknown-schema-id", &frame(99, &d[5..]));
    seed(
        "wrong-magic-json",
        br#"{"event_id":"3e0f8f5e","store_id":"s"}"#,
    );
    seed("wrong-magic-1", &[&[1u8][..], &d[1..]].concat());
    seed("too-short", &d[..4]);
    seed("empty", b"");
    seed("header-only", &d[..5]);
    seed("truncated", &d[..d.len() - 3]);
    seed("trailing-bytes", &[&d[..], b"\0\0"].concat());
    // The uuid `event_id` is first: its length, then its text.
    seed("negative-length", &patch(&d, &[0x48], &[0x01]));
    seed(
        "huge-length",
        &patch(&d, &[0x48], &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
    );
    seed("overlong-varint", &patch(&d, &[0x48], &[0xff; 11]));
    seed("bad-uuid", &patch(&d, b"3e0f8f5e-", b"3e0f8f5ez"));
    seed("bad-utf8", &patch(&d, b"store-7", b"store\xff7"));
    // notification.failed: ... error "boom", kind (enum), retryable
    // (boolean), status_code (union): 08 "boom" 0e 01 02 ee07.
    seed(
        "enum-out-of-range",
        &patch(&f, b"\x08boom\x0e", b"\x08boom\xc6\x01"),
    );
    seed(
        "negative-enum",
        &patch(&f, b"\x08boom\x0e", b"\x08boom\x01"),
    );
    seed(
        "boolean-2",
        &patch(&f, b"\x08boom\x0e\x01", b"\x08boom\x0e\x02"),
    );
    seed(
        "union-branch-2",
        &patch(&f, b"\x0e\x01\x02", b"\x0e\x01\x04"),
    );
    seed(
        "int-overflow",
        &patch(&f, b"\x02\xee\x07", b"\x02\xff\xff\xff\xff\x7f"),
    );
}

fn claims() -> PingClaims {
    PingClaims {
        notification_id: "n-1".into(),
        campaign_id: "c-1".into(),
        store_id: "store-7".into(),
        subscriber_id: "u-1".into(),
        exp: 1_767_830_400,
        iat: Some(1_767_225_600),
    }
}

#[test]
#[ignore = "rewrites the seed corpus: cargo test --test fuzz_corpus -- --ignored"]
fn write_ping_token_seeds() {
    let seed = |name: &str, text: &str| seeds::write("ping_token", name, text.as_bytes());
    let keys = token::keys();
    let good = keys.mint(&claims());
    seed("minted-current-key", &good);
    let old = token::only("k1").unwrap().mint(&claims());
    seed("minted-old-key", &old);
    seed(
        "minted-without-iat",
        &keys.mint(&PingClaims {
            iat: None,
            ..claims()
        }),
    );
    seed(
        "minted-unicode-ids",
        &keys.mint(&PingClaims {
            store_id: "магазин \"7\"\n\u{0}".into(),
            ..claims()
        }),
    );
    seed("expired", &keys.mint(&PingClaims { exp: 1, ..claims() }));
    seed(
        "unknown-key-id",
        &PingKeys::parse("k9:0123456789abcdef-new")
            .unwrap()
            .mint(&claims()),
    );
    seed(
        "forged-secret",
        &PingKeys::parse("k2:guessed-secret-0123")
            .unwrap()
            .mint(&claims()),
    );
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims();
    forged.store_id = "victim".into();
    let forged_body = B64.encode(serde_json::to_vec(&forged).unwrap());
    seed(
        "tampered-claims",
        &format!("v1.k2.{forged_body}.{}", parts[3]),
    );
    seed("kid-swapped", &format!("v1.k1.{}.{}", parts[2], parts[3]));
    seed("signature-truncated", &good[..good.len() - 2]);
    seed("signature-padded", &format!("{good}="));
    seed("extra-part", &format!("{good}.x"));
    seed("version-2", &good.replacen("v1.", "v2.", 1));
    seed("not-base64", "v1.k2.%%%.***");
    seed("garbage", "garbage");
    seed("empty", "");
    seed("keys-spec", token::KEYS);
    seed("keys-short-secret", "k1:short");
    seed("keys-no-separator", "noseparator");
    seed("keys-dotted-id", "a.b:0123456789abcdef");
    // Found by the fuzzer's property: the later secret replaced the first.
    seed(
        "keys-duplicate-id",
        "k1:0123456789abcdef-new,k1:0123456789abcdef-old",
    );
    seed(
        "keys-spaces",
        " k3 : 0123456789abcdef-x , ,k4:0123456789abcdef-y",
    );
}

#[test]
#[ignore = "rewrites the seed corpus: cargo test --test fuzz_corpus -- --ignored"]
fn write_topology_seeds() {
    let repo = std::fs::read_to_string(corpus::repo_root().join("topology.yaml")).unwrap();
    let seed = |name: &str, text: &str| seeds::write("topology", name, text.as_bytes());
    seed("repository.yaml", &repo);
    let topic = "topics:\n  - name: campaign.launched\n    key: campaign_id\n    schema: schemas/campaign.launched.avsc\n";
    seed("minimal.yaml", topic);
    let with = |extra: &str| format!("{topic}{extra}");
    seed("misspelled-field.yaml", &with("    partitons: 3\n"));
    seed("partitions-zero.yaml", &with("    partitions: 0\n"));
    seed(
        "partitions-not-a-number.yaml",
        &with("    partitions: three\n"),
    );
    seed(
        "replication-zero.yaml",
        &with("    replication_factor: 0\n"),
    );
    seed("bad-retention.yaml", &with("    retention: 7 fortnights\n"));
    seed("bad-size.yaml", &with("    max_message_bytes: lots\n"));
    seed(
        "bad-cleanup-policy.yaml",
        &with("    cleanup_policy: shred\n"),
    );
    seed("duplicate-topic.yaml", &with(&topic["topics:\n".len()..]));
    seed(
        "bad-topic-name.yaml",
        &topic.replace("campaign.launched\n", "campaign launched!\n"),
    );
    seed(
        "missing-schema-file.yaml",
        &topic.replace("campaign.launched.avsc", "nope.avsc"),
    );
    seed(
        "schema-not-avro.yaml",
        &topic.replace("schemas/campaign.launched.avsc", "topology.yaml"),
    );
    seed(
        "key-not-a-field.yaml",
        &topic.replace("key: campaign_id", "key: campaign"),
    );
    seed(
        "undeclared-input.yaml",
        &with("components:\n  - name: reg\n    type: registry\n    inputs: [campaign.lunched]\n"),
    );
    seed(
        "dlq-output.yaml",
        &with("components:\n  - name: reg\n    type: registry\n    outputs: [campaign.launched.dlq]\n"),
    );
    seed(
        "duplicate-component.yaml",
        &with("components:\n  - name: a\n    type: registry\n  - name: a\n    type: registry\n"),
    );
    seed(
        "unnamed-component.yaml",
        &with("components:\n  - name: ''\n    type: registry\n"),
    );
    seed(
        "unknown-component-type.yaml",
        &repo.replace("type: push-sim", "type: push-simulator"),
    );
    seed(
        "bad-ingest-setting.yaml",
        &repo.replace("max_body: 1MiB", "max_body: lots"),
    );
    seed(
        "unknown-aggregate-setting.yaml",
        &repo.replace(
            "commit_connections: 2",
            "commit_connections: 2\n      dedupe: true",
        ),
    );
    seed(
        "dispatch-without-inputs.yaml",
        &repo.replace(
            "inputs: [campaign.created, campaign.launched, subscription.created, subscription.expired, dispatch.batches]",
            "inputs: [campaign.created]",
        ),
    );
    seed(
        "bad-lake-compression.yaml",
        &repo.replace("compression: zstd", "compression: zip"),
    );
    seed("no-topics.yaml", "services: {}\n");
    seed("empty.yaml", "");
    seed("not-yaml.yaml", "topics: [\n  {name: x\n");
    seed("not-a-mapping.yaml", "- just\n- a list\n");
    seed("tabs.yaml", "topics:\n\t- name: x\n");
    seed("unknown-section.yaml", &with("sinks: []\n"));
    seed("kafka-not-strings.yaml", &with("kafka: {linger.ms: [5]}\n"));
    seed(
        "anchors.yaml",
        "topics:\n  - &t {name: campaign.launched, key: campaign_id, schema: schemas/campaign.launched.avsc}\ncomponents:\n  - {name: r, type: registry, inputs: [campaign.launched]}\n",
    );
}
