//! Replays the `events_json` fuzz corpus (`fuzz/corpus/events_json/`)
//! through the fuzz target's own property checks (`fuzz/src/events.rs`,
//! compiled in by path), on stable and without libFuzzer.
//!
//! `cargo test --test fuzz_corpus -- --ignored` rewrites the seed inputs
//! (`seed-*`): records of several topics as producers send them, beside
//! known bad bodies and records.

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;
#[path = "../../../fuzz/src/events.rs"]
mod events;
#[path = "../../../fuzz/src/seeds.rs"]
mod seeds;
#[path = "../../../fuzz/src/typed.rs"]
mod typed;

use serde_json::json;

#[test]
fn events_json_corpus() {
    corpus::replay("events_json", events::check);
}

const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

#[test]
#[ignore = "rewrites the seed corpus: cargo test --test fuzz_corpus -- --ignored"]
fn write_events_json_seeds() {
    let seed = |name: &str, topic: &str, ct: &str, body: &[u8]| {
        seeds::write("events_json", name, &events::input(topic, ct, body))
    };
    let created = json!({"store_id": "store-7", "campaign_id": "c-1", "title": "Soldes d'été ☀",
        "body": "-50 % sur tout", "url": "https://shop.example/soldes", "icon": null,
        "ttl_seconds": 86400, "urgency": "high", "occurred_at": "2026-01-01T00:00:00+01:00"});
    let launched = json!({"event_id": "3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11",
        "occurred_at": 1_767_225_600_000_i64, "store_id": "store-7", "campaign_id": "c-1"});
    let subscribed = json!({"store_id": "store-7", "subscriber_id": "u-1",
        "endpoint": "https://push.example/s/abc",
        "p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
        "auth": "tBHItJI5svbpez7KI4CCXg"});
    let expired = json!({"store_id": "store-7", "subscriber_id": "u-1", "reason": "410 Gone"});
    let failed = json!({"store_id": "store-7", "notification_id": "n-1", "campaign_id": "c-1",
        "subscriber_id": "u-1", "error": "boom", "kind": "gone", "retryable": false,
        "status_code": 410});
    let dispatched = json!({"store_id": "store-7", "notification_id": "n-1",
        "campaign_id": "c-1", "subscriber_id": "u-1"});
    let delivered = json!({"store_id": "store-7", "notification_id": "n-1", "campaign_id": "c-1"});
    let text = |v: &serde_json::Value| v.to_string().into_bytes();
    seed(
        "campaign.created",
        "campaign.created",
        JSON,
        &text(&created),
    );
    seed(
        "campaign.launched",
        "campaign.launched",
        JSON,
        &text(&launched),
    );
    seed(
        "subscription.created",
        "subscription.created",
        JSON,
        &text(&subscribed),
    );
    seed(
        "subscription.expired",
        "subscription.expired",
        JSON,
        &text(&expired),
    );
    seed(
        "notification.failed",
        "notification.failed",
        JSON,
        &text(&failed),
    );
    seed(
        "notification.dispatched",
        "notification.dispatched",
        JSON,
        &text(&dispatched),
    );
    seed(
        "notification.delivered",
        "notification.delivered",
        JSON,
        &text(&delivered),
    );
    seed(
        "array",
        "campaign.launched",
        "application/json; charset=utf-8",
        &text(&json!([launched, {"store_id": "s", "campaign_id": "c"}])),
    );
    seed(
        "ndjson",
        "subscription.expired",
        NDJSON,
        format!("{expired}\r\n\n{expired}\n").as_bytes(),
    );
    let with = |base: &serde_json::Value, field: &str, v: serde_json::Value| {
        let mut r = base.clone();
        r[field] = v;
        text(&r)
    };
    let without = |base: &serde_json::Value, field: &str| {
        let mut r = base.clone();
        r.as_object_mut().unwrap().remove(field);
        text(&r)
    };
    let c = "campaign.created";
    seed(
        "uuid-uppercase",
        c,
        JSON,
        &with(
            &created,
            "event_id",
            json!("3E0F8F5E-58F4-4D2F-9A4C-0D1B0B9A7C11"),
        ),
    );
    seed(
        "uuid-braced",
        c,
        JSON,
        &with(
            &created,
            "event_id",
            json!("{3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11}"),
        ),
    );
    seed(
        "uuid-not",
        c,
        JSON,
        &with(&created, "event_id", json!("not-a-uuid")),
    );
    seed(
        "wrong-type-string",
        c,
        JSON,
        &with(&created, "ttl_seconds", json!("60")),
    );
    seed(
        "wrong-type-float",
        c,
        JSON,
        &with(&created, "ttl_seconds", json!(60.5)),
    );
    seed(
        "int-overflow",
        c,
        JSON,
        &with(&created, "ttl_seconds", json!(1_u64 << 40)),
    );
    seed(
        "u64-beyond-i64",
        c,
        JSON,
        &with(&created, "occurred_at", json!(u64::MAX)),
    );
    seed(
        "bad-enum",
        c,
        JSON,
        &with(&created, "urgency", json!("urgentish")),
    );
    seed(
        "bad-timestamp",
        c,
        JSON,
        &with(&created, "occurred_at", json!("yesterday")),
    );
    seed(
        "object-for-string",
        c,
        JSON,
        &with(&created, "title", json!({"fr": "Soldes"})),
    );
    seed(
        "null-required",
        c,
        JSON,
        &with(&created, "title", json!(null)),
    );
    seed(
        "unknown-field",
        c,
        JSON,
        &with(&created, "colour", json!("red")),
    );
    seed("missing-required", c, JSON, &without(&created, "title"));
    seed("missing-key", c, JSON, &without(&created, "campaign_id"));
    seed(
        "missing-enum-default",
        c,
        JSON,
        &without(&created, "urgency"),
    );
    seed(
        "wrong-union",
        "notification.failed",
        JSON,
        &with(&failed, "status_code", json!("410")),
    );
    seed(
        "wrong-boolean",
        "notification.failed",
        JSON,
        &with(&failed, "retryable", json!(0)),
    );
    seed("not-an-object", c, JSON, b"[1, \"two\", null]");
    seed("empty-array", c, JSON, b"[]");
    seed("empty-ndjson", c, NDJSON, b"\n \n");
    seed("malformed", c, JSON, b"{\"store_id\": \"s\",");
    seed("malformed-ndjson-line-2", c, NDJSON, b"{}\n{\"a\":}\n");
    seed("deep-nesting", c, JSON, "[".repeat(200).as_bytes());
    seed("not-utf8", c, JSON, b"{\"store_id\": \"\xff\"}");
    seed("unsupported-type", c, "text/plain", &text(&created));
    seed("unknown-topic", "campaign.lunched", JSON, &text(&created));
}
