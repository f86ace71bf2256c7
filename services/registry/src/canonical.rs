//! Parsing a submitted schema and computing its identity.
//!
//! Guarantee: two submissions that differ only in whitespace, JSON key
//! order or equivalent spellings (`"string"` vs `{"type": "string"}`,
//! `namespace` + `name` vs a full name) get the same canonical key, hence the
//! same id and no new version. Everything apache-avro keeps after parsing is
//! part of the identity: field defaults, logical types, aliases, custom
//! attributes of named types and **docs** (like Confluent, a doc change is a
//! new schema: readers see the doc through the registry). Field `order` and
//! attributes on primitive types are not kept by apache-avro and so do not
//! count.
//!
//! The text as submitted is what the registry stores and returns to clients;
//! the canonical key (serde_json of the parsed [`Schema`] with sorted object
//! keys) is only used for equality.

use apache_avro::Schema;
use serde_json::Value;

use crate::RegistryError;

/// A schema accepted by the registry: the text to store and return, the
/// parsed Avro schema (for compatibility checks) and the identity key.
#[derive(Debug, Clone)]
pub(crate) struct ParsedSchema {
    /// The schema text exactly as the client submitted it.
    pub text: String,
    /// The parsed schema.
    pub schema: Schema,
    /// The canonical key: equal for equal schemas, whatever the formatting.
    pub canonical: String,
}

/// Parses Avro schema text; an invalid schema is a 42201 carrying
/// apache-avro's explanation.
pub(crate) fn parse(text: &str) -> Result<ParsedSchema, RegistryError> {
    if text.trim().is_empty() {
        return Err(RegistryError::InvalidSchema("Empty schema".to_owned()));
    }
    let schema = Schema::parse_str(text).map_err(|e| {
        RegistryError::InvalidSchema(format!("Invalid schema {text}, details: {e}"))
    })?;
    let canonical = canonical_key(&schema).map_err(|e| {
        RegistryError::InvalidSchema(format!("Invalid schema {text}, details: {e}"))
    })?;
    Ok(ParsedSchema {
        text: text.to_owned(),
        schema,
        canonical,
    })
}

/// Parses a schema the registry stored earlier (already validated once).
pub(crate) fn parse_stored(text: &str) -> Result<Schema, RegistryError> {
    Schema::parse_str(text)
        .map_err(|e| RegistryError::InvalidSchema(format!("a stored schema no longer parses: {e}")))
}

fn canonical_key(schema: &Schema) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(schema)?;
    let mut out = String::new();
    write_sorted(&value, &mut out)?;
    Ok(out)
}

/// Writes compact JSON with object keys sorted, whatever serde_json's
/// `preserve_order` feature says.
fn write_sorted(value: &Value, out: &mut String) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key)?);
                out.push(':');
                write_sorted(&map[key], out)?;
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out)?;
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"type":"record","name":"E","namespace":"io.pushflow","doc":"d",
        "fields":[{"name":"a","type":"string"},
                  {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
                  {"name":"n","type":["null","string"],"default":null}]}"#;

    fn key(text: &str) -> String {
        parse(text).unwrap().canonical
    }

    #[test]
    fn whitespace_key_order_and_spelling_do_not_matter() {
        let reordered = r#"{
            "fields": [
                {"type": {"type": "string"}, "name": "a"},
                {"type": {"logicalType": "timestamp-millis", "type": "long"}, "name": "t"},
                {"default": null, "name": "n", "type": ["null", "string"]}
            ],
            "doc": "d", "name": "io.pushflow.E", "type": "record"
        }"#;
        assert_eq!(key(BASE), key(reordered));
    }

    #[test]
    fn defaults_logical_types_and_docs_are_identity() {
        let base = key(BASE);
        let other_default = BASE.replace(r#""default":null"#, r#""default":null,"aliases":["m"]"#);
        assert_ne!(base, key(&other_default), "aliases count");
        let no_logical = BASE.replace(
            r#"{"type":"long","logicalType":"timestamp-millis"}"#,
            r#""long""#,
        );
        assert_ne!(base, key(&no_logical), "logical types count");
        let other_doc = BASE.replace(r#""doc":"d""#, r#""doc":"e""#);
        assert_ne!(base, key(&other_doc), "docs count");
        let with_default = BASE.replace(
            r#"{"name":"a","type":"string"}"#,
            r#"{"name":"a","type":"string","default":"x"}"#,
        );
        assert_ne!(base, key(&with_default), "defaults count");
    }

    #[test]
    fn invalid_schemas_are_42201_with_avro_reason() {
        let err = parse(r#"{"type":"record","name":"E","fields":[{"name":"a","type":"strin"}]}"#)
            .unwrap_err();
        assert_eq!(err.error_code(), 42201);
        assert!(err.to_string().contains("strin"), "{err}");
        assert_eq!(parse("  ").unwrap_err().to_string(), "Empty schema");
        assert_eq!(parse("{not json").unwrap_err().error_code(), 42201);
    }

    #[test]
    fn every_pushflow_schema_parses() {
        for topic in pushflow_schemas::CATALOGUE {
            let parsed = parse(topic.schema_text).unwrap();
            assert_eq!(parsed.text, topic.schema_text);
            assert!(
                parsed.canonical.contains("timestamp-millis"),
                "{}",
                topic.name
            );
        }
    }
}
