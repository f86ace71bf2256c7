//! Compatibility levels and the check a new schema must pass before it is
//! registered.
//!
//! Guarantee: the verdict is real Avro schema resolution
//! (apache-avro's [`SchemaCompatibility::can_read`]), not a textual diff:
//! BACKWARD means consumers using the new schema can read data written with
//! the previous one (new = reader, old = writer), FORWARD the other way
//! round, FULL both; the `_TRANSITIVE` levels check every non-deleted
//! version instead of only the latest. A resolution that can fail for some
//! values (enum symbols or union branches missing, apache-avro's
//! `Compatibility::Partial`) is incompatible, as in Confluent. Every problem
//! is reported naming the field, with its path (`/fields/<name>/...`).

use std::fmt;
use std::str::FromStr;

use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

use crate::RegistryError;

/// A subject's (or the global) compatibility rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    /// Anything goes.
    None,
    /// The new schema reads data written with the latest one (default).
    #[default]
    Backward,
    /// The new schema reads data written with every earlier one.
    BackwardTransitive,
    /// The latest schema reads data written with the new one.
    Forward,
    /// Every earlier schema reads data written with the new one.
    ForwardTransitive,
    /// Backward and forward against the latest.
    Full,
    /// Backward and forward against every earlier schema.
    FullTransitive,
}

impl CompatibilityLevel {
    /// The upper-case name Confluent uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether every earlier version is checked, not only the latest.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompatibilityLevel {
    type Err = RegistryError;

    /// Case-insensitive; anything else is a 42203.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "NONE" => CompatibilityLevel::None,
            "BACKWARD" => CompatibilityLevel::Backward,
            "BACKWARD_TRANSITIVE" => CompatibilityLevel::BackwardTransitive,
            "FORWARD" => CompatibilityLevel::Forward,
            "FORWARD_TRANSITIVE" => CompatibilityLevel::ForwardTransitive,
            "FULL" => CompatibilityLevel::Full,
            "FULL_TRANSITIVE" => CompatibilityLevel::FullTransitive,
            _ => return Err(RegistryError::InvalidCompatibilityLevel(s.to_owned())),
        })
    }
}

/// Checks `new` against `existing` (oldest first, `(version, schema)`),
/// honouring the level: the latest only, or all for `_TRANSITIVE`. Returns
/// the problems found, empty when compatible.
pub(crate) fn check(
    level: CompatibilityLevel,
    new: &Schema,
    existing: &[(i32, Schema)],
) -> Vec<String> {
    let against: &[(i32, Schema)] = if level.is_transitive() {
        existing
    } else {
        existing.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    let mut problems = Vec::new();
    for (version, old) in against.iter().rev() {
        let before = problems.len();
        if level.backward() {
            problems.extend(one_way(old, new, Role::NewReads));
        }
        if level.forward() {
            problems.extend(one_way(new, old, Role::OldReads));
        }
        if problems.len() > before {
            problems.push(format!("{{oldSchemaVersion: {version}}}"));
        }
    }
    if !problems.is_empty() {
        problems.push(format!("{{compatibility: '{level}'}}"));
    }
    problems
}

/// Which schema is the reader, to word the messages.
#[derive(Clone, Copy)]
enum Role {
    /// BACKWARD direction: the new schema reads the old one's data.
    NewReads,
    /// FORWARD direction: the old schema reads the new one's data.
    OldReads,
}

impl Role {
    fn reader(self) -> &'static str {
        match self {
            Role::NewReads => "new",
            Role::OldReads => "old",
        }
    }

    fn writer(self) -> &'static str {
        match self {
            Role::NewReads => "old",
            Role::OldReads => "new",
        }
    }
}

/// Resolution of `writer` data with `reader`, as Confluent-style messages.
fn one_way(writer: &Schema, reader: &Schema, role: Role) -> Option<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => None,
        Ok(Compatibility::Partial) => {
            let path = partial_path(writer, reader, String::new());
            Some(problem(
                "MISSING_ENUM_SYMBOL_OR_UNION_BRANCH",
                &format!(
                    "The {} schema is missing enum symbols or union branches at path '{}' that the {} schema can write",
                    role.reader(),
                    display_path(&path),
                    role.writer()
                ),
                &path,
            ))
        }
        Err(e) => Some(describe(&e, String::new(), role)),
    }
}

/// Walks a nested compatibility error down to the field that broke.
fn describe(err: &CompatibilityError, path: String, role: Role) -> String {
    let (reader, writer) = (role.reader(), role.writer());
    match err {
        CompatibilityError::FieldTypeMismatch(field, inner) => {
            let nested = format!("{path}/fields/{field}");
            match inner.as_ref() {
                // A field whose own type is a record: keep descending.
                e @ (CompatibilityError::FieldTypeMismatch(..)
                | CompatibilityError::MissingDefaultValue(_)) => describe(e, nested, role),
                e => problem(
                    "TYPE_MISMATCH",
                    &format!(
                        "The type of the field '{field}' at path '{}' in the {reader} schema does not match with the {writer} schema: {e}",
                        display_path(&nested)
                    ),
                    field,
                ),
            }
        }
        CompatibilityError::MissingDefaultValue(field) => problem(
            "READER_FIELD_MISSING_DEFAULT_VALUE",
            &format!(
                "The field '{field}' at path '{}' in the {reader} schema has no default value and is missing in the {writer} schema",
                display_path(&format!("{path}/fields/{field}"))
            ),
            field,
        ),
        CompatibilityError::NameMismatch {
            writer_name,
            reader_name,
        } => problem(
            "NAME_MISMATCH",
            &format!(
                "The name of the schema at path '{}' has changed: '{writer_name}' in the {writer} schema, '{reader_name}' in the {reader} schema",
                display_path(&path)
            ),
            reader_name,
        ),
        CompatibilityError::WrongType { .. } | CompatibilityError::TypeExpected { .. } => problem(
            "TYPE_MISMATCH",
            &format!(
                "The type at path '{}' in the {reader} schema does not match with the {writer} schema",
                display_path(&path)
            ),
            &path,
        ),
        other => problem(
            "INCOMPATIBLE",
            &format!("At path '{}': {other}", display_path(&path)),
            &path,
        ),
    }
}

/// For a `Partial` verdict: the deepest record field that is itself partial.
fn partial_path(writer: &Schema, reader: &Schema, path: String) -> String {
    if let (Schema::Record(w), Schema::Record(r)) = (writer, reader) {
        for r_field in &r.fields {
            let Some(w_field) = std::iter::once(&r_field.name)
                .chain(r_field.aliases.iter())
                .find_map(|name| w.fields.iter().find(|f| &f.name == name))
            else {
                continue;
            };
            if let Ok(Compatibility::Partial) =
                SchemaCompatibility::can_read(&w_field.schema, &r_field.schema)
            {
                return partial_path(
                    &w_field.schema,
                    &r_field.schema,
                    format!("{path}/fields/{}", r_field.name),
                );
            }
        }
    }
    path
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn problem(kind: &str, description: &str, info: &str) -> String {
    format!("{{errorType:'{kind}', description:'{description}', additionalInfo:'{info}'}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"E","namespace":"io.pushflow","fields":[{fields}]}}"#
        ))
        .unwrap()
    }

    const ID: &str = r#"{"name":"id","type":"string"}"#;
    const X_REQUIRED: &str = r#"{"name":"x","type":"string"}"#;
    const X_DEFAULT: &str = r#"{"name":"x","type":"string","default":""}"#;

    fn v1() -> Vec<(i32, Schema)> {
        vec![(1, schema(ID))]
    }

    #[test]
    fn apache_avro_catches_a_new_required_field_under_backward() {
        let new = schema(&format!("{ID},{X_REQUIRED}"));
        let problems = check(CompatibilityLevel::Backward, &new, &v1());
        assert!(!problems.is_empty());
        assert!(
            problems[0].contains("READER_FIELD_MISSING_DEFAULT_VALUE"),
            "{problems:?}"
        );
        assert!(problems[0].contains("The field 'x'"), "{problems:?}");
        assert!(problems[0].contains("in the new schema"), "{problems:?}");
        assert!(problems.iter().any(|p| p == "{oldSchemaVersion: 1}"));
        assert!(problems.iter().any(|p| p == "{compatibility: 'BACKWARD'}"));
        // Forward only: old readers ignore the extra field.
        assert!(check(CompatibilityLevel::Forward, &new, &v1()).is_empty());
    }

    #[test]
    fn a_field_with_a_default_is_fully_compatible() {
        let new = schema(&format!("{ID},{X_DEFAULT}"));
        for level in [
            CompatibilityLevel::Backward,
            CompatibilityLevel::Forward,
            CompatibilityLevel::Full,
            CompatibilityLevel::FullTransitive,
        ] {
            assert!(check(level, &new, &v1()).is_empty(), "{level}");
        }
    }

    #[test]
    fn removing_a_required_field_breaks_forward_not_backward() {
        let old = vec![(1, schema(&format!("{ID},{X_REQUIRED}")))];
        let new = schema(ID);
        assert!(check(CompatibilityLevel::Backward, &new, &old).is_empty());
        let problems = check(CompatibilityLevel::Forward, &new, &old);
        assert!(problems[0].contains("The field 'x'"), "{problems:?}");
        assert!(problems[0].contains("in the old schema"), "{problems:?}");
        assert!(!check(CompatibilityLevel::Full, &new, &old).is_empty());
        // Removing a field that had a default is fine both ways.
        let old = vec![(1, schema(&format!("{ID},{X_DEFAULT}")))];
        assert!(check(CompatibilityLevel::Full, &new, &old).is_empty());
    }

    #[test]
    fn type_changes_name_the_field() {
        let new = schema(r#"{"name":"id","type":"int"}"#);
        let problems = check(CompatibilityLevel::Backward, &new, &v1());
        assert!(problems[0].contains("TYPE_MISMATCH"), "{problems:?}");
        assert!(problems[0].contains("'id'"), "{problems:?}");
        // int -> long promotion is fine.
        let old = vec![(1, schema(r#"{"name":"n","type":"int"}"#))];
        let new = schema(r#"{"name":"n","type":"long"}"#);
        assert!(check(CompatibilityLevel::Backward, &new, &old).is_empty());
        assert!(!check(CompatibilityLevel::Forward, &new, &old).is_empty());
    }

    #[test]
    fn nested_fields_are_named_with_their_path() {
        let old = vec![(
            1,
            schema(r#"{"name":"a","type":{"type":"record","name":"A","fields":[]}}"#),
        )];
        let new = schema(
            r#"{"name":"a","type":{"type":"record","name":"A","fields":[{"name":"zip","type":"string"}]}}"#,
        );
        let problems = check(CompatibilityLevel::Backward, &new, &old);
        assert!(
            problems[0].contains("The field 'zip' at path '/fields/a/fields/zip'"),
            "{problems:?}"
        );
    }

    #[test]
    fn partial_resolution_is_incompatible() {
        let enum_ab = r#"{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"]}}"#;
        let enum_abc = r#"{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B","C"]}}"#;
        let old = vec![(1, schema(enum_abc))];
        let problems = check(CompatibilityLevel::Backward, &schema(enum_ab), &old);
        assert!(problems[0].contains("/fields/k"), "{problems:?}");
        // Adding a symbol is backward compatible.
        let old = vec![(1, schema(enum_ab))];
        assert!(check(CompatibilityLevel::Backward, &schema(enum_abc), &old).is_empty());
        // Making an optional field required is not.
        let old = vec![(
            1,
            schema(r#"{"name":"o","type":["null","string"],"default":null}"#),
        )];
        let new = schema(r#"{"name":"o","type":"string"}"#);
        assert!(!check(CompatibilityLevel::Backward, &new, &old).is_empty());
    }

    #[test]
    fn transitive_levels_check_every_version() {
        // v1 has x required, v2 gave it a default, v3 drops it: v2 can
        // read v3's data (default), v1 cannot, so only the transitive
        // level, which also checks v1, refuses v3.
        let v1 = schema(&format!("{ID},{X_REQUIRED}"));
        let v2 = schema(&format!("{ID},{X_DEFAULT}"));
        let v3 = schema(ID);
        let existing = vec![(1, v1), (2, v2)];
        assert!(check(CompatibilityLevel::Forward, &v3, &existing).is_empty());
        let problems = check(CompatibilityLevel::ForwardTransitive, &v3, &existing);
        assert!(
            problems.iter().any(|p| p == "{oldSchemaVersion: 1}"),
            "{problems:?}"
        );
        assert!(
            !problems.iter().any(|p| p == "{oldSchemaVersion: 2}"),
            "{problems:?}"
        );
    }

    #[test]
    fn renaming_the_record_is_incompatible() {
        let renamed = Schema::parse_str(
            r#"{"type":"record","name":"F","namespace":"io.pushflow","fields":[{"name":"id","type":"string"}]}"#,
        )
        .unwrap();
        let problems = check(CompatibilityLevel::Backward, &renamed, &v1());
        assert!(problems[0].contains("NAME_MISMATCH"), "{problems:?}");
    }

    #[test]
    fn levels_parse_case_insensitively_and_reject_others() {
        assert_eq!(
            "full_transitive".parse::<CompatibilityLevel>().unwrap(),
            CompatibilityLevel::FullTransitive
        );
        assert_eq!(CompatibilityLevel::default().as_str(), "BACKWARD");
        assert_eq!(
            "SIDEWAYS"
                .parse::<CompatibilityLevel>()
                .unwrap_err()
                .error_code(),
            42203
        );
        assert!(check(CompatibilityLevel::None, &schema(X_REQUIRED), &v1()).is_empty());
    }
}
