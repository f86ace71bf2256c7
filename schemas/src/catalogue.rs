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

/// `campaign.created`.
pub const CAMPAIGN_CREATED: Topic = topic!("campaign.created", "campaign_id");
/// `campaign.launched`.
pub const CAMPAIGN_LAUNCHED: Topic = topic!("campaign.launched", "campaign_id");
/// `subscription.created`.
pub const SUBSCRIPTION_CREATED: Topic = topic!("subscription.created", "subscriber_id");
/// `subscription.expired`.
pub const SUBSCRIPTION_EXPIRED: Topic = topic!("subscription.expired", "subscriber_id");
/// `notification.dispatched`.
pub const NOTIFICATION_DISPATCHED: Topic = topic!("notification.dispatched", "notification_id");
/// `notification.failed`.
pub const NOTIFICATION_FAILED: Topic = topic!("notification.failed", "notification_id");
/// `notification.delivered` (billable).
pub const NOTIFICATION_DELIVERED: Topic = topic!("notification.delivered", "notification_id");
/// `notification.clicked` (billable).
pub const NOTIFICATION_CLICKED: Topic = topic!("notification.clicked", "notification_id");
/// `campaign.scheduled`.
pub const CAMPAIGN_SCHEDULED: Topic = topic!("campaign.scheduled", "campaign_id");
/// `campaign.cancelled`.
pub const CAMPAIGN_CANCELLED: Topic = topic!("campaign.cancelled", "campaign_id");

/// Every topic of DESIGN.md, in the order of its table.
pub const CATALOGUE: [Topic; 10] = [
    CAMPAIGN_CREATED,
    CAMPAIGN_LAUNCHED,
    SUBSCRIPTION_CREATED,
    SUBSCRIPTION_EXPIRED,
    NOTIFICATION_DISPATCHED,
    NOTIFICATION_FAILED,
    NOTIFICATION_DELIVERED,
    NOTIFICATION_CLICKED,
    CAMPAIGN_SCHEDULED,
    CAMPAIGN_CANCELLED,
];

/// `dispatch.batches`: dispatch's own work queue, one record per slice of
/// a launched campaign's audience (schema `dispatch.batch.avsc`, key the
/// batch key).
pub const DISPATCH_BATCHES: Topic = Topic {
    name: "dispatch.batches",
    key_field: "batch_key",
    schema_file: "dispatch.batch.avsc",
    schema_text: include_str!("../dispatch.batch.avsc"),
};

/// Internal topics: written and read by pushflow's own components only.
/// Not events of the contract: ingest does not accept them and the lake
/// does not keep them ([`Topic::by_name`] does not find them).
pub const INTERNAL: [Topic; 1] = [DISPATCH_BATCHES];

/// The billable topics: they enter only as signed pings (`/v1/pings`),
/// never through `/v1/events` (DESIGN.md).
pub const BILLABLE: [&str; 2] = [NOTIFICATION_DELIVERED.name, NOTIFICATION_CLICKED.name];

/// A billable ping: the `type` of a `/v1/pings` body and the topic it goes
/// to; the one place that maps one to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PingKind {
    /// `delivered` → `notification.delivered`: an impression.
    Delivered = 0,
    /// `clicked` → `notification.clicked`.
    Clicked = 1,
}

impl PingKind {
    /// Both kinds.
    pub const ALL: [PingKind; 2] = [PingKind::Delivered, PingKind::Clicked];

    /// Its topic.
    pub fn topic(self) -> &'static Topic {
        match self {
            PingKind::Delivered => &NOTIFICATION_DELIVERED,
            PingKind::Clicked => &NOTIFICATION_CLICKED,
        }
    }

    /// Its name as a ping's `type`: `delivered` or `clicked`.
    pub fn name(self) -> &'static str {
        match self {
            PingKind::Delivered => "delivered",
            PingKind::Clicked => "clicked",
        }
    }

    /// The kind a ping's `type` names.
    pub fn from_name(name: &str) -> Option<PingKind> {
        PingKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of a topic: its name ends with `notification.delivered` or
    /// `notification.clicked` (tests prefix their topics).
    pub fn for_topic(topic: &str) -> Option<PingKind> {
        PingKind::ALL
            .into_iter()
            .find(|k| topic.ends_with(k.topic().name))
    }

    /// A small stable code (0 delivered, 1 clicked), for storage.
    pub fn code(self) -> i16 {
        self as i16
    }
}

impl Topic {
    /// Whether records of this topic are billed (see [`BILLABLE`]).
    pub fn is_billable(&self) -> bool {
        BILLABLE.contains(&self.name)
    }

    /// Finds a catalogue topic by name (not an [`INTERNAL`] one).
    pub fn by_name(name: &str) -> Option<&'static Topic> {
        CATALOGUE.iter().find(|t| t.name == name)
    }

    /// The topic's name with `prefix` in front (tests isolate their topics
    /// so).
    pub fn prefixed(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.name)
    }

    /// The topic's parsed schema (parsed once per process).
    pub fn schema(&self) -> &'static Schema {
        static PARSED: OnceLock<Vec<(&'static str, Schema)>> = OnceLock::new();
        let all = PARSED.get_or_init(|| {
            CATALOGUE
                .iter()
                .chain(INTERNAL.iter())
                .map(|t| {
                    let s = Schema::parse_str(t.schema_text)
                        .unwrap_or_else(|e| panic!("embedded schema {} is invalid: {e}", t.name));
                    (t.name, s)
                })
                .collect()
        });
        all.iter()
            .find(|(name, _)| *name == self.name)
            .map(|(_, s)| s)
            .expect("topic comes from the catalogue")
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
        assert!(Topic::by_name(DISPATCH_BATCHES.name).is_none());
        for k in PingKind::ALL {
            assert!(k.topic().is_billable());
            assert_eq!(PingKind::from_name(k.name()), Some(k));
            assert_eq!(PingKind::for_topic(&k.topic().prefixed("t-")), Some(k));
        }
        assert_eq!(PingKind::for_topic("notification.failed"), None);
        assert_eq!(PingKind::from_name("shown"), None);
        assert_eq!(DISPATCH_BATCHES.prefixed("t1-"), "t1-dispatch.batches");
        assert_eq!(DISPATCH_BATCHES.subject(), "dispatch.batches-value");
        let Schema::Record(rec) = DISPATCH_BATCHES.schema() else {
            panic!("dispatch.batch.avsc is not a record")
        };
        assert!(rec.fields.iter().any(|f| f.name == "batch_key"));
    }
}
