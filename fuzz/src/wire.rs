//! `wire_decode`: any bytes as the value of a Kafka record, decoded the way
//! every consumer decodes (`Codec::decode_value`, then `Codec::decode::<E>`)
//! against each catalogue topic.
//!
//! The registry behind the codec holds the catalogue's schemas (ids 1 to 8,
//! in catalogue order) and a few other writers: a newer and an older
//! compatible version, a version with nested types, and a text that is not
//! Avro. Properties:
//!
//! - a refusal is the one the header calls for: too short, wrong magic
//!   byte, unknown schema id, a schema that is not Avro, else a bad body
//!   naming the topic and the id; never retryable (the consumer sends the
//!   record to `<topic>.dlq` with this message in `pushflow.dlq.error`);
//! - a record is accepted only when its writer is the topic's record (the
//!   same full name: a `notification.delivered` written on
//!   `notification.clicked` is not a click), and the value is valid for
//!   the topic's schema;
//! - an accepted value re-encodes and decodes to itself, and reads as the
//!   topic's event struct (see [`crate::typed`]).

use apache_avro::types::Value;
use apache_avro::Schema;
use futures::executor::block_on;
use pushflow_runtime::codec::{wire, Codec, CodecError, InMemoryResolver};
use pushflow_schemas::{Topic, CATALOGUE};
use std::sync::{Arc, OnceLock};

/// Schema id of `notification.delivered` with one more optional field.
pub const NEWER_DELIVERED: u32 = 100;
/// Schema id of `campaign.created` without `icon` and with one more
/// urgency symbol (the reader's default takes it).
pub const OLDER_CREATED: u32 = 101;
/// Schema id of `notification.delivered` with nested fields (array, map,
/// record, a three-branch union): the lake's generic path.
pub const NESTED_DELIVERED: u32 = 102;
/// Schema id whose text is not an Avro schema.
pub const NOT_AVRO: u32 = 103;

/// What the registry holds under an id.
#[derive(Debug, Clone, Copy)]
pub enum Writer {
    /// Nothing.
    Unknown,
    /// A text apache-avro cannot parse.
    NotAvro,
    /// A schema.
    Avro(&'static Schema),
}

/// The codec under test and what its registry holds.
pub struct Registry {
    /// The codec every consumer uses, over a fixed in-memory registry.
    pub codec: Codec,
    writers: Vec<(u32, Option<Schema>)>,
}

fn catalogue_with(topic: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let t = Topic::by_name(topic).expect("a catalogue topic");
    let mut json: serde_json::Value =
        serde_json::from_str(t.schema_text).expect("catalogue schemas are JSON");
    change(&mut json);
    json.to_string()
}

fn fields(json: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
    json["fields"].as_array_mut().expect("a record has fields")
}

/// The writer schemas besides the catalogue's, by id.
fn other_writers() -> Vec<(u32, String)> {
    let newer = catalogue_with("notification.delivered", |s| {
        fields(s).push(serde_json::json!(
            {"name": "device", "type": ["null", "string"], "default": null}
        ));
    });
    let older = catalogue_with("campaign.created", |s| {
        let fs = fields(s);
        fs.retain(|f| f["name"] != "icon");
        for f in fs.iter_mut().filter(|f| f["name"] == "urgency") {
            f["type"]["symbols"]
                .as_array_mut()
                .expect("urgency is an enum")
                .push("urgent".into());
        }
    });
    let nested = catalogue_with("notification.delivered", |s| {
        fields(s).extend([
            serde_json::json!({"name": "tags", "type": {"type": "array", "items": "string"}, "default": []}),
            serde_json::json!({"name": "attrs", "type": {"type": "map", "values": "long"}, "default": {}}),
            serde_json::json!({"name": "via", "type": ["null", "string", "long"], "default": null}),
            serde_json::json!({"name": "origin", "type": {"type": "record", "name": "Origin",
                "fields": [{"name": "host", "type": "string"}, {"name": "port", "type": "int"}]}}),
        ]);
    });
    vec![
        (NEWER_DELIVERED, newer),
        (OLDER_CREATED, older),
        (NESTED_DELIVERED, nested),
        (
            NOT_AVRO,
            r#"{"type": "record", "name": "NoFields"}"#.to_string(),
        ),
    ]
}

/// The registry, built once per process.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let resolver = Arc::new(InMemoryResolver::new());
        let codec = Codec::new(resolver.clone());
        let mut writers = Vec::new();
        for (i, t) in CATALOGUE.iter().enumerate() {
            let id = block_on(codec.schema_id(t)).expect("the in-memory registry registers");
            assert_eq!(id as usize, i + 1, "catalogue ids follow the catalogue");
            writers.push((id, Some(t.schema().clone())));
        }
        for (id, text) in other_writers() {
            resolver.insert(id, &text);
            writers.push((id, Schema::parse_str(&text).ok()));
        }
        Registry { codec, writers }
    })
}

/// What the registry holds under `id`.
pub fn writer(id: u32) -> Writer {
    match registry().writers.iter().find(|(i, _)| *i == id) {
        None => Writer::Unknown,
        Some((_, None)) => Writer::NotAvro,
        Some((_, Some(s))) => Writer::Avro(s),
    }
}

fn record_name(s: &Schema) -> Option<String> {
    match s {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}

/// Checks the properties of the module doc for one record value.
pub fn check(bytes: &[u8]) {
    let codec = &registry().codec;
    let framed = wire::split(bytes);
    for topic in &CATALOGUE {
        let got = block_on(codec.decode_value(topic, bytes));
        match (&framed, got) {
            (Err(_), Ok(_)) => panic!("{}: accepted a record with a bad header", topic.name),
            (Err(frame), Err(e)) => {
                assert_eq!(e.to_string(), frame.to_string(), "{}", topic.name);
                assert!(!e.is_retryable());
                match frame {
                    CodecError::TooShort(n) => assert!(*n < 5 && *n == bytes.len()),
                    CodecError::WrongMagicByte(m) => assert!(*m != wire::MAGIC && *m == bytes[0]),
                    other => panic!("split refused with {other:?}"),
                }
            }
            (Ok((id, _)), Err(e)) => refused(topic, *id, &e),
            (Ok((id, _)), Ok(v)) => accepted(topic, *id, bytes, &v),
        }
    }
}

fn refused(topic: &Topic, id: u32, e: &CodecError) {
    assert!(!e.is_retryable(), "{}: {e} is retryable", topic.name);
    let message = e.to_string();
    match (writer(id), e) {
        (Writer::Unknown, CodecError::UnknownSchemaId(i)) => assert_eq!(*i, id),
        (Writer::NotAvro, CodecError::BadSchema { id: i, .. }) => assert_eq!(*i, id),
        (
            Writer::Avro(_),
            CodecError::BadBody {
                topic: t, id: i, ..
            },
        ) => {
            assert_eq!((t.as_str(), *i), (topic.name, id));
            assert!(message.contains(topic.name), "{message}");
        }
        (w, e) => panic!("{}: schema id {id} ({w:?}) refused with {e:?}", topic.name),
    }
}

fn accepted(topic: &'static Topic, id: u32, bytes: &[u8], value: &Value) {
    let Writer::Avro(w) = writer(id) else {
        panic!(
            "{}: accepted a record of schema id {id}, which the registry does not hold as Avro",
            topic.name
        );
    };
    assert_eq!(
        record_name(w),
        record_name(topic.schema()),
        "{}: accepted a record written with another record's schema (id {id})",
        topic.name
    );
    assert!(
        value.validate(topic.schema()),
        "{}: decoded a value the topic's schema does not validate: {value:?}",
        topic.name
    );
    let codec = &registry().codec;
    let again = block_on(codec.encode_value(topic, value.clone()))
        .unwrap_or_else(|e| panic!("{}: a decoded value does not encode: {e}", topic.name));
    let back = block_on(codec.decode_value(topic, &again))
        .unwrap_or_else(|e| panic!("{}: a re-encoded value does not decode: {e}", topic.name));
    assert_eq!(
        &back, value,
        "{}: decode ∘ encode is not the identity",
        topic.name
    );
    crate::typed::round_trip(codec, topic, bytes, value);
}
