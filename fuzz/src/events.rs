//! `events_json`: any body of `POST /v1/events/{topic}`, split into records
//! (`records::parse_body`) and each checked against the topic's schema
//! (`records::prepare`), as ingest does before producing anything.
//!
//! An input is `<topic> <content-type>\n<body>` (see [`input`]); a first
//! line naming no catalogue topic or an unsupported type is ingest's 404
//! or 415 and not looked at further. Properties:
//!
//! - a body that does not split is refused with "malformed JSON at line L
//!   column C: …" or "no records in the body" (400);
//! - a record that does not fit is refused with a message naming the field
//!   (`` field `x`: … ``: a field of the schema, or the unknown field the
//!   record has) or saying it is not an object (400 "record i: …");
//! - a record that fits has only fields of the schema, its Avro value is
//!   valid for the schema, its key, `store_id` and `event_id` are the
//!   value's (the `event_id` ingest answers with is the one consumers and
//!   the lake see), and the value encodes with the codec, decodes back to
//!   itself and reads as the topic's event.

use apache_avro::types::Value;
use futures::executor::block_on;
use pushflow_ingest::records::{parse_body, prepare, BodyKind};
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_schemas::Topic;
use serde_json::Value as Json;
use std::sync::{Arc, OnceLock};

/// The time `prepare` fills a missing `occurred_at` with.
const NOW_MS: i64 = 1_767_225_600_000;

/// A fuzz input for a body of `topic` sent with `content_type`.
pub fn input(topic: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{topic} {content_type}\n").into_bytes();
    out.extend_from_slice(body);
    out
}

/// Checks the properties of the module doc for one input.
pub fn check(input: &[u8]) {
    let Some(nl) = input.iter().position(|b| *b == b'\n') else {
        return;
    };
    let Ok(header) = std::str::from_utf8(&input[..nl]) else {
        return;
    };
    let Some((name, content_type)) = header.split_once(' ') else {
        return;
    };
    let (Some(topic), Some(kind)) = (
        Topic::by_name(name),
        BodyKind::from_content_type(content_type),
    ) else {
        return;
    };
    let records = match parse_body(kind, &input[nl + 1..]) {
        Ok(r) => r,
        Err(m) => {
            assert!(
                m.starts_with("malformed JSON at line ") || m == "no records in the body",
                "body refused with {m:?}"
            );
            return;
        }
    };
    assert!(!records.is_empty());
    for record in records {
        record_checks(topic, record);
    }
}

fn field_names(topic: &Topic) -> Vec<&'static str> {
    let apache_avro::Schema::Record(r) = topic.schema() else {
        panic!("{} is not a record", topic.name)
    };
    r.fields.iter().map(|f| f.name.as_str()).collect()
}

fn record_checks(topic: &'static Topic, record: Json) {
    let known = field_names(topic);
    let given = record.clone();
    let p = match prepare(topic, record, NOW_MS) {
        Ok(p) => p,
        Err(m) => {
            if m.starts_with("field `") {
                // A field of the schema, or a field of the record (whose
                // name may hold anything, backticks included).
                let names = |k: &str| m.starts_with(&format!("field `{k}`: "));
                let in_record = given
                    .as_object()
                    .is_some_and(|o| o.keys().any(|k| names(k)));
                assert!(
                    known.iter().any(|k| names(k)) || in_record,
                    "{}: refusal names a field neither the schema's nor the record's: {m}",
                    topic.name
                );
            } else {
                assert!(
                    m.starts_with("expected a JSON object, got ") && !given.is_object(),
                    "{}: refusal names no field: {m}",
                    topic.name
                );
            }
            return;
        }
    };
    let object = given.as_object().expect("only an object is accepted");
    for k in object.keys() {
        assert!(
            known.contains(&k.as_str()),
            "{}: accepted unknown field {k:?}",
            topic.name
        );
    }
    assert!(
        p.value.validate(topic.schema()),
        "{}: prepared a value the schema does not validate: {:?}",
        topic.name,
        p.value
    );
    assert_eq!(
        Some(p.key.as_str()),
        text(&p.value, topic.key_field).as_deref(),
        "key"
    );
    assert_eq!(
        Some(p.store_id.as_str()),
        text(&p.value, "store_id").as_deref(),
        "store_id"
    );
    assert_eq!(
        Some(p.event_id.as_str()),
        text(&p.value, "event_id").as_deref(),
        "event_id"
    );
    static CODEC: OnceLock<Codec> = OnceLock::new();
    let codec = CODEC.get_or_init(|| Codec::new(Arc::new(InMemoryResolver::new())));
    let bytes = block_on(codec.encode_value(topic, p.value.clone())).unwrap_or_else(|e| {
        panic!(
            "{}: a prepared value does not encode (a 500): {e}",
            topic.name
        )
    });
    let back = block_on(codec.decode_value(topic, &bytes))
        .unwrap_or_else(|e| panic!("{}: a produced record does not decode: {e}", topic.name));
    assert_eq!(
        back, p.value,
        "{}: what consumers read is not what ingest checked",
        topic.name
    );
    crate::typed::round_trip(codec, topic, &bytes, &p.value);
}

/// A string field of a record value as consumers read it (a uuid as its
/// hyphenated text).
fn text(record: &Value, field: &str) -> Option<String> {
    let Value::Record(fields) = record else {
        return None;
    };
    let (_, v) = fields.iter().find(|(n, _)| n == field)?;
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Uuid(u) => Some(u.to_string()),
        _ => None,
    }
}
