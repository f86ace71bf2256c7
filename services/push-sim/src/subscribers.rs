//! Test subscribers: P-256 key pairs and auth secrets the simulator keeps
//! (so it can decrypt), announced as `subscription.created` events.

use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::Producer;
use pushflow_schemas::{new_event_id, now_millis, Event, SubscriptionCreated};
use std::sync::Arc;

use crate::crypto::SubscriberKeys;
use crate::server::SimState;
use crate::SimError;

/// Where generated subscribers are published.
#[derive(Clone)]
pub struct Publisher {
    /// The producer.
    pub producer: Producer,
    /// Codec over the schema registry.
    pub codec: Arc<Codec>,
    /// Topic to write to (normally `subscription.created`).
    pub topic: String,
}

impl SimState {
    /// Generates `count` subscribers of `store` with endpoints on this
    /// simulator; returns their `subscription.created` events.
    pub fn add_subscribers(&self, store: &str, count: usize) -> Vec<SubscriptionCreated> {
        let mut out = Vec::with_capacity(count);
        let mut map = self.subscribers.write().unwrap();
        for _ in 0..count {
            let id = format!(
                "sub-{:016x}{:08x}",
                rand::random::<u64>(),
                rand::random::<u32>()
            );
            let keys = SubscriberKeys::generate();
            out.push(SubscriptionCreated {
                event_id: new_event_id(),
                occurred_at: now_millis(),
                store_id: store.to_string(),
                subscriber_id: id.clone(),
                endpoint: format!("{}/push/{id}", self.origin),
                p256dh: keys.p256dh(),
                auth: keys.auth_b64(),
            });
            map.insert(id, Arc::new(keys));
        }
        out
    }

    /// Publishes `events` with the configured publisher (acked by the
    /// broker); `Ok(false)` when none is configured.
    pub async fn publish(&self, events: &[SubscriptionCreated]) -> Result<bool, SimError> {
        let Some(p) = &self.publisher else {
            return Ok(false);
        };
        publish(p, events).await?;
        Ok(true)
    }
}

/// Publishes `events` to `p.topic`, all in flight at once, and waits for
/// every acknowledgement.
pub async fn publish(p: &Publisher, events: &[SubscriptionCreated]) -> Result<(), SimError> {
    let mut sends = Vec::with_capacity(events.len());
    for e in events {
        let bytes = p
            .codec
            .encode(e)
            .await
            .map_err(|e| SimError::Publish(e.to_string()))?;
        let producer = p.producer.clone();
        let topic = p.topic.clone();
        let key = e.key().to_string();
        sends.push(async move {
            producer
                .send(&topic, Some(key.as_bytes()), &bytes, &[])
                .await
        });
    }
    for r in futures::future::join_all(sends).await {
        r.map_err(|e| SimError::Publish(e.to_string()))?;
    }
    Ok(())
}
