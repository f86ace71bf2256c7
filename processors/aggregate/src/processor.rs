//! The `aggregate` component: the runtime's consumer loop around the
//! tally and one Postgres transaction per batch (guarantee: see the crate
//! doc).

use async_trait::async_trait;
use pushflow_runtime::kafka::{
    run_consumer, DeadLetters, Durable, Handler, PartitionKey, Position, Record, StopAt,
};
use pushflow_runtime::postgres::Reconnecting;
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::Validated;
use crate::pipeline::{Batch, Lanes, Outcome, Settled, Target};
use crate::tally::{decode, Core, PingKind, Staged};
use crate::{store, AggregateError};

pub use pushflow_runtime::kafka::StartAt;

/// Everything a run needs; the live component, replays and the bench
/// differ only in these (input topics: names end with
/// `notification.delivered` / `.clicked`).
pub type RunOptions = pushflow_runtime::kafka::RunOptions<Validated>;

/// Totals of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunSummary {
    /// Records handled (counted, duplicate, late or dead-lettered).
    pub records: u64,
    /// Pings counted for the first time.
    pub counted: u64,
    /// Duplicates (a repeat within the horizon).
    pub duplicates: u64,
    /// (ping, window) pairs past their grace.
    pub late: u64,
    /// Records sent to a dead-letter topic.
    pub dead_letters: u64,
    /// Partitions loaded again after a fenced commit.
    pub reloads: u64,
    /// Dedup keys held in memory at the end, over all partitions.
    pub keys_in_memory: usize,
    /// When the first committed batch started processing.
    pub first_batch: Option<std::time::Instant>,
    /// When the last batch committed.
    pub last_commit: Option<std::time::Instant>,
}

impl RunSummary {
    /// Seconds from the first batch to the last commit (the busy span,
    /// without connecting and joining the group).
    pub fn busy_secs(&self) -> f64 {
        match (self.first_batch, self.last_commit) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

struct Processor {
    opts: RunOptions,
    client: Reconnecting,
    core: Core,
    dlq: DeadLetters,
    summary: RunSummary,
    /// The commit lanes (`partition % lanes.len()`).
    lanes: Lanes,
    /// Ends a bounded run once its partitions are committed.
    stop: StopAt,
    /// Moves on after every reload: parts staged before it and queued
    /// behind a fenced one are refused by their lane.
    epoch: u64,
    /// Partitions whose commit was refused: their state is ahead of
    /// Postgres and is loaded again ([`Processor::reload_refused`]).
    refused: BTreeSet<PartitionKey>,
    /// Where the consumer must read again from ([`Handler::take_seeks`]).
    seeks: Vec<Position>,
}

impl Processor {
    /// Loads `parts` from Postgres (position and dedup state, one
    /// snapshot) once every lane committed what it was given; returns the
    /// positions to seek to.
    async fn load(&mut self, parts: &[PartitionKey]) -> Result<Vec<Position>, RuntimeError> {
        self.settle().await?;
        let schema = self.opts.settings.schema.clone();
        let horizon = self.core.horizon_ms();
        let started = std::time::Instant::now();
        let client = self
            .client
            .get()
            .await
            .map_err(|e| AggregateError::from(e).into_runtime(&self.opts.name))?;
        let mut loaded = store::load(client, &schema, parts, horizon)
            .await
            .map_err(|e| e.into_runtime("aggregate"))?;
        let mut seek = Vec::new();
        for p in parts {
            let l = loaded.remove(p).unwrap_or_default();
            let start = self.opts.start.next_offset(p);
            let next = l.stored.map_or(start, |s| s.next_offset);
            tracing::info!(component = %self.opts.name, topic = %p.topic, partition = p.partition, offset = next, keys = l.dedup.len(), rows = l.dedup.rows(), ms = started.elapsed().as_millis() as u64, "partition loaded");
            self.core.assign(p.clone(), l, start);
            self.stop.committed(p, next);
            seek.push(p.position(next));
        }
        self.stop.check();
        Ok(seek)
    }

    /// Loads again the partitions whose commit was refused (fenced), once
    /// every lane is done with what it was given, and queues seeks there;
    /// returns the positions committed meanwhile.
    async fn reload_refused(&mut self) -> Result<Vec<Position>, RuntimeError> {
        let mut done = Vec::new();
        while !self.refused.is_empty() {
            done.extend(self.settle().await?);
            self.epoch += 1;
            let parts: Vec<PartitionKey> = std::mem::take(&mut self.refused)
                .into_iter()
                .filter(|p| self.core.owns(p))
                .collect();
            tracing::warn!(component = %self.opts.name, partitions = ?parts, "reloading partitions after a fenced commit");
            for p in &parts {
                self.core.revoke(p);
            }
            self.summary.reloads += parts.len() as u64;
            let seeks = self.load(&parts).await?;
            self.seeks.extend(seeks);
        }
        Ok(done)
    }

    /// Waits until every lane committed what it was given; returns the
    /// positions committed.
    async fn settle(&mut self) -> Result<Vec<Position>, RuntimeError> {
        let settled = self.lanes.drain().await;
        self.record(settled)
    }

    /// The positions of the parts committed so far, without waiting.
    fn settled(&mut self) -> Result<Vec<Position>, RuntimeError> {
        let settled = self.lanes.ready();
        self.record(settled)
    }

    /// A batch could not be committed: the processor stops.
    fn stopped(&self, e: AggregateError) -> RuntimeError {
        tracing::error!(component = %self.opts.name, error = %e, "batch could not be committed; stopping (a restart resumes from the offsets in Postgres)");
        RuntimeError::Component {
            component: self.opts.name.clone(),
            message: e.to_string(),
            retryable: false,
        }
    }

    fn record(
        &mut self,
        settled: Result<Vec<Settled>, AggregateError>,
    ) -> Result<Vec<Position>, RuntimeError> {
        let settled = settled.map_err(|e| self.stopped(e))?;
        let mut positions = Vec::new();
        for s in settled {
            positions.extend(self.record_one(s));
        }
        self.stop.check();
        Ok(positions)
    }

    fn record_one(&mut self, settled: Settled) -> Vec<Position> {
        let b = settled.batch;
        let c = match settled.outcome {
            Outcome::Committed(c) => c,
            Outcome::Refused { .. } => {
                self.refused.extend(b.staged.parts.iter().cloned());
                return Vec::new();
            }
        };
        let name = self.opts.name.clone();
        let (handled, dead) = (b.staged.handled(), b.staged.dead());
        metrics::counter!("pushflow_records_out_total", "component" => name.clone())
            .increment(c.counted);
        metrics::counter!("pushflow_aggregate_duplicates_total", "component" => name.clone())
            .increment(b.staged.duplicates);
        metrics::counter!("pushflow_aggregate_late_events_total", "component" => name.clone())
            .increment(c.late);
        metrics::histogram!("pushflow_aggregate_commit_seconds", "component" => name)
            .record(b.started.elapsed().as_secs_f64());
        self.summary.records += handled;
        self.summary.counted += c.counted;
        self.summary.duplicates += b.staged.duplicates;
        self.summary.late += c.late;
        self.summary.dead_letters += dead;
        self.summary.first_batch.get_or_insert(b.started);
        self.summary.last_commit = Some(std::time::Instant::now());
        self.opts.advance(handled);
        tracing::debug!(component = %self.opts.name, records = handled, counted = c.counted, late = c.late, ms = b.started.elapsed().as_millis() as u64, "batch committed");
        let mut positions = Vec::new();
        for (part, at) in b.staged.parts.iter().zip(&b.staged.positions) {
            self.stop.committed(part, at.next_offset);
            positions.push(part.position(at.next_offset));
        }
        positions
    }

    fn kind(&self, topic: &str) -> PingKind {
        PingKind::for_topic(topic).unwrap_or(PingKind::Delivered)
    }
}

#[async_trait]
impl Handler for Processor {
    async fn assigned(&mut self, parts: &[PartitionKey]) -> Result<Vec<Position>, RuntimeError> {
        let mut seeks = self.load(parts).await?;
        self.reload_refused().await?;
        seeks.append(&mut self.seeks);
        Ok(seeks)
    }

    async fn revoked(&mut self, partitions: &[PartitionKey]) -> Result<(), RuntimeError> {
        self.settle().await?;
        for p in partitions {
            self.core.revoke(p);
            self.refused.remove(p);
        }
        self.seeks.retain(|s| {
            !partitions
                .iter()
                .any(|p| p.topic == s.topic && p.partition == s.partition)
        });
        Ok(())
    }

    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        let started = std::time::Instant::now();
        let missing = PartitionKey::unknown(batch, |p| self.core.owns(p));
        if !missing.is_empty() {
            self.load(&missing).await?;
        }
        let mut staged = Staged::default();
        for r in batch {
            let Some(slot) = self
                .core
                .admit(&mut staged, &r.topic, r.partition, r.offset)
            else {
                continue;
            };
            let Some(bytes) = r.payload.as_deref() else {
                self.dlq.send(r, "record has no value: send an Avro notification event in the Confluent wire format").await?;
                staged.dead_letter(slot);
                continue;
            };
            match decode(&self.opts.codec, self.kind(&r.topic), bytes).await {
                Ok(ping) => self
                    .core
                    .stage(&mut staged, slot, r.offset, r.timestamp_ms, ping),
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => {
                    self.dlq.send(r, &e.to_string()).await?;
                    staged.dead_letter(slot);
                }
            }
        }
        // Optimistic: the next batch is staged against this one; if this
        // one can never commit, the processor stops, and if it is fenced
        // its partitions are loaded again (see `pipeline`).
        self.core.apply(&mut staged);
        let flush = self
            .stop
            .all_staged(|p| self.core.partition(p).map(|s| s.next_offset));
        // Each lane's part waits only for room in that lane's queue.
        for (lane, part) in staged.split(self.lanes.len()).into_iter().enumerate() {
            if part.parts.is_empty() {
                continue;
            }
            let part = Batch {
                staged: part,
                started,
                epoch: self.epoch,
                flush,
            };
            if let Err(e) = self.lanes.submit(lane, part).await {
                return Err(self.stopped(e));
            }
        }
        let mut done = self.settled()?;
        done.extend(self.reload_refused().await?);
        Ok(Durable::UpTo(done))
    }

    async fn tick(&mut self) -> Result<Durable, RuntimeError> {
        let mut done = self.settled()?; // checks for the end as well
        done.extend(self.reload_refused().await?);
        Ok(if done.is_empty() {
            Durable::Nothing
        } else {
            Durable::UpTo(done)
        })
    }

    async fn close(&mut self) -> Result<Durable, RuntimeError> {
        Ok(Durable::UpTo(self.settle().await?))
    }

    fn take_seeks(&mut self) -> Vec<Position> {
        std::mem::take(&mut self.seeks)
    }
}

/// Runs the aggregate until `shutdown` (or `opts.stop_at`): connects to
/// Postgres, migrates, then consumes.
pub async fn run(
    mut opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, AggregateError> {
    let mut client = store::connect(&opts.database_url).await?;
    store::migrate(&mut client, &opts.settings.schema).await?;
    let mut settings = opts.consumer_settings(opts.settings.max_batch);
    settings
        .passthrough
        .entry("fetch.max.bytes".into())
        .or_insert_with(|| "104857600".into());
    let done = shutdown.child_token();
    let mut p = Processor {
        core: Core::new(
            opts.settings.windows.clone(),
            opts.settings.dedup_horizon_ms,
        ),
        dlq: opts.dead_letters()?,
        client: Reconnecting::new(opts.database_url.clone(), Some(client)),
        stop: StopAt::new(opts.stop_at.take(), done.clone()),
        summary: RunSummary::default(),
        epoch: 0,
        refused: BTreeSet::new(),
        seeks: Vec::new(),
        lanes: Lanes::start(
            &Target {
                database_url: opts.database_url.clone(),
                schema: opts.settings.schema.clone(),
                windows: Arc::new(opts.settings.windows.clone()),
                component: opts.name.clone(),
                shutdown: shutdown.clone(),
                merge: opts.settings.group_commit,
                commit_interval: opts.settings.commit_interval,
            },
            opts.settings.commit_connections,
        ),
        opts,
    };
    tracing::info!(component = %p.opts.name, schema = %p.opts.settings.schema, inputs = ?p.opts.inputs, "aggregate starting");
    run_consumer(&settings, &mut p, done).await?;
    p.summary.keys_in_memory = p.core.dedup_size().0;
    Ok(p.summary)
}
