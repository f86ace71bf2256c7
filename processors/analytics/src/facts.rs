//! Decoding: a record of an input topic becomes a [`Fact`], the only
//! fields analytics needs. Pure apart from the codec's schema lookups.

use pushflow_runtime::codec::{Codec, CodecError};
use pushflow_schemas::{
    CampaignCancelled, CampaignCreated, CampaignLaunched, CampaignScheduled, Event, FailureKind,
    NotificationDispatched, NotificationFailed, SubscriptionCreated, SubscriptionExpired,
};

/// Which input topic a record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// `campaign.created`: title and creation time.
    CampaignCreated,
    /// `campaign.scheduled`: send time and throttle.
    CampaignScheduled,
    /// `campaign.cancelled`.
    CampaignCancelled,
    /// `campaign.launched`.
    CampaignLaunched,
    /// `subscription.created`: counted in `store_days.subscribed`.
    SubscriptionCreated,
    /// `subscription.expired`: counted in `store_days.expired`.
    SubscriptionExpired,
    /// `notification.dispatched`: counted as dispatched.
    NotificationDispatched,
    /// `notification.failed`: counted as expired (kind `gone`) or failed.
    NotificationFailed,
}

impl Input {
    /// Every input, in topology order.
    pub const ALL: [Input; 8] = [
        Input::CampaignCreated,
        Input::CampaignScheduled,
        Input::CampaignCancelled,
        Input::CampaignLaunched,
        Input::SubscriptionCreated,
        Input::SubscriptionExpired,
        Input::NotificationDispatched,
        Input::NotificationFailed,
    ];

    /// The catalogue topic's name.
    pub fn topic(self) -> &'static str {
        match self {
            Input::CampaignCreated => CampaignCreated::TOPIC,
            Input::CampaignScheduled => CampaignScheduled::TOPIC,
            Input::CampaignCancelled => CampaignCancelled::TOPIC,
            Input::CampaignLaunched => CampaignLaunched::TOPIC,
            Input::SubscriptionCreated => SubscriptionCreated::TOPIC,
            Input::SubscriptionExpired => SubscriptionExpired::TOPIC,
            Input::NotificationDispatched => NotificationDispatched::TOPIC,
            Input::NotificationFailed => NotificationFailed::TOPIC,
        }
    }

    /// The input a topic is: its catalogue name, or that name after a
    /// prefix ending in `.` (tests and multi-tenant clusters prefix topics).
    pub fn for_topic(topic: &str) -> Option<Input> {
        Input::ALL.into_iter().find(|i| {
            let name = i.topic();
            topic == name
                || topic
                    .strip_suffix(name)
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
    }
}

/// The outcome of a notification, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// `notification.dispatched`: the push service accepted it.
    Dispatched,
    /// `notification.failed` of any kind but `gone`.
    Failed,
    /// `notification.failed` of kind `gone` (404/410: the subscription no
    /// longer exists).
    Expired,
}

impl Outcome {
    /// The outcome of a `notification.failed` of `kind`.
    pub fn of_failure(kind: FailureKind) -> Outcome {
        match kind {
            FailureKind::Gone => Outcome::Expired,
            _ => Outcome::Failed,
        }
    }
}

/// A change of a store's subscribers, as counted per UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// `subscription.created`.
    Subscribed,
    /// `subscription.expired`.
    Expired,
}

/// The `campaign.scheduled` that set a campaign's schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Schedule {
    /// When it was scheduled (event time, ms): the latest schedule wins.
    pub occurred_at: i64,
    /// When to launch (ms).
    pub send_at: i64,
    /// Notifications per minute at most (`None`: unthrottled).
    pub throttle_per_minute: Option<i32>,
}

/// What campaign events say about a campaign's row of `campaigns`. Merging
/// is commutative, associative and idempotent, so the row is the same
/// whatever order and however often the events arrive (see [`Self::merge`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CampaignPatch {
    /// (occurred_at, title) of the earliest `campaign.created` (a tie on
    /// time goes to the smaller title, byte-wise).
    pub created: Option<(i64, String)>,
    /// The latest `campaign.scheduled` (greatest [`Schedule`], compared
    /// field by field in order).
    pub scheduled: Option<Schedule>,
    /// The earliest `campaign.cancelled` (ms).
    pub cancelled_at: Option<i64>,
    /// The earliest `campaign.launched` (ms).
    pub launched_at: Option<i64>,
}

fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl CampaignPatch {
    /// Merges `other` into `self`: earliest creation, latest schedule,
    /// earliest cancel and launch. The SQL upsert in [`crate::store`]
    /// merges a patch into a row by exactly these rules.
    ///
    /// ```
    /// use pushflow_analytics::facts::CampaignPatch;
    /// let mut row = CampaignPatch { launched_at: Some(20), ..Default::default() };
    /// row.merge(CampaignPatch { launched_at: Some(10), cancelled_at: Some(5), ..Default::default() });
    /// row.merge(CampaignPatch { launched_at: Some(30), ..Default::default() });
    /// assert_eq!((row.launched_at, row.cancelled_at), (Some(10), Some(5)));
    /// ```
    pub fn merge(&mut self, other: CampaignPatch) {
        self.created = earliest(self.created.take(), other.created);
        self.scheduled = self.scheduled.max(other.scheduled);
        self.cancelled_at = earliest(self.cancelled_at, other.cancelled_at);
        self.launched_at = earliest(self.launched_at, other.launched_at);
    }
}

/// A notification's outcome event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationOutcome {
    /// Merchant.
    pub store_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Notification (distinct per store: the dedup key).
    pub notification_id: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Event time, ms since the epoch (its windows).
    pub occurred_at: i64,
}

/// A subscription event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberChange {
    /// Merchant.
    pub store_id: String,
    /// Subscriber (distinct per store and day: the dedup key).
    pub subscriber_id: String,
    /// Subscribed or expired.
    pub change: Change,
    /// Event time, ms since the epoch (its UTC day).
    pub occurred_at: i64,
}

/// A decoded input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A campaign event: merged into the campaign's row, never counted.
    Campaign {
        /// Merchant.
        store_id: String,
        /// Campaign.
        campaign_id: String,
        /// What it sets.
        patch: CampaignPatch,
    },
    /// A notification outcome: counted once per (store, notification).
    Notification(NotificationOutcome),
    /// A subscription change: counted once per (store, subscriber, change, day).
    Subscriber(SubscriberChange),
}

impl Fact {
    /// Refuses facts that name nothing: an empty store, campaign,
    /// notification or subscriber id (the message says which).
    pub fn check(&self) -> Result<(), String> {
        let ids: Vec<(&str, &str)> = match self {
            Fact::Campaign {
                store_id,
                campaign_id,
                ..
            } => vec![("store_id", store_id), ("campaign_id", campaign_id)],
            Fact::Notification(n) => vec![
                ("store_id", &n.store_id),
                ("campaign_id", &n.campaign_id),
                ("notification_id", &n.notification_id),
            ],
            Fact::Subscriber(s) => vec![
                ("store_id", &s.store_id),
                ("subscriber_id", &s.subscriber_id),
            ],
        };
        match ids.iter().find(|(_, v)| v.is_empty()) {
            Some((field, _)) => Err(format!(
                "{field} is empty: every analytics event names its store and ids"
            )),
            None => Ok(()),
        }
    }
}

fn campaign(store_id: String, campaign_id: String, patch: CampaignPatch) -> Fact {
    Fact::Campaign {
        store_id,
        campaign_id,
        patch,
    }
}

/// Decodes a record value of `input` (Confluent wire format, Avro).
pub async fn decode(codec: &Codec, input: Input, bytes: &[u8]) -> Result<Fact, CodecError> {
    Ok(match input {
        Input::CampaignCreated => {
            let e: CampaignCreated = codec.decode(bytes).await?;
            let patch = CampaignPatch {
                created: Some((e.occurred_at, e.title)),
                ..CampaignPatch::default()
            };
            campaign(e.store_id, e.campaign_id, patch)
        }
        Input::CampaignScheduled => {
            let e: CampaignScheduled = codec.decode(bytes).await?;
            let patch = CampaignPatch {
                scheduled: Some(Schedule {
                    occurred_at: e.occurred_at,
                    send_at: e.send_at,
                    throttle_per_minute: e.throttle_per_minute,
                }),
                ..CampaignPatch::default()
            };
            campaign(e.store_id, e.campaign_id, patch)
        }
        Input::CampaignCancelled => {
            let e: CampaignCancelled = codec.decode(bytes).await?;
            let patch = CampaignPatch {
                cancelled_at: Some(e.occurred_at),
                ..CampaignPatch::default()
            };
            campaign(e.store_id, e.campaign_id, patch)
        }
        Input::CampaignLaunched => {
            let e: CampaignLaunched = codec.decode(bytes).await?;
            let patch = CampaignPatch {
                launched_at: Some(e.occurred_at),
                ..CampaignPatch::default()
            };
            campaign(e.store_id, e.campaign_id, patch)
        }
        Input::SubscriptionCreated => {
            let e: SubscriptionCreated = codec.decode(bytes).await?;
            Fact::Subscriber(SubscriberChange {
                store_id: e.store_id,
                subscriber_id: e.subscriber_id,
                change: Change::Subscribed,
                occurred_at: e.occurred_at,
            })
        }
        Input::SubscriptionExpired => {
            let e: SubscriptionExpired = codec.decode(bytes).await?;
            Fact::Subscriber(SubscriberChange {
                store_id: e.store_id,
                subscriber_id: e.subscriber_id,
                change: Change::Expired,
                occurred_at: e.occurred_at,
            })
        }
        Input::NotificationDispatched => {
            let e: NotificationDispatched = codec.decode(bytes).await?;
            Fact::Notification(NotificationOutcome {
                store_id: e.store_id,
                campaign_id: e.campaign_id,
                notification_id: e.notification_id,
                outcome: Outcome::Dispatched,
                occurred_at: e.occurred_at,
            })
        }
        Input::NotificationFailed => {
            let e: NotificationFailed = codec.decode(bytes).await?;
            Fact::Notification(NotificationOutcome {
                store_id: e.store_id,
                campaign_id: e.campaign_id,
                notification_id: e.notification_id,
                outcome: Outcome::of_failure(e.kind),
                occurred_at: e.occurred_at,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushflow_runtime::codec::InMemoryResolver;
    use std::sync::Arc;

    #[test]
    fn topics_map_to_inputs_with_or_without_a_prefix() {
        for i in Input::ALL {
            assert_eq!(Input::for_topic(i.topic()), Some(i));
            assert_eq!(Input::for_topic(&format!("t-1.{}", i.topic())), Some(i));
        }
        assert_eq!(Input::for_topic("notification.delivered"), None);
        assert_eq!(Input::for_topic("xnotification.failed"), None);
        assert_eq!(Input::for_topic("notification.failed.dlq"), None);
    }

    #[test]
    fn patches_merge_in_any_order_to_the_same_row() {
        let sched = |at, send, th| CampaignPatch {
            scheduled: Some(Schedule {
                occurred_at: at,
                send_at: send,
                throttle_per_minute: th,
            }),
            ..Default::default()
        };
        let patches = [
            CampaignPatch {
                created: Some((20, "b".into())),
                ..Default::default()
            },
            CampaignPatch {
                created: Some((20, "a".into())),
                ..Default::default()
            },
            CampaignPatch {
                created: Some((30, "0".into())),
                ..Default::default()
            },
            sched(5, 100, None),
            sched(7, 50, Some(10)),
            sched(7, 50, None),
            CampaignPatch {
                cancelled_at: Some(9),
                launched_at: Some(12),
                ..Default::default()
            },
            CampaignPatch {
                launched_at: Some(11),
                ..Default::default()
            },
        ];
        let want = CampaignPatch {
            created: Some((20, "a".into())),
            scheduled: Some(Schedule {
                occurred_at: 7,
                send_at: 50,
                throttle_per_minute: Some(10),
            }),
            cancelled_at: Some(9),
            launched_at: Some(11),
        };
        // Every rotation and its reverse, each patch also merged twice.
        for r in 0..patches.len() {
            for reverse in [false, true] {
                let mut order: Vec<_> = patches.iter().cycle().skip(r).take(8).collect();
                if reverse {
                    order.reverse();
                }
                let mut row = CampaignPatch::default();
                for p in order.iter().chain(order.iter()) {
                    row.merge((*p).clone());
                }
                assert_eq!(row, want, "rotation {r}, reversed {reverse}");
            }
        }
    }

    #[tokio::test]
    async fn decodes_each_input_and_refuses_another_topic_s_record() {
        use pushflow_schemas::new_event_id as id;
        let codec = Codec::new(Arc::new(InMemoryResolver::new()));
        let (s, c) = (|| "s".to_string(), || "c".to_string());
        let failed = |kind| NotificationFailed {
            event_id: id(),
            occurred_at: 6,
            store_id: s(),
            notification_id: "n".into(),
            campaign_id: c(),
            subscriber_id: "u".into(),
            error: "410 Gone".into(),
            kind,
            retryable: false,
            status_code: Some(410),
        };
        let gone = codec.encode(&failed(FailureKind::Gone)).await.unwrap();
        let cases = vec![
            (
                Input::CampaignCreated,
                codec
                    .encode(&CampaignCreated {
                        event_id: id(),
                        occurred_at: 1,
                        store_id: s(),
                        campaign_id: c(),
                        title: "Sale".into(),
                        body: "b".into(),
                        url: "https://x.invalid/".into(),
                        icon: None,
                        ttl_seconds: 60,
                        urgency: Default::default(),
                    })
                    .await
                    .unwrap(),
                campaign(
                    s(),
                    c(),
                    CampaignPatch {
                        created: Some((1, "Sale".into())),
                        ..Default::default()
                    },
                ),
            ),
            (
                Input::CampaignScheduled,
                codec
                    .encode(&CampaignScheduled {
                        event_id: id(),
                        occurred_at: 2,
                        store_id: s(),
                        campaign_id: c(),
                        send_at: 100,
                        throttle_per_minute: Some(60),
                    })
                    .await
                    .unwrap(),
                campaign(
                    s(),
                    c(),
                    CampaignPatch {
                        scheduled: Some(Schedule {
                            occurred_at: 2,
                            send_at: 100,
                            throttle_per_minute: Some(60),
                        }),
                        ..Default::default()
                    },
                ),
            ),
            (
                Input::CampaignCancelled,
                codec
                    .encode(&CampaignCancelled {
                        event_id: id(),
                        occurred_at: 3,
                        store_id: s(),
                        campaign_id: c(),
                    })
                    .await
                    .unwrap(),
                campaign(
                    s(),
                    c(),
                    CampaignPatch {
                        cancelled_at: Some(3),
                        ..Default::default()
                    },
                ),
            ),
            (
                Input::CampaignLaunched,
                codec
                    .encode(&CampaignLaunched {
                        event_id: id(),
                        occurred_at: 4,
                        store_id: s(),
                        campaign_id: c(),
                        throttle_per_minute: None,
                    })
                    .await
                    .unwrap(),
                campaign(
                    s(),
                    c(),
                    CampaignPatch {
                        launched_at: Some(4),
                        ..Default::default()
                    },
                ),
            ),
            (
                Input::SubscriptionExpired,
                codec
                    .encode(&SubscriptionExpired {
                        event_id: id(),
                        occurred_at: 5,
                        store_id: s(),
                        subscriber_id: "u".into(),
                        reason: "410".into(),
                    })
                    .await
                    .unwrap(),
                Fact::Subscriber(SubscriberChange {
                    store_id: s(),
                    subscriber_id: "u".into(),
                    change: Change::Expired,
                    occurred_at: 5,
                }),
            ),
            (
                Input::NotificationFailed,
                gone.clone(),
                Fact::Notification(NotificationOutcome {
                    store_id: s(),
                    campaign_id: c(),
                    notification_id: "n".into(),
                    outcome: Outcome::Expired,
                    occurred_at: 6,
                }),
            ),
            (
                Input::NotificationFailed,
                codec
                    .encode(&failed(FailureKind::RetriesExhausted))
                    .await
                    .unwrap(),
                Fact::Notification(NotificationOutcome {
                    store_id: s(),
                    campaign_id: c(),
                    notification_id: "n".into(),
                    outcome: Outcome::Failed,
                    occurred_at: 6,
                }),
            ),
        ];
        for (input, bytes, want) in cases {
            let fact = decode(&codec, input, &bytes).await.unwrap();
            assert_eq!(fact, want, "{input:?}");
            assert!(fact.check().is_ok());
        }
        // The same bytes read as campaign.scheduled: refused, not misread.
        assert!(decode(&codec, Input::CampaignScheduled, &gone)
            .await
            .is_err());
        assert!(decode(&codec, Input::NotificationFailed, b"{\"json\":1}")
            .await
            .is_err());
        let empty = Fact::Subscriber(SubscriberChange {
            store_id: s(),
            subscriber_id: String::new(),
            change: Change::Expired,
            occurred_at: 0,
        });
        assert!(empty.check().unwrap_err().starts_with("subscriber_id"));
    }
}
