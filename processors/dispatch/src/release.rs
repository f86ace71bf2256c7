//! The releaser: puts each throttled campaign's next batch on the batches
//! topic when it is due (see [`crate::throttle`]), exactly once.
//!
//! Guarantee: each planned batch of a throttled launch is on
//! `dispatch.batches` once, never twice, never lost, across kill -9,
//! restarts and several instances. One instance releases at a time (a
//! Postgres advisory lock on a connection of its own); it writes through
//! an [`Outbox`]: a transactional producer with the fixed id
//! `<group>-releaser`, whose opening fences a zombie and aborts what it
//! left open. A round's records are one Kafka transaction; after its
//! commit the batches are marked released in Postgres. Crash points:
//! before the commit, the transaction never commits and the batches are
//! still due, so they go out again (same record ids); after the commit but
//! before Postgres, the next active releaser reads `dispatch.batches` back
//! (`read_committed`, from the positions it stored, up to the high
//! watermark taken after the fencing) before releasing anything, and marks
//! the throttled batches it finds released. Positions are checkpointed to
//! the high watermark after that and about once a minute (everything
//! before them is known to Postgres), so a restart reads little.

use pushflow_runtime::kafka::outbox::{self, Absent, Outbox, Outgoing, Tail};
use pushflow_runtime::postgres::{pg, PgError, PgFailure};
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::time::{Duration, Instant};

use crate::batch::DispatchBatch;
use crate::shared::{derived_id, Shared};
use crate::store::CampaignKey;
use crate::DispatchError;

/// The advisory lock of the active releaser.
const LOCK: i64 = 0x7075_7368_7265_6c73;

/// How often the read-back positions move up to the high watermark.
const CHECKPOINT: Duration = Duration::from_secs(60);

/// Runs releaser sessions until shutdown, starting again after a backoff
/// when one fails for a reason retrying can fix.
pub async fn run(shared: Shared, shutdown: CancellationToken) -> Result<(), RuntimeError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        match session(&shared, &shutdown).await {
            Ok(()) => return Ok(()),
            Err(_) if shutdown.is_cancelled() => return Ok(()),
            Err(e) if e.is_retryable() => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                tracing::warn!(component = %shared.name, error = %e, backoff_ms = backoff.as_millis() as u64, "releaser session ended; starting again");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.into_runtime(&shared.name)),
        }
    }
}

async fn session(s: &Shared, shutdown: &CancellationToken) -> Result<(), DispatchError> {
    let lock = s.store.dedicated().await?;
    loop {
        let got: bool = lock
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK])
            .await
            .map_err(pg("try the releaser's lock"))?
            .get(0);
        if got {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
    let outbox = Outbox::open(&s.brokers, &s.kafka, &format!("{}-releaser", s.view_group)).await?;
    recover(s, shutdown).await?;
    tracing::info!(component = %s.name, "releaser active: throttled batches are released from here");
    let mut checkpointed = Instant::now();
    loop {
        if lock.is_closed() {
            return Err(PgError::new("hold the releaser's lock", PgFailure::Closed).into());
        }
        let due = s.store.due_releases(100).await?;
        if !due.is_empty() {
            let mut records = Vec::with_capacity(due.len());
            for r in &due {
                let batch_key = format!("{}:{}:{}", r.key.store_id, r.key.campaign_id, r.batch_no);
                let b = DispatchBatch {
                    event_id: derived_id(&[&batch_key, "batch"]),
                    occurred_at: pushflow_schemas::now_millis(),
                    store_id: r.key.store_id.clone(),
                    campaign_id: r.key.campaign_id.clone(),
                    batch_no: r.batch_no,
                    batch_key: batch_key.clone(),
                    subscriber_ids: r.subscriber_ids.clone(),
                    throttle_per_minute: Some(r.per_minute),
                    due_at: Some(r.clock_us / 1000),
                };
                records.push(Outgoing {
                    topic: s.topics.batches.clone(),
                    key: batch_key,
                    payload: s.batches.encode(&b).await?,
                    headers: Vec::new(),
                });
            }
            // A failed commit may still have committed: the session ends,
            // and the next one reads the topic back first.
            outbox.emit(&records).await?;
            let released: Vec<(CampaignKey, i32)> =
                due.iter().map(|r| (r.key.clone(), r.batch_no)).collect();
            s.store.mark_released(&released).await?;
            for r in &due {
                tracing::debug!(component = %s.name, store_id = %r.key.store_id, campaign_id = %r.key.campaign_id, batch_no = r.batch_no, size = r.subscriber_ids.len(), "throttled batch released");
            }
            metrics::counter!("pushflow_dispatch_throttled_batches_released_total", "component" => s.name.clone())
                .increment(due.len() as u64);
            continue;
        }
        if checkpointed.elapsed() >= CHECKPOINT {
            let hw = outbox::high_watermarks(
                &s.brokers,
                &s.kafka,
                std::slice::from_ref(&s.topics.batches),
            )
            .await?;
            s.store.save_release_positions(&hw).await?;
            checkpointed = Instant::now();
        }
        // Until the next clock is due (released LEAD early), at most LEAD:
        // a campaign waiting for its previous batch to begin is looked at
        // again then.
        let lead = crate::throttle::LEAD;
        let wait = s
            .store
            .next_release_in()
            .await?
            .map(|d| d.saturating_sub(lead))
            .unwrap_or(lead)
            .clamp(Duration::from_millis(20), lead);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {},
        }
    }
}

/// Reads `dispatch.batches` back from the stored positions up to the high
/// watermark (taken now, after the outbox fenced any predecessor) and marks
/// every throttled batch found released; then stores the watermarks as the
/// new positions. With no positions stored, no releaser ever released
/// anything (positions are stored before the first release), so it starts
/// at the high watermark.
async fn recover(s: &Shared, shutdown: &CancellationToken) -> Result<(), DispatchError> {
    let started = Instant::now();
    let topic = s.topics.batches.clone();
    let stored = s.store.release_positions(&topic).await?;
    let absent = if stored.is_empty() {
        Absent::End
    } else {
        Absent::Beginning
    };
    let mut tail = Tail::open(
        &s.brokers,
        &s.kafka,
        std::slice::from_ref(&topic),
        &stored,
        absent,
    )
    .await?;
    let hw = tail.high_watermarks().await?;
    let (mut read, mut found) = (0usize, 0usize);
    let mut last_word = Instant::now();
    while !tail.reached(&hw) {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if last_word.elapsed() > Duration::from_secs(10) {
            tracing::warn!(component = %s.name, behind = ?tail.behind(&hw),
                "releaser still reading dispatch.batches back to its high watermark (an open transaction holds it back)");
            last_word = Instant::now();
        }
        let batch = tail.next_batch(1000, Duration::from_millis(200)).await;
        let mut released = Vec::new();
        for r in &batch {
            read += 1;
            let b = match s
                .batches
                .decode(r.payload.as_deref().unwrap_or_default())
                .await
            {
                Ok(b) => b,
                Err(e) if e.is_retryable() => return Err(e),
                // Not one of ours (the releaser writes valid batches): the
                // batch loops dead-letter it.
                Err(_) => continue,
            };
            if b.throttle_per_minute.is_some() {
                released.push((
                    CampaignKey {
                        store_id: b.store_id,
                        campaign_id: b.campaign_id,
                    },
                    b.batch_no,
                ));
            }
        }
        found += released.len();
        s.store.mark_released(&released).await?;
    }
    s.store.save_release_positions(&hw).await?;
    tracing::info!(component = %s.name, read, throttled_found = found, ms = started.elapsed().as_millis() as u64,
        "releaser read dispatch.batches back to its high watermark");
    Ok(())
}
