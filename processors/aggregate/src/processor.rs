//! The `aggregate` component: the runtime's consumer loop around the
//! tally and one Postgres transaction per batch (guarantee: see the crate
//! doc).

use async_trait::async_trait;
use pushflow_runtime::kafka::{
    run_consumer, DeadLetters, Durable, Handler, PartitionKey, Position, Record, StopAt,
};
use pushflow_runtime::postgres::Reconnecting;
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::sync::Arc;

use crate::config::Validated;
use crate::pipeline::{Batch, Lanes, Settled, Target};
use crate::tally::{decode, Core, PartitionPosition, PingKind, Staged};
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
    /// Duplicates (in memory or in `seen`).
    pub duplicates: u64,
    /// (ping, window) pairs past their grace.
    pub late: u64,
    /// Records sent to a dead-letter topic.
    pub dead_letters: u64,
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
}

impl Processor {
    async fn load(&mut self, parts: &[PartitionKey]) -> Result<Vec<Position>, RuntimeError> {
        self.settle().await?;
        let schema = &self.opts.settings.schema;
        let client = self
            .client
            .get()
            .await
            .map_err(|e| AggregateError::from(e).into_runtime(&self.opts.name))?;
        let stored = store::load_positions(client, schema, parts)
            .await
            .map_err(|e| e.into_runtime("aggregate"))?;
        let mut seek = Vec::new();
        for p in parts {
            let at = stored.get(p).copied().unwrap_or(PartitionPosition {
                next_offset: self.opts.start.next_offset(p),
                watermark: i64::MIN,
            });
            self.core.assign(p.clone(), at);
            self.stop.committed(p, at.next_offset);
            seek.push(p.position(at.next_offset));
        }
        self.stop.check();
        Ok(seek)
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
        let (c, b) = (settled.committed, settled.batch);
        let name = self.opts.name.clone();
        metrics::counter!("pushflow_records_out_total", "component" => name.clone())
            .increment(c.counted);
        metrics::counter!("pushflow_aggregate_duplicates_total", "component" => name.clone())
            .increment(c.duplicates + b.staged.duplicates);
        metrics::counter!("pushflow_aggregate_late_events_total", "component" => name.clone())
            .increment(c.late);
        metrics::histogram!("pushflow_aggregate_commit_seconds", "component" => name)
            .record(b.started.elapsed().as_secs_f64());
        self.summary.records += b.handled;
        self.summary.counted += c.counted;
        self.summary.duplicates += c.duplicates + b.staged.duplicates;
        self.summary.late += c.late;
        self.summary.dead_letters += b.dead;
        self.summary.first_batch.get_or_insert(b.started);
        self.summary.last_commit = Some(std::time::Instant::now());
        self.opts.advance(b.handled);
        tracing::debug!(component = %self.opts.name, records = b.handled, counted = c.counted, late = c.late, ms = b.started.elapsed().as_millis() as u64, "batch committed");
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
        self.load(parts).await
    }

    async fn revoked(&mut self, partitions: &[PartitionKey]) -> Result<(), RuntimeError> {
        self.settle().await?;
        for p in partitions {
            self.core.revoke(p);
        }
        Ok(())
    }

    async fn process(&mut self, batch: Vec<Record>) -> Result<Durable, RuntimeError> {
        let started = std::time::Instant::now();
        let missing = PartitionKey::unknown(&batch, |p| self.core.owns(p));
        if !missing.is_empty() {
            self.load(&missing).await?;
        }
        let mut staged = Staged::default();
        let mut dead = 0;
        for r in &batch {
            let Some(slot) = self
                .core
                .admit(&mut staged, &r.topic, r.partition, r.offset)
            else {
                continue;
            };
            let Some(bytes) = r.payload.as_deref() else {
                self.dlq.send(r, "record has no value: send an Avro notification event in the Confluent wire format").await?;
                dead += 1;
                continue;
            };
            match decode(&self.opts.codec, self.kind(&r.topic), bytes).await {
                Ok(ping) => self.core.stage(&mut staged, slot, r.offset, ping),
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => {
                    self.dlq.send(r, &e.to_string()).await?;
                    dead += 1;
                }
            }
        }
        let handled = batch.len() as u64 - staged.skipped;
        // Optimistic: the next batch is staged against this one; if this
        // one can never commit, the processor stops (see `pipeline`).
        self.core.apply(&staged);
        // Each lane's part waits only for room in that lane's queue.
        let mut counts = Some((handled, dead));
        for (lane, part) in staged.split(self.lanes.len()).into_iter().enumerate() {
            if part.parts.is_empty() {
                continue;
            }
            let (handled, dead) = counts.take().unwrap_or_default();
            let part = Batch {
                staged: part,
                handled,
                dead,
                started,
            };
            if let Err(e) = self.lanes.submit(lane, part).await {
                return Err(self.stopped(e));
            }
        }
        Ok(Durable::UpTo(self.settled()?))
    }

    async fn tick(&mut self) -> Result<Durable, RuntimeError> {
        let done = self.settled()?; // checks for the end as well
        Ok(if done.is_empty() {
            Durable::Nothing
        } else {
            Durable::UpTo(done)
        })
    }

    async fn close(&mut self) -> Result<Durable, RuntimeError> {
        Ok(Durable::UpTo(self.settle().await?))
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
        lanes: Lanes::start(
            &Target {
                database_url: opts.database_url.clone(),
                schema: opts.settings.schema.clone(),
                windows: Arc::new(opts.settings.windows.clone()),
                component: opts.name.clone(),
                shutdown: shutdown.clone(),
            },
            opts.settings.commit_connections,
        ),
        opts,
    };
    tracing::info!(component = %p.opts.name, schema = %p.opts.settings.schema, inputs = ?p.opts.inputs, "aggregate starting");
    run_consumer(&settings, &mut p, done).await?;
    Ok(p.summary)
}
