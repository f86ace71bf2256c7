//! The batch loop: sends each batch record's pushes and publishes every
//! outcome exactly once.
//!
//! Each handed batch is one Kafka transaction
//! ([`pushflow_runtime::kafka::run_consumer_transactional`]): the outcome
//! events of its batch records and their consumed offsets commit together,
//! so a crash never leaves an outcome event on a topic twice. Per batch
//! record: notifications already decided (a row in `dispatch.outcomes`) are
//! not sent again; their events are published again only if the
//! transaction that published them never committed (the group's committed
//! offset is not past the batch record the row names). The rest are
//! encrypted and sent concurrently (bounded per origin); as results come
//! in, in chunks, each outcome is written to Postgres, naming this batch
//! record, and its events are produced into the open transaction. A kill -9
//! can therefore only repeat push sends whose outcome was not yet written.
//!
//! Two loops run this handler, each in its [`Lane`]: the batch loop sends
//! unthrottled batches at once (and skips throttled ones), the paced loop
//! (group `<group>-paced`) sends throttled batches, each push in the send
//! slot it claimed ([`crate::throttle`]); so a throttled campaign's pacing
//! never holds up the batches of the others.

use async_trait::async_trait;
use futures::StreamExt;
use pushflow_runtime::kafka::{Durable, Handler, Record};
use pushflow_runtime::token::PingClaims;
use pushflow_runtime::RuntimeError;
use pushflow_schemas::{now_millis, CampaignCreated, FailureKind};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::DispatchBatch;
use crate::outcomes::OutcomeRow;
use crate::sender::{Outcome, Push, Sender};
use crate::shared::{notification_id, Cause, Shared};
use crate::store::{CampaignKey, Subscription};
use crate::throttle::Slots;
use crate::DispatchError;
use pushflow_runtime::kafka::Producer;

/// Outcomes written per chunk, or [`CHUNK_WAIT`] after a chunk's first row.
const CHUNK: usize = 128;
const CHUNK_WAIT: Duration = Duration::from_millis(50);

/// The decrypted push payload the service worker reads.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// Notification id.
    pub notification_id: &'a str,
    /// Campaign id.
    pub campaign_id: &'a str,
    /// Title.
    pub title: &'a str,
    /// Body.
    pub body: &'a str,
    /// Icon URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<&'a str>,
    /// Click URL.
    pub url: &'a str,
    /// Signed token for the delivered/clicked pings.
    pub ping_token: String,
}

/// Which batch records a [`BatchHandler`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The batch loop: unthrottled batches, all at once; throttled ones
    /// are skipped (the paced loop has them).
    Unthrottled,
    /// The paced loop: throttled batches only, each push in its claimed
    /// send slot.
    Throttled,
}

/// Throttled batch records the paced loop handles at once (each takes up
/// to [`crate::throttle::SLOT`], mostly waiting between sends).
pub const PACED_PARALLEL: usize = 16;

/// The handler of the batch loop or of the paced loop.
pub struct BatchHandler {
    /// Shared state.
    pub shared: Shared,
    /// Which records it sends.
    pub lane: Lane,
    /// The loop's transactional producer (outcome events go into its open
    /// transaction).
    pub txn: Producer,
    /// The loop's consumer group (whose committed offsets tell whether a
    /// batch record's transaction committed).
    pub group: String,
    /// Batch records sent at once.
    pub parallel: usize,
}

/// The batch record being dispatched: (partition, offset) in the batches
/// topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAt {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

fn row(c: &CampaignCreated, sub: &str, nid: &str, outcome: &Outcome, at: BatchAt) -> OutcomeRow {
    let (kind, retryable, status, error) = match outcome {
        Outcome::Accepted { status } => (
            "dispatched".to_string(),
            false,
            Some(*status as i32),
            String::new(),
        ),
        Outcome::Failed {
            kind,
            retryable,
            status,
            error,
        } => (
            serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "other".into()),
            *retryable,
            status.map(i32::from),
            error.clone(),
        ),
    };
    OutcomeRow {
        notification_id: nid.to_string(),
        campaign_id: c.campaign_id.clone(),
        subscriber_id: sub.to_string(),
        store_id: c.store_id.clone(),
        kind,
        retryable,
        status_code: status,
        error,
        occurred_at: now_millis(),
        published: false,
        batch_partition: at.partition,
        batch_offset: at.offset,
    }
}

/// The RFC 8030 `Topic` of a campaign: 32 base64url characters of its hash.
pub fn topic_of(campaign_id: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, campaign_id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())[..32].to_string()
}

/// Sends one push in a task of its own; its outcome row goes to `tx`.
fn send_one(
    sender: Sender,
    c: Arc<CampaignCreated>,
    push: Push,
    sub: String,
    nid: String,
    at: BatchAt,
    tx: tokio::sync::mpsc::Sender<OutcomeRow>,
) {
    tokio::spawn(async move {
        let outcome = sender.send(&push).await;
        let _ = tx.send(row(&c, &sub, &nid, &outcome, at)).await;
    });
}

impl BatchHandler {
    /// The batch loop's handler.
    pub fn unthrottled(shared: Shared) -> BatchHandler {
        BatchHandler {
            lane: Lane::Unthrottled,
            txn: shared.batch_txn.clone(),
            group: shared.batch_group.clone(),
            parallel: shared.cfg.raw.parallel_batches,
            shared,
        }
    }

    /// The paced loop's handler.
    pub fn throttled(shared: Shared) -> BatchHandler {
        BatchHandler {
            lane: Lane::Throttled,
            txn: shared.paced_txn.clone(),
            group: shared.paced_group.clone(),
            parallel: PACED_PARALLEL,
            shared,
        }
    }

    fn push_for(
        &self,
        c: &CampaignCreated,
        sub: &Subscription,
        nid: &str,
        topic: &str,
    ) -> Result<Push, DispatchError> {
        let s = &self.shared;
        let issued = now_millis() / 1000;
        let ping_token = s.ping.mint(&PingClaims {
            notification_id: nid.to_string(),
            campaign_id: c.campaign_id.clone(),
            store_id: c.store_id.clone(),
            subscriber_id: sub.subscriber_id.clone(),
            exp: issued + s.cfg.ping_token_ttl.as_secs() as i64,
            // The earliest the notification can be shown: ingest accepts
            // the service worker's event time (`at`) from here on.
            iat: Some(issued),
        });
        let payload = Payload {
            notification_id: nid,
            campaign_id: &c.campaign_id,
            title: &c.title,
            body: &c.body,
            icon: c.icon.as_deref(),
            url: &c.url,
            ping_token,
        };
        Ok(Push {
            endpoint: sub.endpoint.clone(),
            p256dh: sub.p256dh.clone(),
            auth: sub.auth.clone(),
            plaintext: serde_json::to_vec(&payload)
                .map_err(|e| DispatchError::Crypto(e.to_string()))?,
            ttl: c.ttl_seconds,
            urgency: c.urgency.header_value(),
            topic: Some(topic.to_string()),
        })
    }

    async fn flush(&self, rows: &mut Vec<OutcomeRow>) -> Result<(), DispatchError> {
        if rows.is_empty() {
            return Ok(());
        }
        let s = &self.shared;
        s.store.record(rows).await?;
        s.publish(&self.txn, rows).await?;
        // Counted per kind, not per row (a counter look-up by labels each).
        let mut kinds: HashMap<&str, u64> = HashMap::new();
        for r in rows.iter() {
            *kinds.entry(r.kind.as_str()).or_default() += 1;
        }
        for (kind, n) in kinds {
            metrics::counter!("pushflow_dispatch_notifications_total", "outcome" => kind.to_string())
                .increment(n);
            if kind != "dispatched" {
                metrics::counter!("pushflow_records_failed_total", "component" => s.name.clone())
                    .increment(n);
            }
        }
        rows.clear();
        Ok(())
    }

    /// Starts the i-th push at `wait + i × spacing` from now, in a task that
    /// stops when the batch is given up (its outcome channel closed).
    fn pace(
        &self,
        sends: Vec<(Push, String, String)>,
        slots: Slots,
        c: &Arc<CampaignCreated>,
        at: BatchAt,
        tx: tokio::sync::mpsc::Sender<OutcomeRow>,
        batch: &str,
    ) {
        let s = &self.shared;
        if slots.wait > crate::throttle::SLOT {
            tracing::warn!(component = %s.name, batch, wait_ms = slots.wait.as_millis() as u64,
                "throttled batch waits long for its slots (a batch handled again after a crash?)");
        }
        tracing::info!(component = %s.name, batch, sends = sends.len(), wait_ms = slots.wait.as_millis() as u64,
            spacing_ms = slots.spacing.as_secs_f64() * 1000.0, "throttled batch: sending paced");
        let (sender, c) = (s.sender.clone(), c.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + slots.wait;
            for (i, (push, sub, nid)) in sends.into_iter().enumerate() {
                tokio::time::sleep_until(start + slots.spacing * i as u32).await;
                if tx.is_closed() {
                    return;
                }
                send_one(sender.clone(), c.clone(), push, sub, nid, at, tx.clone());
            }
        });
    }

    /// Outcomes among `decided` whose events no committed transaction
    /// holds: decided by this very record in an aborted transaction, or by
    /// another record (a duplicate batch) whose transaction never committed.
    async fn uncommitted(
        &self,
        decided: &HashMap<String, OutcomeRow>,
        at: BatchAt,
    ) -> Result<Vec<OutcomeRow>, DispatchError> {
        let s = &self.shared;
        let here =
            |r: &OutcomeRow| r.batch_partition == at.partition && r.batch_offset == at.offset;
        let elsewhere: Vec<&OutcomeRow> = decided
            .values()
            .filter(|r| r.batch_offset >= 0 && !here(r))
            .collect();
        let causes: Vec<Cause> = elsewhere
            .iter()
            .map(|r| Cause {
                topic: s.topics.batches.clone(),
                partition: r.batch_partition,
                offset: r.batch_offset,
            })
            .collect();
        let committed = if causes.is_empty() {
            Vec::new()
        } else {
            s.committed(&self.group, &causes).await?
        };
        let mut out: Vec<OutcomeRow> = decided
            .values()
            .filter(|r| here(r) || (r.batch_offset < 0 && !r.published))
            .cloned()
            .collect();
        out.extend(
            elsewhere
                .into_iter()
                .zip(committed)
                .filter(|(_, c)| !c)
                .map(|(r, _)| r.clone()),
        );
        Ok(out)
    }

    /// Sends one batch record's pushes; returns how many notifications it
    /// decided now.
    pub async fn dispatch(&self, b: &DispatchBatch, at: BatchAt) -> Result<usize, DispatchError> {
        let s = &self.shared;
        let key = CampaignKey {
            store_id: b.store_id.clone(),
            campaign_id: b.campaign_id.clone(),
        };
        // Throttled: the batch's send slots are claimed below; a batch that
        // sends nothing still claims (none), so the next one is released.
        let pace = b
            .throttle_per_minute
            .filter(|_| self.lane == Lane::Throttled);
        let Some(c) = s.store.campaign(&b.store_id, &b.campaign_id).await? else {
            if let Some(n) = pace {
                s.store.claim(&key, b.batch_no, 0, n).await?;
            }
            return Err(DispatchError::BadRecord(format!(
                "batch {} names campaign {:?}, whose campaign.created dispatch never saw",
                b.batch_key, b.campaign_id
            )));
        };
        let pairs: Vec<(String, String)> = b
            .subscriber_ids
            .iter()
            .map(|sub| {
                let nid = notification_id(&c.store_id, &c.campaign_id, sub);
                (sub.clone(), nid)
            })
            .collect();
        let nids: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
        let decided = s.store.outcomes(&nids).await?;
        let mut again = self.uncommitted(&decided, at).await?;
        if !again.is_empty() {
            tracing::info!(component = %s.name, batch = %b.batch_key, n = again.len(), "publishing outcomes whose transaction never committed");
            let ids: Vec<String> = again.iter().map(|r| r.notification_id.clone()).collect();
            s.store.rebind(&ids, at.partition, at.offset).await?;
            self.flush(&mut again).await?;
        }
        let todo: Vec<&(String, String)> = pairs
            .iter()
            .filter(|(_, n)| !decided.contains_key(n))
            .collect();
        if todo.is_empty() {
            if let Some(n) = pace {
                s.store.claim(&key, b.batch_no, 0, n).await?;
            }
            return Ok(0);
        }
        let ids: Vec<String> = todo.iter().map(|p| p.0.clone()).collect();
        let subs = s.store.subscriptions(&b.store_id, &ids).await?;
        let c = Arc::new(c);
        let topic = topic_of(&c.campaign_id);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<OutcomeRow>(CHUNK * 2);
        let mut rows = Vec::new();
        let mut sends = Vec::with_capacity(todo.len());
        for (sub, nid) in todo.iter().map(|p| (&p.0, &p.1)) {
            let early = match subs.get(sub) {
                None => Some(Outcome::Failed {
                    kind: FailureKind::InvalidSubscription,
                    retryable: false,
                    status: None,
                    error: format!("subscription {sub} is unknown to dispatch's view"),
                }),
                Some(x) if x.expired => Some(Outcome::Failed {
                    kind: FailureKind::Gone,
                    retryable: false,
                    status: None,
                    error: "subscription expired after the campaign was planned; not sent".into(),
                }),
                Some(_) => None,
            };
            if let Some(o) = early {
                rows.push(row(&c, sub, nid, &o, at));
                continue;
            }
            sends.push((
                self.push_for(&c, &subs[sub], nid, &topic)?,
                sub.clone(),
                nid.clone(),
            ));
        }
        match pace {
            None => {
                for (push, sub, nid) in sends {
                    send_one(s.sender.clone(), c.clone(), push, sub, nid, at, tx.clone());
                }
            }
            Some(n) => {
                let Some(slots) = s.store.claim(&key, b.batch_no, sends.len(), n).await? else {
                    return Err(DispatchError::BadRecord(format!(
                        "throttled batch {} of a campaign dispatch has no throttle state for (it planned no throttled launch of it)",
                        b.batch_key
                    )));
                };
                self.pace(sends, slots, &c, at, tx.clone(), &b.batch_key);
            }
        }
        drop(tx);
        let n = todo.len();
        let started = std::time::Instant::now();
        // One timer for the batch, armed by a chunk's first row (not one
        // per row received): a chunk is written when full or CHUNK_WAIT
        // after its first row.
        let wait = tokio::time::sleep(CHUNK_WAIT);
        tokio::pin!(wait);
        let mut armed = !rows.is_empty();
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        rows.push(r);
                        if rows.len() >= CHUNK {
                            self.flush(&mut rows).await?;
                            armed = false;
                        } else if !armed {
                            wait.as_mut().reset(tokio::time::Instant::now() + CHUNK_WAIT);
                            armed = true;
                        }
                    }
                    None => break,
                },
                () = &mut wait, if armed => {
                    self.flush(&mut rows).await?;
                    armed = false;
                }
            }
        }
        self.flush(&mut rows).await?;
        tracing::info!(component = %s.name, batch = %b.batch_key, decided = n, skipped = pairs.len() - n, elapsed_ms = started.elapsed().as_millis() as u64, "batch dispatched");
        Ok(n)
    }
}

/// Keeps the first record of each batch (by `batch_key`) among those
/// handed together: a repeated record of a batch (a releaser that handed
/// over, a planner that ran again) handled at the same time as the first
/// would find the first's outcomes not yet committed and send the rest
/// again. Handled once here, the repeat's offset commits with the first's
/// outcomes in the same transaction; a repeat handed later finds them
/// committed ([`BatchHandler::dispatch`]).
fn once_per_batch(
    decoded: Vec<(usize, DispatchBatch, BatchAt)>,
    component: &str,
) -> Vec<(usize, DispatchBatch, BatchAt)> {
    let mut first: HashMap<String, BatchAt> = HashMap::new();
    let mut out = Vec::with_capacity(decoded.len());
    for (i, b, at) in decoded {
        match first.get(&b.batch_key) {
            Some(seen) => {
                tracing::warn!(component, batch = %b.batch_key, first_partition = seen.partition,
                    first_offset = seen.offset, partition = at.partition, offset = at.offset,
                    "a batch record repeats one handed with it; sending it once");
                metrics::counter!("pushflow_dispatch_repeated_batches_total", "component" => component.to_string())
                    .increment(1);
            }
            None => {
                first.insert(b.batch_key.clone(), at);
                out.push((i, b, at));
            }
        }
    }
    out
}

#[async_trait]
impl Handler for BatchHandler {
    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        let s = self.shared.clone();
        let mut decoded = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            match s
                .batches
                .decode(r.payload.as_deref().unwrap_or_default())
                .await
            {
                // The other loop's record: skipped here.
                Ok(b) if b.throttle_per_minute.is_some() != (self.lane == Lane::Throttled) => {}
                Ok(b) => decoded.push((
                    i,
                    b,
                    BatchAt {
                        partition: r.partition,
                        offset: r.offset,
                    },
                )),
                Err(e) if e.is_retryable() => return Err(e.into_runtime(&s.name)),
                // Undecodable: the batch loop dead-letters it (once).
                Err(_) if self.lane == Lane::Throttled => {}
                Err(e) => s.dlq.send(r, &e.to_string()).await?,
            }
        }
        let decoded = once_per_batch(decoded, &s.name);
        let this = &*self;
        let results: Vec<(usize, Result<usize, DispatchError>)> = futures::stream::iter(decoded)
            .map(move |(i, b, at)| async move { (i, this.dispatch(&b, at).await) })
            .buffer_unordered(self.parallel)
            .collect()
            .await;
        for (i, res) in results {
            let r = &batch[i];
            match res {
                Ok(_) => {}
                Err(e @ DispatchError::BadRecord(_)) => s.dlq.send(r, &e.to_string()).await?,
                Err(e) => return Err(e.into_runtime(&s.name)),
            }
        }
        Ok(Durable::All)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(key: &str) -> DispatchBatch {
        DispatchBatch {
            event_id: format!("{key}-id"),
            occurred_at: 0,
            store_id: "s".into(),
            campaign_id: "c".into(),
            batch_no: 7,
            batch_key: key.into(),
            subscriber_ids: vec!["a".into(), "b".into()],
            throttle_per_minute: Some(240),
            due_at: None,
        }
    }

    #[test]
    fn a_repeated_batch_handed_with_the_first_is_sent_once() {
        let at = |offset| BatchAt {
            partition: 1,
            offset,
        };
        let kept = once_per_batch(
            vec![
                (0, batch("s:c:7"), at(10)),
                (1, batch("s:c:8"), at(11)),
                (2, batch("s:c:7"), at(12)),
            ],
            "dispatch",
        );
        let kept: Vec<(usize, i64)> = kept.iter().map(|(i, _, at)| (*i, at.offset)).collect();
        assert_eq!(kept, vec![(0, 10), (1, 11)]);
    }
}
