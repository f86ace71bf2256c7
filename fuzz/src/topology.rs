//! `topology`: any text as `topology.yaml` at the repository's root (so
//! its `schema:` paths find the real `schemas/`), loaded and checked by
//! `Topology::parse` as `pushflow topology check` does before anything
//! starts (a refusal exits 2 with the error's text).
//!
//! Properties: a refusal names the file, an entry that exists
//! (`` topics[i] "name" `` or `` components[i] "name" ``, then `` field `x`: ``)
//! or, for YAML that does not parse or fit, its line and column; what is
//! accepted keeps every promise of the module doc of
//! `pushflow_runtime::topology` (valid unique topic names, at least one
//! partition and replica, durations and sizes that parse, keys that are
//! fields of their schema, unique component names, inputs and outputs
//! that are declared topics or their `.dlq`).

use pushflow_runtime::topology::{parse_duration, parse_size, Topology, TopologyError};
use std::collections::HashSet;
use std::path::Path;

/// Checks the properties of the module doc for one input; the topology
/// when it was accepted.
pub fn check(root: &Path, input: &[u8]) -> Option<Topology> {
    let text = String::from_utf8_lossy(input);
    let path = root.join("topology.yaml");
    match Topology::parse(&path, &text) {
        Ok(t) => {
            accepted(&path, &t);
            Some(t)
        }
        Err(e) => {
            refused(&path, &text, &e);
            None
        }
    }
}

/// `topics[3] "name"` → (`topics`, 3).
fn entry_of(entry: &str) -> Option<(&str, usize)> {
    let (list, rest) = entry.split_once('[')?;
    let (index, name) = rest.split_once("] ")?;
    if !name.starts_with('"') || !name.ends_with('"') {
        return None;
    }
    Some((list, index.parse().ok()?))
}

/// The lines of `text` as YAML (libyaml) counts them: CR, LF, CR LF,
/// NEL, LS and PS each end one.
fn yaml_lines(text: &str) -> usize {
    let breaks = text
        .replace("\r\n", "\n")
        .chars()
        .filter(|c| matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    breaks + 1
}

fn refused(path: &Path, text: &str, e: &TopologyError) {
    assert_eq!(e.file, path.display().to_string());
    assert_eq!(
        e.to_string(),
        format!("{}: {}: {}", e.file, e.entry, e.message)
    );
    assert!(!e.message.is_empty(), "{e}");
    if e.entry == "file" {
        return;
    }
    if e.entry == "pings" {
        assert!(e.message.starts_with("field `"), "{e}: names no field");
        return;
    }
    if let Some(at) = e.entry.strip_prefix("line ") {
        let (line, column) = at
            .split_once(" column ")
            .unwrap_or_else(|| panic!("entry {:?}", e.entry));
        let line: usize = line.parse().expect("a line number");
        let _: usize = column.parse().expect("a column number");
        let lines = yaml_lines(text);
        assert!(
            line >= 1 && line <= lines + 1,
            "{e}: line {line} of {lines} lines"
        );
        return;
    }
    let Some((list, i)) = entry_of(&e.entry) else {
        panic!(
            "{e}: entry {:?} is neither a line nor a list entry",
            e.entry
        );
    };
    assert!(
        list == "topics" || list == "components",
        "{e}: no such list"
    );
    assert!(e.message.starts_with("field `"), "{e}: names no field");
    // The entry exists in the file.
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(text).expect("a file that fits the schema is YAML");
    let entries = yaml
        .get(list)
        .and_then(serde_yaml::Value::as_sequence)
        .map_or(0, Vec::len);
    assert!(i < entries, "{e}: the file has {entries} {list}");
}

fn accepted(path: &Path, t: &Topology) {
    assert_eq!(t.path, path);
    let mut names = HashSet::new();
    let mut declared = HashSet::new();
    for topic in &t.topics {
        let s = &topic.spec;
        assert!(
            !s.name.is_empty()
                && s.name.len() <= 249
                && s.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "topic name {:?}",
            s.name
        );
        assert!(names.insert(s.name.clone()), "duplicate topic {:?}", s.name);
        assert!(s.partitions >= 1 && s.replication_factor >= 1, "{}", s.name);
        assert_eq!(parse_duration(&s.retention), Ok(topic.retention));
        assert_eq!(
            parse_size(&s.max_message_bytes),
            Ok(topic.max_message_bytes)
        );
        // The file as JSON (the runtime parsed it as an Avro record).
        let schema: serde_json::Value = serde_json::from_str(&topic.schema_text)
            .unwrap_or_else(|e| panic!("{}: accepted a schema that is not JSON: {e}", s.name));
        assert!(
            schema["fields"]
                .as_array()
                .is_some_and(|fs| fs.iter().any(|f| f["name"] == s.key.as_str())),
            "{}: key {:?} is not a field of {}",
            s.name,
            s.key,
            topic.schema_path.display()
        );
        declared.insert(s.name.clone());
        declared.insert(format!("{}.dlq", s.name));
    }
    let mut components = HashSet::new();
    for c in &t.components {
        assert!(!c.name.is_empty());
        assert!(
            components.insert(c.name.clone()),
            "duplicate component {:?}",
            c.name
        );
        for topic in c.inputs.iter().chain(&c.outputs) {
            assert!(
                declared.contains(topic),
                "{}: undeclared topic {topic:?}",
                c.name
            );
        }
    }
}
