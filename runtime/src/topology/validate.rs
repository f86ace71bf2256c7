//! The checks `pushflow topology check` runs: pure, except reading the
//! schema files the topology names.

use super::{Pings, PingsSpec, Topic, Topology, TopologyError, TopologyFile};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Parses a duration such as `30s`, `5m`, `12h`, `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("bad duration {s:?} ({e}): write a number and a unit, such as 30s, 5m, 12h or 7d")
    })
}

/// Parses a size such as `128MiB`, `64 MB`, `1000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| {
            format!(
                "bad size {s:?} ({e}): write a number and a unit, such as 512KiB, 128MiB or 1GB"
            )
        })
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `pings:` parsed; the error names the file and the field.
fn pings(path: &Path, spec: &PingsSpec) -> Result<Pings, TopologyError> {
    let field =
        |f: &str, v: &str| parse_duration(v).map_err(|m| TopologyError::field(path, "pings", f, m));
    let pings = Pings {
        token_ttl: field("token_ttl", &spec.token_ttl)?,
        clock_skew: field("clock_skew", &spec.clock_skew)?,
    };
    if pings.token_ttl < Duration::from_secs(60) {
        return Err(TopologyError::field(
            path,
            "pings",
            "token_ttl",
            format!(
                "{:?} is too short: a ping token must stay valid at least 1m (7d is the default)",
                spec.token_ttl
            ),
        ));
    }
    Ok(pings)
}

pub(super) fn validate(path: &Path, file: TopologyFile) -> Result<Topology, TopologyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut topics = Vec::with_capacity(file.topics.len());
    let mut seen = HashSet::new();
    for (i, spec) in file.topics.into_iter().enumerate() {
        let entry = format!("topics[{i}] {:?}", spec.name);
        let err = |field: &str, msg: String| TopologyError::field(path, entry.clone(), field, msg);
        if !valid_topic_name(&spec.name) {
            return Err(err(
                "name",
                "a topic name is 1 to 249 of [a-zA-Z0-9._-]".into(),
            ));
        }
        if !seen.insert(spec.name.clone()) {
            return Err(err(
                "name",
                format!(
                    "duplicate topic name {:?}: each topic is declared once",
                    spec.name
                ),
            ));
        }
        if spec.partitions < 1 {
            return Err(err(
                "partitions",
                format!("{} partitions: need at least 1", spec.partitions),
            ));
        }
        if spec.replication_factor < 1 {
            return Err(err("replication_factor", "need at least 1".into()));
        }
        let retention = parse_duration(&spec.retention).map_err(|m| err("retention", m))?;
        let max_message_bytes =
            parse_size(&spec.max_message_bytes).map_err(|m| err("max_message_bytes", m))?;
        let schema_path = dir.join(&spec.schema);
        let schema_text = std::fs::read_to_string(&schema_path).map_err(|e| {
            err(
                "schema",
                format!(
                    "schema file {} cannot be read ({e}); paths are relative to the topology file",
                    schema_path.display()
                ),
            )
        })?;
        let schema = apache_avro::Schema::parse_str(&schema_text).map_err(|e| {
            err(
                "schema",
                format!("{} is not a valid Avro schema: {e}", schema_path.display()),
            )
        })?;
        let apache_avro::Schema::Record(rec) = &schema else {
            return Err(err(
                "schema",
                format!("{} must be an Avro record", schema_path.display()),
            ));
        };
        if !rec.fields.iter().any(|f| f.name == spec.key) {
            return Err(err(
                "key",
                format!("{:?} is not a field of {}", spec.key, schema_path.display()),
            ));
        }
        topics.push(Topic {
            spec,
            retention,
            max_message_bytes,
            schema_path,
            schema_text,
        });
    }

    let declared: HashSet<String> = topics
        .iter()
        .flat_map(|t| {
            [
                t.spec.name.clone(),
                pushflow_schemas::catalogue::dlq_topic(&t.spec.name),
            ]
        })
        .collect();
    let mut names = HashSet::new();
    for (i, c) in file.components.iter().enumerate() {
        let entry = format!("components[{i}] {:?}", c.name);
        let err = |field: &str, msg: String| TopologyError::field(path, entry.clone(), field, msg);
        if c.name.is_empty() {
            return Err(err("name", "a component needs a name".into()));
        }
        if !names.insert(c.name.clone()) {
            return Err(err(
                "name",
                format!(
                    "duplicate component name {:?}: names must be unique",
                    c.name
                ),
            ));
        }
        for (field, list) in [("inputs", &c.inputs), ("outputs", &c.outputs)] {
            if let Some(t) = list.iter().find(|t| !declared.contains(*t)) {
                return Err(err(
                    field,
                    format!(
                        "topic {t:?} is not declared under `topics:`; declare it or fix the name"
                    ),
                ));
            }
        }
    }

    let pings = pings(path, &file.pings)?;
    Ok(Topology {
        path: path.to_path_buf(),
        services: file.services,
        kafka: file.kafka,
        pings,
        topics,
        components: file.components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn repo_topology() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../topology.yaml")
    }

    /// Parses `yaml` as if it sat at the repository's root (so the real
    /// `schemas/` files are found).
    fn check(yaml: &str) -> Result<Topology, String> {
        Topology::parse(&repo_topology(), yaml).map_err(|e| e.to_string())
    }

    const TOPIC: &str = "topics:\n  - name: campaign.launched\n    key: campaign_id\n    schema: schemas/campaign.launched.avsc\n";

    #[test]
    fn pings_default_parse_and_name_the_field() {
        let t = check(TOPIC).unwrap();
        assert_eq!(t.pings, Pings::default());
        assert_eq!(
            t.pings.dedup_horizon(),
            Duration::from_secs(7 * 86_400 + 600)
        );
        let t = check(&format!(
            "pings: {{token_ttl: 1h, clock_skew: 1m}}\n{TOPIC}"
        ))
        .unwrap();
        assert_eq!(t.pings.dedup_horizon(), Duration::from_secs(3_660));
        let e = check(&format!("pings: {{token_ttl: soon}}\n{TOPIC}")).unwrap_err();
        assert!(e.contains("topology.yaml: pings: field `token_ttl`"), "{e}");
        let e = check(&format!("pings: {{clock_skew: 1m, ttl: 1h}}\n{TOPIC}")).unwrap_err();
        assert!(e.contains("unknown field `ttl`"), "{e}");
    }

    #[test]
    fn the_repository_topology_loads() {
        let text = std::fs::read_to_string(repo_topology()).unwrap();
        let t = Topology::parse(&repo_topology(), &text).unwrap();
        for cat in pushflow_schemas::CATALOGUE {
            assert!(t.topic(cat.name).is_some(), "{} not declared", cat.name);
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("7x")
            .unwrap_err()
            .contains("bad duration \"7x\""));
        assert_eq!(parse_size("128MiB").unwrap(), 128 * 1024 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("12 parsecs")
            .unwrap_err()
            .contains("bad size \"12 parsecs\""));
    }

    #[test]
    fn misspelled_key_is_refused() {
        let e = check(&format!("{TOPIC}    partitons: 3\n")).unwrap_err();
        assert!(e.contains("topology.yaml: "), "{e}");
        assert!(
            e.contains("topics[0]: unknown field `partitons`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_topic_is_refused() {
        let e = check(&format!("{TOPIC}  - name: campaign.launched\n    key: campaign_id\n    schema: schemas/campaign.launched.avsc\n")).unwrap_err();
        assert!(
            e.ends_with("topology.yaml: topics[1] \"campaign.launched\": field `name`: duplicate topic name \"campaign.launched\": each topic is declared once"),
            "{e}"
        );
    }

    #[test]
    fn bad_retention_is_refused() {
        let e = check(&format!("{TOPIC}    retention: 7 fortnights\n")).unwrap_err();
        assert!(
            e.contains("topology.yaml: topics[0] \"campaign.launched\": field `retention`: bad duration \"7 fortnights\""),
            "{e}"
        );
    }

    #[test]
    fn bad_size_is_refused() {
        let e = check(&format!("{TOPIC}    max_message_bytes: lots\n")).unwrap_err();
        assert!(
            e.contains("topology.yaml: topics[0] \"campaign.launched\": field `max_message_bytes`: bad size \"lots\""),
            "{e}"
        );
    }

    #[test]
    fn missing_schema_file_is_refused() {
        let e = check("topics:\n  - name: campaign.launched\n    key: campaign_id\n    schema: schemas/nope.avsc\n").unwrap_err();
        assert!(
            e.contains(
                "topology.yaml: topics[0] \"campaign.launched\": field `schema`: schema file "
            ) && e.contains("schemas/nope.avsc cannot be read"),
            "{e}"
        );
    }

    #[test]
    fn key_must_be_a_field() {
        let e = check("topics:\n  - name: campaign.launched\n    key: campaign\n    schema: schemas/campaign.launched.avsc\n").unwrap_err();
        assert!(
            e.contains("field `key`: \"campaign\" is not a field of"),
            "{e}"
        );
    }

    #[test]
    fn undeclared_topic_is_refused() {
        let e = check(&format!(
            "{TOPIC}components:\n  - name: reg\n    type: registry\n    inputs: [campaign.lunched]\n"
        ))
        .unwrap_err();
        assert!(
            e.ends_with("topology.yaml: components[0] \"reg\": field `inputs`: topic \"campaign.lunched\" is not declared under `topics:`; declare it or fix the name"),
            "{e}"
        );
    }

    #[test]
    fn dlq_topics_are_implicit() {
        check(&format!(
            "{TOPIC}components:\n  - name: reg\n    type: registry\n    outputs: [campaign.launched.dlq]\n"
        ))
        .unwrap();
    }

    #[test]
    fn duplicate_component_is_refused() {
        let e = check(&format!(
            "{TOPIC}components:\n  - name: a\n    type: registry\n  - name: a\n    type: registry\n"
        ))
        .unwrap_err();
        assert!(
            e.ends_with("components[1] \"a\": field `name`: duplicate component name \"a\": names must be unique"),
            "{e}"
        );
    }

    #[test]
    fn environment_overrides_services() {
        let mut s = crate::topology::Services::default();
        s.apply_env(|k| (k == "PUSHFLOW_BROKERS").then(|| "kafka:29092".to_string()));
        assert_eq!(s.brokers, "kafka:29092");
        assert_eq!(s.registry_url, "http://127.0.0.1:8081");
    }
}
