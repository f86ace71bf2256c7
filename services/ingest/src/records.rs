//! JSON records in, Avro values out: the body is parsed (a JSON object, a
//! JSON array or NDJSON) and every record is checked against the topic's
//! Avro schema, with a message that names the field and what is wrong.
//!
//! Timestamps accept milliseconds since the epoch or RFC 3339 strings;
//! `event_id` and `occurred_at` are filled in when absent; unknown fields
//! are refused (they would otherwise vanish silently).

use apache_avro::schema::{Schema, UnionSchema};
use apache_avro::types::Value;
use pushflow_schemas::Topic;
use serde_json::Value as Json;

/// How the body is framed, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`: one object or an array of objects.
    Json,
    /// `application/x-ndjson`: one object per line.
    Ndjson,
}

impl BodyKind {
    /// The framing for a `Content-Type`, or `None` (415).
    pub fn from_content_type(ct: &str) -> Option<BodyKind> {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Some(BodyKind::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(BodyKind::Ndjson)
            }
            _ => None,
        }
    }
}

fn json_error(e: &serde_json::Error, line_offset: usize) -> String {
    format!(
        "malformed JSON at line {} column {}: {e}",
        e.line() + line_offset,
        e.column()
    )
}

/// Splits a body into records (400 message on malformed JSON).
pub fn parse_body(kind: BodyKind, body: &[u8]) -> Result<Vec<Json>, String> {
    let records = match kind {
        BodyKind::Json => {
            match serde_json::from_slice::<Json>(body).map_err(|e| json_error(&e, 0))? {
                Json::Array(items) => items,
                other => vec![other],
            }
        }
        BodyKind::Ndjson => {
            let mut out = Vec::new();
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                out.push(serde_json::from_slice(line).map_err(|e| json_error(&e, i))?);
            }
            out
        }
    };
    if records.is_empty() {
        return Err("no records in the body".into());
    }
    Ok(records)
}

/// A checked record, ready to encode and produce.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The Kafka key (the topic's key field).
    pub key: String,
    /// The event's id (given or generated).
    pub event_id: String,
    /// The record's `store_id` (whose token scope the caller checks).
    pub store_id: String,
    /// The Avro value, valid for the topic's schema.
    pub value: Value,
}

/// Checks one JSON record against `topic`'s schema (message without the
/// record index, which the caller adds).
pub fn prepare(topic: &'static Topic, json: Json, now_ms: i64) -> Result<Prepared, String> {
    let Schema::Record(rs) = topic.schema() else {
        return Err(format!("topic {} has no record schema", topic.name));
    };
    let Json::Object(mut obj) = json else {
        return Err(format!("expected a JSON object, got {}", kind_of(&json)));
    };
    let mut fields = Vec::with_capacity(rs.fields.len());
    let (mut key, mut event_id, mut store_id) = (None, None, None);
    for f in &rs.fields {
        let given = obj
            .remove(&f.name)
            .filter(|v| !v.is_null() || is_nullable(&f.schema));
        let v = match (given, f.name.as_str()) {
            (Some(v), _) => v,
            (None, "event_id") => Json::String(pushflow_schemas::new_event_id()),
            (None, "occurred_at") => Json::from(now_ms),
            (None, _) if is_nullable(&f.schema) => Json::Null,
            (None, _) => match &f.schema {
                Schema::Enum(e) if e.default.is_some() => {
                    Json::String(e.default.clone().unwrap_or_default())
                }
                _ => return Err(format!("field `{}`: required but missing", f.name)),
            },
        };
        if f.name == topic.key_field {
            key = v.as_str().map(str::to_string);
        }
        if f.name == "store_id" {
            store_id = v.as_str().map(str::to_string);
        }
        let avro = convert(&f.schema, &v).map_err(|e| format!("field `{}`: {e}", f.name))?;
        if f.name == "event_id" {
            // As the record carries it (a uuid in its hyphenated lowercase
            // form, however it was written), the id consumers and the lake
            // deduplicate on.
            event_id = match &avro {
                Value::Uuid(u) => Some(u.to_string()),
                _ => v.as_str().map(str::to_string),
            };
        }
        fields.push((f.name.clone(), avro));
    }
    if let Some(extra) = obj.keys().next() {
        let known: Vec<&str> = rs.fields.iter().map(|f| f.name.as_str()).collect();
        return Err(format!(
            "field `{extra}`: unknown field of {} (known: {})",
            topic.name,
            known.join(", ")
        ));
    }
    Ok(Prepared {
        key: key.ok_or_else(|| format!("field `{}`: the key must be a string", topic.key_field))?,
        event_id: event_id.unwrap_or_default(),
        store_id: store_id.ok_or("field `store_id`: required, a string")?,
        value: Value::Record(fields),
    })
}

fn is_nullable(s: &Schema) -> bool {
    matches!(s, Schema::Union(u) if u.is_nullable())
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn short(v: &Json) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

fn convert(schema: &Schema, v: &Json) -> Result<Value, String> {
    let wrong = |want: &str| format!("expected {want}, got {} {}", kind_of(v), short(v));
    Ok(match schema {
        Schema::Null if v.is_null() => Value::Null,
        Schema::Null => return Err(wrong("null")),
        Schema::Boolean => Value::Boolean(v.as_bool().ok_or_else(|| wrong("a boolean"))?),
        Schema::Int => {
            let n = v.as_i64().ok_or_else(|| wrong("an integer"))?;
            Value::Int(i32::try_from(n).map_err(|_| format!("{n} does not fit a 32-bit int"))?)
        }
        Schema::Long => Value::Long(v.as_i64().ok_or_else(|| wrong("an integer"))?),
        Schema::Float | Schema::Double => {
            Value::Double(v.as_f64().ok_or_else(|| wrong("a number"))?)
        }
        Schema::String => Value::String(v.as_str().ok_or_else(|| wrong("a string"))?.to_string()),
        Schema::Uuid(_) => {
            let s = v.as_str().ok_or_else(|| wrong("a UUID string"))?;
            Value::Uuid(
                uuid::Uuid::parse_str(s).map_err(|_| format!("{} is not a UUID", short(v)))?,
            )
        }
        Schema::TimestampMillis => Value::TimestampMillis(timestamp_ms(v)?),
        Schema::Enum(e) => {
            let s = v.as_str().ok_or_else(|| wrong("a string"))?;
            let i =
                e.symbols.iter().position(|x| x == s).ok_or_else(|| {
                    format!("{} is not one of {}", short(v), e.symbols.join(", "))
                })?;
            Value::Enum(i as u32, s.to_string())
        }
        Schema::Union(u) => union(u, v)?,
        other => return Err(format!("schema type {other:?} is not supported by ingest")),
    })
}

fn union(u: &UnionSchema, v: &Json) -> Result<Value, String> {
    let variants = u.variants();
    if v.is_null() {
        if let Some(i) = variants.iter().position(|s| matches!(s, Schema::Null)) {
            return Ok(Value::Union(i as u32, Box::new(Value::Null)));
        }
    }
    let mut last = String::from("no variant of the union fits");
    for (i, s) in variants
        .iter()
        .enumerate()
        .filter(|(_, s)| !matches!(s, Schema::Null))
    {
        match convert(s, v) {
            Ok(x) => return Ok(Value::Union(i as u32, Box::new(x))),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Milliseconds since the epoch from an integer or an RFC 3339 string.
fn timestamp_ms(v: &Json) -> Result<i64, String> {
    if let Some(n) = v.as_i64() {
        return Ok(n);
    }
    if let Some(s) = v.as_str() {
        return chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                format!(
                    "{} is not an RFC 3339 timestamp ({e}) nor milliseconds since the epoch",
                    short(v)
                )
            });
    }
    Err(format!(
        "expected milliseconds since the epoch or an RFC 3339 string, got {} {}",
        kind_of(v),
        short(v)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn created() -> Json {
        json!({"store_id": "s1", "campaign_id": "c1", "title": "Hi", "body": "B", "url": "https://x",
               "ttl_seconds": 60, "urgency": "high", "occurred_at": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn fills_ids_and_times_and_converts() {
        let t = Topic::by_name("campaign.created").unwrap();
        let p = prepare(t, created(), 5).unwrap();
        assert_eq!(p.key, "c1");
        assert!(uuid::Uuid::parse_str(&p.event_id).is_ok());
        let Value::Record(f) = &p.value else { panic!() };
        assert_eq!(f[1].1, Value::TimestampMillis(1_767_225_600_000));
        assert_eq!(f[7].1, Value::Union(0, Box::new(Value::Null)));
        assert!(p.value.validate(t.schema()));
    }

    #[test]
    fn names_the_field_and_the_problem() {
        let t = Topic::by_name("campaign.created").unwrap();
        let mut bad = created();
        bad["urgency"] = json!("urgentish");
        let e = prepare(t, bad, 5).unwrap_err();
        assert_eq!(
            e,
            "field `urgency`: \"urgentish\" is not one of very_low, low, normal, high"
        );
        let mut bad = created();
        bad.as_object_mut().unwrap().remove("title");
        assert_eq!(
            prepare(t, bad, 5).unwrap_err(),
            "field `title`: required but missing"
        );
        let mut bad = created();
        bad["event_id"] = json!("not-a-uuid");
        assert!(prepare(t, bad, 5)
            .unwrap_err()
            .contains("field `event_id`: \"not-a-uuid\" is not a UUID"));
        let mut bad = created();
        bad["ttl_seconds"] = json!("60");
        assert!(prepare(t, bad, 5)
            .unwrap_err()
            .starts_with("field `ttl_seconds`: expected an integer"));
        let mut bad = created();
        bad["colour"] = json!("red");
        assert!(prepare(t, bad, 5)
            .unwrap_err()
            .starts_with("field `colour`: unknown field"));
        let mut bad = created();
        bad["occurred_at"] = json!("yesterday");
        assert!(prepare(t, bad, 5)
            .unwrap_err()
            .starts_with("field `occurred_at`"));
    }

    #[test]
    fn answers_with_the_event_id_the_record_carries() {
        let t = Topic::by_name("campaign.created").unwrap();
        for given in [
            "3E0F8F5E-58F4-4D2F-9A4C-0D1B0B9A7C11",
            "{3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11}",
            "urn:uuid:3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11",
            "3e0f8f5e58f44d2f9a4c0d1b0b9a7c11",
        ] {
            let mut r = created();
            r["event_id"] = json!(given);
            let p = prepare(t, r, 5).unwrap();
            assert_eq!(
                p.event_id, "3e0f8f5e-58f4-4d2f-9a4c-0d1b0b9a7c11",
                "{given}"
            );
            let Value::Record(f) = &p.value else { panic!() };
            assert_eq!(f[0].1, Value::Uuid(p.event_id.parse().unwrap()));
        }
    }

    #[test]
    fn parses_json_arrays_and_ndjson_with_positions() {
        assert_eq!(parse_body(BodyKind::Json, b"[{},{}]").unwrap().len(), 2);
        assert_eq!(
            parse_body(BodyKind::Ndjson, b"{}\n\n{}\n").unwrap().len(),
            2
        );
        let e = parse_body(BodyKind::Ndjson, b"{}\n{\"a\":}\n").unwrap_err();
        assert!(e.starts_with("malformed JSON at line 2 column"), "{e}");
        let e = parse_body(BodyKind::Json, b"{\n \"a\" 1}").unwrap_err();
        assert!(e.starts_with("malformed JSON at line 2 column 6"), "{e}");
        assert_eq!(
            BodyKind::from_content_type("application/json; charset=utf-8"),
            Some(BodyKind::Json)
        );
        assert_eq!(BodyKind::from_content_type("text/plain"), None);
    }
}
