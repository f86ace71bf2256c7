//! Topics, their keys and their schemas, as DESIGN.md's contract table has them.

use apache_avro::Schema;
use std::sync::OnceLock;

/// One topic of the catalogue: its name, the field used as Kafka key, and
/// its Avro schema (the text of `schemas/<topic>.avsc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic {
    /// Topic name, e.g. `notification.delivered`.
    pub name: &'static str,
    /// Field of the event whose value is the record key (UTF-8).
    pub key_field: &'static str,
    /// The schema file's name inside `schemas/`.
    pub schema_file: &'static str,
    /// The schema text, embedded at compile time.
    pub schema_text: &'static str,
}

macro_rules! topic {
    ($name:literal, $key:literal) => {
        Topic {
            name: $name,
            key_field: $key,
            schema_file: concat!($name, ".avsc"),
            schema_text: include_str!(concat!("../", $name, ".avsc")),
        }
    };
}

/// Every topic of DESIGN.md, in the order of its table.
pub const CATALOGUE: [Topic; 10] = [
    topic!("campaign.created", "campaign_id"),
    topic!("campaign.launched", "campaign_id"),
    topic!("subscription.created", "subscriber_id"),
    topic!("subscription.expired", "subscriber_id"),
    topic!("notification.dispatched", "notification_id"),
    topic!("notification.failed", "notification_id"),
    topic!("notification.delivered", "notification_id"),
    topic!("notification.clicked", "notification_id"),
    topic!("campaign.scheduled", "campaign_id"),
    topic!("campaign.cancelled", "campaign_id"),
];

/// The billable topics: they enter only as signed pings (`/v1/pings`),
/// never through `/v1/events` (DESIGN.md).
pub const BILLABLE: [&str; 2] = ["notification.delivered", "notification.clicked"];

impl Topic {
    /// Whether records of this topic are billed (see [`BILLABLE`]).
    pub fn is_billable(&self) -> bool {
        BILLABLE.contains(&self.name)
    }

    /// Finds a catalogue topic by name.
    pub fn by_name(name: &str) -> Option<&'static Topic> {
        CATALOGUE.iter().find(|t| t.name == name)
    }

    /// The topic's parsed schema (parsed once per process).
    pub fn schema(&self) -> &'static Schema {
        static PARSED: OnceLock<Vec<Schema>> = OnceLock::new();
        let all = PARSED.get_or_init(|| {
            CATALOGUE
                .iter()
                .map(|t| {
                    Schema::parse_str(t.schema_text)
                        .unwrap_or_else(|e| panic!("embedded schema {} is invalid: {e}", t.name))
                })
                .collect()
        });
        let i = CATALOGUE
            .iter()
            .position(|t| t.name == self.name)
            .expect("topic comes from the catalogue");
        &all[i]
    }

    /// The registry subject under TopicNameStrategy: `<topic>-value`.
    pub fn subject(&self) -> String {
        value_subject(self.name)
    }

    /// The dead-letter topic for this topic: `<topic>.dlq`.
    pub fn dlq(&self) -> String {
        dlq_topic(self.name)
    }
}

/// `<topic>-value`, the TopicNameStrategy subject of a topic's values.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// `<topic>.dlq`, where undecodable or invalid records of `topic` go.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// The lake table of a topic: `.` replaced by `_`.
pub fn lake_table(topic: &str) -> String {
    topic.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_is_documented() {
        for t in CATALOGUE {
            let Schema::Record(rec) = t.schema() else {
                panic!("{} is not a record", t.name)
            };
            assert_eq!(rec.name.namespace(), Some("io.pushflow.events"));
            let json: serde_json::Value = serde_json::from_str(t.schema_text).unwrap();
            for f in json["fields"].as_array().unwrap() {
                assert!(
                    f["doc"].as_str().is_some_and(|d| !d.is_empty()),
                    "{}: field {} has no doc",
                    t.name,
                    f["name"]
                );
            }
            for required in ["event_id", "occurred_at", "store_id", t.key_field] {
                assert!(
                    rec.fields.iter().any(|f| f.name == required),
                    "{} lacks {required}",
                    t.name
                );
            }
        }
    }

    #[test]
    fn names_follow_the_contract() {
        let t = Topic::by_name("notification.delivered").unwrap();
        assert_eq!(t.subject(), "notification.delivered-value");
        assert_eq!(t.dlq(), "notification.delivered.dlq");
        assert_eq!(lake_table(t.name), "notification_delivered");
        assert!(Topic::by_name("nope").is_none());
    }
}
