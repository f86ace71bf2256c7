//! What both of dispatch's consumer loops share: connections, topic names,
//! deterministic ids, and publishing outcome events.

use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::{DeadLetters, Producer};
use pushflow_runtime::token::PingKeys;
use pushflow_runtime::RuntimeError;
use pushflow_schemas::{
    Event, FailureKind, NotificationDispatched, NotificationFailed, SubscriptionExpired,
};
use std::sync::Arc;
use uuid::Uuid;

use crate::batch::BatchCodec;
use crate::config::Checked;
use crate::outcomes::OutcomeRow;
use crate::sender::Sender;
use crate::store::Store;
use crate::DispatchError;

/// The topics dispatch reads and writes (the catalogue's names by
/// default; tests use prefixed names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Input: campaign content.
    pub campaign_created: String,
    /// Input: launches.
    pub campaign_launched: String,
    /// Input: the subscription view.
    pub subscription_created: String,
    /// Input and output: expired subscriptions.
    pub subscription_expired: String,
    /// Input and output: the internal batches.
    pub batches: String,
    /// Output.
    pub dispatched: String,
    /// Output.
    pub failed: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics::prefixed("")
    }
}

impl Topics {
    /// Every name with `prefix` in front (tests isolate themselves so).
    pub fn prefixed(prefix: &str) -> Topics {
        use pushflow_schemas::catalogue as c;
        Topics {
            campaign_created: c::CAMPAIGN_CREATED.prefixed(prefix),
            campaign_launched: c::CAMPAIGN_LAUNCHED.prefixed(prefix),
            subscription_created: c::SUBSCRIPTION_CREATED.prefixed(prefix),
            subscription_expired: c::SUBSCRIPTION_EXPIRED.prefixed(prefix),
            batches: c::DISPATCH_BATCHES.prefixed(prefix),
            dispatched: c::NOTIFICATION_DISPATCHED.prefixed(prefix),
            failed: c::NOTIFICATION_FAILED.prefixed(prefix),
        }
    }

    /// What the view loop reads.
    pub fn view_inputs(&self) -> Vec<String> {
        vec![
            self.campaign_created.clone(),
            self.campaign_launched.clone(),
            self.subscription_created.clone(),
            self.subscription_expired.clone(),
        ]
    }
}

const NS: Uuid = Uuid::from_u128(0x5d1f_7c1e_8a0b_4e3a_9c55_7075_7368_666c);

/// The notification id of (store, campaign, subscriber): UUIDv5, so a
/// replayed batch finds the outcome it already decided; the store is part
/// of it because campaign and subscriber ids are unique only per store.
pub fn notification_id(store_id: &str, campaign_id: &str, subscriber_id: &str) -> String {
    Uuid::new_v5(
        &NS,
        format!("{store_id}\n{campaign_id}\n{subscriber_id}").as_bytes(),
    )
    .to_string()
}

/// A deterministic event id derived from `parts`.
pub fn derived_id(parts: &[&str]) -> String {
    Uuid::new_v5(&NS, parts.join("\n").as_bytes()).to_string()
}

/// Everything the loops share; cheap to clone.
#[derive(Clone)]
pub struct Shared {
    /// Component name (metrics label).
    pub name: String,
    /// Postgres.
    pub store: Store,
    /// Catalogue events.
    pub codec: Arc<Codec>,
    /// Batch records.
    pub batches: Arc<BatchCodec>,
    /// Producer (dead letters).
    pub producer: Producer,
    /// Transactional producer of the view loop: a launch's batch records
    /// commit with the view's consumed offsets.
    pub view_txn: Producer,
    /// Transactional producer of the batch loop: a batch's outcome events
    /// commit with the batch's consumed offset.
    pub batch_txn: Producer,
    /// Transactional producer of the paced loop (throttled batches).
    pub paced_txn: Producer,
    /// Kafka bootstrap servers (committed-offset look-ups).
    pub brokers: String,
    /// librdkafka pass-through.
    pub kafka: std::collections::BTreeMap<String, String>,
    /// Consumer group of the view loop.
    pub view_group: String,
    /// Consumer group of the batch loop.
    pub batch_group: String,
    /// Consumer group of the paced loop (`<group>-paced`).
    pub paced_group: String,
    /// Dead letters.
    pub dlq: DeadLetters,
    /// HTTP sender.
    pub sender: Sender,
    /// Ping-token keys.
    pub ping: PingKeys,
    /// Topic names.
    pub topics: Arc<Topics>,
    /// Settings.
    pub cfg: Arc<Checked>,
}

/// Where a record sits in its topic: what a plan or an outcome row keeps of
/// the record that caused it, to tell later whether its transaction
/// committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

impl Shared {
    /// Which of `causes` are committed in consumer group `group`: the group's
    /// committed offset is past them, which a transactional loop only
    /// commits together with what they caused (see
    /// [`pushflow_runtime::kafka::admin::committed_offsets`]).
    pub async fn committed(
        &self,
        group: &str,
        causes: &[Cause],
    ) -> Result<Vec<bool>, DispatchError> {
        let mut parts: Vec<(String, i32)> = causes
            .iter()
            .map(|c| (c.topic.clone(), c.partition))
            .collect();
        parts.sort();
        parts.dedup();
        let (brokers, kafka, group) = (self.brokers.clone(), self.kafka.clone(), group.to_string());
        let offsets = tokio::task::spawn_blocking(move || {
            pushflow_runtime::kafka::admin::committed_offsets(&brokers, &kafka, &group, &parts)
        })
        .await
        .map_err(|e| {
            DispatchError::Runtime(RuntimeError::Component {
                component: self.name.clone(),
                message: format!("committed-offset look-up panicked: {e}"),
                retryable: true,
            })
        })??;
        Ok(causes
            .iter()
            .map(|c| {
                offsets
                    .get(&(c.topic.clone(), c.partition))
                    .is_some_and(|next| *next > c.offset)
            })
            .collect())
    }

    /// Produces the events of decided outcomes (dispatched or failed, and
    /// `subscription.expired` for push services' 404/410) in the open
    /// transaction of `txn` (the batch loop's or the paced loop's) and
    /// waits for every acknowledgement. Event ids are deterministic, so a
    /// replay after an aborted transaction sends the same events, never
    /// different ones.
    pub async fn publish(&self, txn: &Producer, rows: &[OutcomeRow]) -> Result<(), DispatchError> {
        let mut sends = Vec::with_capacity(rows.len() + 8);
        for r in rows {
            let (topic, key, bytes) = if r.kind == "dispatched" {
                let e = NotificationDispatched {
                    event_id: derived_id(&[&r.notification_id, "dispatched"]),
                    occurred_at: r.occurred_at,
                    store_id: r.store_id.clone(),
                    notification_id: r.notification_id.clone(),
                    campaign_id: r.campaign_id.clone(),
                    subscriber_id: r.subscriber_id.clone(),
                };
                (
                    &self.topics.dispatched,
                    r.notification_id.clone(),
                    self.codec.encode(&e).await?,
                )
            } else {
                let kind: FailureKind =
                    serde_json::from_value(serde_json::Value::String(r.kind.clone()))
                        .unwrap_or_default();
                let e = NotificationFailed {
                    event_id: derived_id(&[&r.notification_id, "failed"]),
                    occurred_at: r.occurred_at,
                    store_id: r.store_id.clone(),
                    notification_id: r.notification_id.clone(),
                    campaign_id: r.campaign_id.clone(),
                    subscriber_id: r.subscriber_id.clone(),
                    error: r.error.clone(),
                    kind,
                    retryable: r.retryable,
                    status_code: r.status_code,
                };
                if kind == FailureKind::Gone && r.status_code.is_some() {
                    let x = SubscriptionExpired {
                        event_id: derived_id(&[&r.notification_id, "expired"]),
                        occurred_at: r.occurred_at,
                        store_id: r.store_id.clone(),
                        subscriber_id: r.subscriber_id.clone(),
                        reason: format!(
                            "push service answered {}",
                            r.status_code.unwrap_or_default()
                        ),
                    };
                    let b = self.codec.encode(&x).await?;
                    sends.push((&self.topics.subscription_expired, x.key().to_string(), b));
                }
                (
                    &self.topics.failed,
                    r.notification_id.clone(),
                    self.codec.encode(&e).await?,
                )
            };
            sends.push((topic, key, bytes));
        }
        let n = sends.len() as u64;
        let futs = sends
            .iter()
            .map(|(t, k, b)| txn.send(t, Some(k.as_bytes()), b, &[]));
        for r in futures::future::join_all(futs).await {
            r?;
        }
        metrics::counter!("pushflow_records_out_total", "component" => self.name.clone())
            .increment(n);
        Ok(())
    }
}
