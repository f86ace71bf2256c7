//! Typed events, one struct per topic. Field names and types mirror the
//! `.avsc` files exactly (see the drift tests at the bottom).
//!
//! Times are `i64` milliseconds since the epoch (Avro `timestamp-millis`);
//! event ids are UUID strings (Avro `uuid` logical type).

use apache_avro::types::Value;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::catalogue::Topic;

/// Errors turning typed events into Avro values and back.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The value does not fit the topic's schema (a bug or a schema drift;
    /// retrying cannot help).
    #[error("event does not match schema of {topic}: {message}")]
    Schema {
        /// Topic whose schema was used.
        topic: &'static str,
        /// What apache-avro said.
        message: String,
    },
}

/// What every event has, and how it maps to its topic.
pub trait Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The topic this event type is written to.
    const TOPIC: &'static str;

    /// The catalogue entry of [`Self::TOPIC`].
    fn topic() -> &'static Topic {
        Topic::by_name(Self::TOPIC).expect("every event's topic is in the catalogue")
    }
    /// The Kafka key: the value of the topic's key field.
    fn key(&self) -> &str;
    /// The event's id.
    fn event_id(&self) -> &str;
    /// Event time, ms since the epoch.
    fn occurred_at(&self) -> i64;
    /// The merchant's store.
    fn store_id(&self) -> &str;

    /// Converts to an Avro value resolved against the topic's schema.
    fn to_avro(&self) -> Result<Value, EventError> {
        let err = |e: apache_avro::Error| EventError::Schema {
            topic: Self::TOPIC,
            message: e.to_string(),
        };
        apache_avro::to_value(self)
            .map_err(err)?
            .resolve(Self::topic().schema())
            .map_err(err)
    }

    /// Reads an event from an Avro value already resolved to the topic's
    /// (reader) schema.
    fn from_avro(value: Value) -> Result<Self, EventError> {
        apache_avro::from_value(&value).map_err(|e| EventError::Schema {
            topic: Self::TOPIC,
            message: e.to_string(),
        })
    }
}

/// RFC 8030 Urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// `very-low`
    VeryLow,
    /// `low`
    Low,
    /// `normal`
    #[default]
    Normal,
    /// `high`
    High,
}

impl Urgency {
    /// The value of the HTTP `Urgency` header.
    pub fn header_value(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

/// Why a notification failed, as a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// 404/410: the subscription no longer exists.
    Gone,
    /// 400 and other refusals of the request itself.
    Rejected,
    /// 401/403: VAPID was refused.
    Unauthorized,
    /// 413: payload too large.
    PayloadTooLarge,
    /// 429/5xx/timeouts until the retry budget ran out.
    RetriesExhausted,
    /// The request timed out (used when the budget ran out on timeouts).
    Timeout,
    /// The subscription's keys or endpoint are unusable.
    InvalidSubscription,
    /// Anything else.
    #[default]
    Other,
}

macro_rules! event {
    ($ty:ident, $topic:literal, $key:ident) => {
        impl Event for $ty {
            const TOPIC: &'static str = $topic;
            fn key(&self) -> &str {
                &self.$key
            }
            fn event_id(&self) -> &str {
                &self.event_id
            }
            fn occurred_at(&self) -> i64 {
                self.occurred_at
            }
            fn store_id(&self) -> &str {
                &self.store_id
            }
        }
    };
}

/// `campaign.created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct CampaignCreated {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub campaign_id: String,
    pub title: String,
    pub body: String,
    pub url: String,
    pub icon: Option<String>,
    pub ttl_seconds: i32,
    pub urgency: Urgency,
}
event!(CampaignCreated, "campaign.created", campaign_id);

/// `campaign.launched`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct CampaignLaunched {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub campaign_id: String,
    pub throttle_per_minute: Option<i32>,
}
event!(CampaignLaunched, "campaign.launched", campaign_id);

/// `campaign.scheduled`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct CampaignScheduled {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub campaign_id: String,
    pub send_at: i64,
    pub throttle_per_minute: Option<i32>,
}
event!(CampaignScheduled, "campaign.scheduled", campaign_id);

/// `campaign.cancelled`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct CampaignCancelled {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub campaign_id: String,
}
event!(CampaignCancelled, "campaign.cancelled", campaign_id);

/// `subscription.created`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct SubscriptionCreated {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub subscriber_id: String,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}
event!(SubscriptionCreated, "subscription.created", subscriber_id);

/// `subscription.expired`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct SubscriptionExpired {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub subscriber_id: String,
    pub reason: String,
}
event!(SubscriptionExpired, "subscription.expired", subscriber_id);

/// `notification.dispatched`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct NotificationDispatched {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub notification_id: String,
    pub campaign_id: String,
    pub subscriber_id: String,
}
event!(
    NotificationDispatched,
    "notification.dispatched",
    notification_id
);

/// `notification.failed`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct NotificationFailed {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub notification_id: String,
    pub campaign_id: String,
    pub subscriber_id: String,
    pub error: String,
    pub kind: FailureKind,
    pub retryable: bool,
    pub status_code: Option<i32>,
}
event!(NotificationFailed, "notification.failed", notification_id);

/// `notification.delivered`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct NotificationDelivered {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub notification_id: String,
    pub campaign_id: String,
}
event!(
    NotificationDelivered,
    "notification.delivered",
    notification_id
);

/// `notification.clicked`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[expect(
    missing_docs,
    reason = "the fields are documented in schemas/<topic>.avsc and DESIGN.md"
)]
pub struct NotificationClicked {
    pub event_id: String,
    pub occurred_at: i64,
    pub store_id: String,
    pub notification_id: String,
    pub campaign_id: String,
}
event!(NotificationClicked, "notification.clicked", notification_id);

/// A fresh random event id.
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Now, in ms since the epoch.
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    const ID: &str = "7b0c1a52-9d55-4f57-a1a8-5d6c3f0e9a11";

    fn field_names_of_schema(t: &Topic) -> Vec<String> {
        let Schema::Record(r) = t.schema() else {
            unreachable!()
        };
        r.fields.iter().map(|f| f.name.clone()).collect()
    }

    fn field_names_of_value(v: &Value) -> Vec<String> {
        let Value::Record(fields) = v else {
            panic!("not a record: {v:?}")
        };
        fields.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Encodes `e` against its schema, decodes it back through Avro
    /// binary, and checks that nothing changed and no field is extra or
    /// missing.
    fn round_trip<E: Event + PartialEq + std::fmt::Debug>(e: E) {
        let schema = E::topic().schema();
        let plain = apache_avro::to_value(&e).unwrap();
        assert_eq!(
            field_names_of_value(&plain),
            field_names_of_schema(E::topic()),
            "struct and {} disagree",
            E::topic().schema_file
        );
        let v = e.to_avro().unwrap();
        let bytes = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(v)
            .unwrap();
        let back = apache_avro::reader::datum::GenericDatumReader::builder(schema)
            .build()
            .unwrap()
            .read_value(&mut &bytes[..])
            .unwrap();
        assert_eq!(E::from_avro(back).unwrap(), e);
    }

    #[test]
    fn every_event_matches_its_schema() {
        let base = (ID.to_string(), 1_700_000_000_123_i64, "store-1".to_string());
        round_trip(CampaignCreated {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            campaign_id: "c1".into(),
            title: "Sale".into(),
            body: "50% off".into(),
            url: "https://shop.example/sale".into(),
            icon: Some("https://shop.example/i.png".into()),
            ttl_seconds: 3600,
            urgency: Urgency::High,
        });
        round_trip(CampaignLaunched {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            campaign_id: "c1".into(),
            throttle_per_minute: Some(600),
        });
        round_trip(CampaignScheduled {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            campaign_id: "c1".into(),
            send_at: base.1 + 3_600_000,
            throttle_per_minute: None,
        });
        round_trip(CampaignCancelled {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            campaign_id: "c1".into(),
        });
        round_trip(SubscriptionCreated {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            subscriber_id: "s1".into(),
            endpoint: "https://push.example/abc".into(),
            p256dh: "BPk".into(),
            auth: "xyz".into(),
        });
        round_trip(SubscriptionExpired {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            subscriber_id: "s1".into(),
            reason: "410 Gone".into(),
        });
        round_trip(NotificationDispatched {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
            subscriber_id: "s1".into(),
        });
        round_trip(NotificationFailed {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
            subscriber_id: "s1".into(),
            error: "429 after 5 attempts".into(),
            kind: FailureKind::RetriesExhausted,
            retryable: true,
            status_code: None,
        });
        round_trip(NotificationDelivered {
            event_id: base.0.clone(),
            occurred_at: base.1,
            store_id: base.2.clone(),
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
        });
        round_trip(NotificationClicked {
            event_id: base.0,
            occurred_at: base.1,
            store_id: base.2,
            notification_id: "n1".into(),
            campaign_id: "c1".into(),
        });
    }

    #[test]
    fn a_bad_uuid_is_refused() {
        let e = CampaignLaunched {
            event_id: "not-a-uuid".into(),
            occurred_at: 1,
            store_id: "s".into(),
            campaign_id: "c".into(),
            throttle_per_minute: None,
        };
        assert!(e.to_avro().is_err());
    }
}
