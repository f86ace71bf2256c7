//! The batch loop: sends each batch record's pushes and records every
//! outcome exactly once.
//!
//! Per batch: notifications already decided (a row in `dispatch.outcomes`)
//! are not sent again — their events are re-published if the crash came
//! before the broker acknowledged them; the rest are encrypted and sent
//! concurrently (bounded per origin). As results come in, in chunks, each
//! outcome is written to Postgres, its events are produced and acknowledged,
//! and the row is marked published. The batch's offset is committed after
//! its last chunk. A kill -9 can therefore only repeat sends whose outcome
//! was not yet written.

use async_trait::async_trait;
use futures::StreamExt;
use pushflow_runtime::kafka::{Durable, Handler, Record};
use pushflow_runtime::token::PingClaims;
use pushflow_runtime::RuntimeError;
use pushflow_schemas::{now_millis, CampaignCreated, FailureKind};
use serde::Serialize;
use std::time::Duration;

use crate::batch::DispatchBatch;
use crate::outcomes::OutcomeRow;
use crate::sender::{Outcome, Push};
use crate::shared::{notification_id, Shared};
use crate::store::Subscription;
use crate::DispatchError;

/// Outcomes written per chunk (or after [`CHUNK_WAIT`]).
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

/// The batch loop's handler.
pub struct BatchHandler {
    /// Shared state.
    pub shared: Shared,
}

fn row(c: &CampaignCreated, sub: &str, nid: &str, outcome: &Outcome) -> OutcomeRow {
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
    }
}

/// The RFC 8030 `Topic` of a campaign: 32 base64url characters of its hash.
pub fn topic_of(campaign_id: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, campaign_id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())[..32].to_string()
}

impl BatchHandler {
    fn push_for(
        &self,
        c: &CampaignCreated,
        sub: &Subscription,
        nid: &str,
    ) -> Result<Push, DispatchError> {
        let s = &self.shared;
        let exp = now_millis() / 1000 + s.cfg.ping_token_ttl.as_secs() as i64;
        let ping_token = s.ping.mint(&PingClaims {
            notification_id: nid.to_string(),
            campaign_id: c.campaign_id.clone(),
            store_id: c.store_id.clone(),
            subscriber_id: sub.subscriber_id.clone(),
            exp,
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
            topic: Some(topic_of(&c.campaign_id)),
        })
    }

    async fn flush(&self, rows: &mut Vec<OutcomeRow>) -> Result<(), DispatchError> {
        if rows.is_empty() {
            return Ok(());
        }
        let s = &self.shared;
        s.store.record(rows).await?;
        s.publish(rows).await?;
        let ids: Vec<String> = rows.iter().map(|r| r.notification_id.clone()).collect();
        s.store.published(&ids).await?;
        for r in rows.iter() {
            metrics::counter!("pushflow_dispatch_notifications_total", "outcome" => r.kind.clone())
                .increment(1);
            if r.kind != "dispatched" {
                metrics::counter!("pushflow_records_failed_total", "component" => s.name.clone())
                    .increment(1);
            }
        }
        rows.clear();
        Ok(())
    }

    /// Sends one batch; returns how many notifications it decided now.
    pub async fn dispatch(&self, b: &DispatchBatch) -> Result<usize, DispatchError> {
        let s = &self.shared;
        let Some(c) = s.store.campaign(&b.campaign_id).await? else {
            return Err(DispatchError::BadRecord(format!(
                "batch {} names campaign {:?}, whose campaign.created dispatch never saw",
                b.batch_key, b.campaign_id
            )));
        };
        let pairs: Vec<(String, String)> = b
            .subscriber_ids
            .iter()
            .map(|sub| (sub.clone(), notification_id(&c.campaign_id, sub)))
            .collect();
        let nids: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
        let decided = s.store.outcomes(&nids).await?;
        let unpublished: Vec<OutcomeRow> =
            decided.values().filter(|r| !r.published).cloned().collect();
        if !unpublished.is_empty() {
            tracing::info!(component = %s.name, batch = %b.batch_key, n = unpublished.len(), "re-publishing outcomes decided before a crash");
            let mut rows = unpublished;
            self.flush(&mut rows).await?;
        }
        let todo: Vec<&(String, String)> = pairs
            .iter()
            .filter(|(_, n)| !decided.contains_key(n))
            .collect();
        if todo.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = todo.iter().map(|p| p.0.clone()).collect();
        let subs = s.store.subscriptions(&ids).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<OutcomeRow>(CHUNK * 2);
        let mut rows = Vec::new();
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
                rows.push(row(&c, sub, nid, &o));
                continue;
            }
            let push = self.push_for(&c, &subs[sub], nid)?;
            let (sender, tx, c2, sub, nid) = (
                s.sender.clone(),
                tx.clone(),
                c.clone(),
                sub.clone(),
                nid.clone(),
            );
            tokio::spawn(async move {
                let outcome = sender.send(&push).await;
                let _ = tx.send(row(&c2, &sub, &nid, &outcome)).await;
            });
        }
        drop(tx);
        let n = todo.len();
        let started = std::time::Instant::now();
        loop {
            match tokio::time::timeout(CHUNK_WAIT, rx.recv()).await {
                Ok(Some(r)) => {
                    rows.push(r);
                    if rows.len() >= CHUNK {
                        self.flush(&mut rows).await?;
                    }
                }
                Ok(None) => break,
                Err(_) => self.flush(&mut rows).await?,
            }
        }
        self.flush(&mut rows).await?;
        tracing::info!(component = %s.name, batch = %b.batch_key, decided = n, skipped = pairs.len() - n, elapsed_ms = started.elapsed().as_millis() as u64, "batch dispatched");
        Ok(n)
    }
}

#[async_trait]
impl Handler for BatchHandler {
    async fn process(&mut self, batch: Vec<Record>) -> Result<Durable, RuntimeError> {
        let s = self.shared.clone();
        let mut decoded = Vec::new();
        for (i, r) in batch.iter().enumerate() {
            match s
                .batches
                .decode(r.payload.as_deref().unwrap_or_default())
                .await
            {
                Ok(b) => decoded.push((i, b)),
                Err(e) if e.is_retryable() => return Err(e.into_runtime(&s.name)),
                Err(e) => s.dlq.send(r, &e.to_string()).await?,
            }
        }
        let this = &*self;
        let results: Vec<(usize, Result<usize, DispatchError>)> = futures::stream::iter(decoded)
            .map(move |(i, b)| async move { (i, this.dispatch(&b).await) })
            .buffer_unordered(s.cfg.raw.parallel_batches)
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
