//! The `analytics` consumer: the runtime's consumer loop around the core
//! ([`crate::tally`]) and one Postgres transaction per batch, committed
//! before the loop hears the batch is durable (guarantee: see the crate
//! doc).

use async_trait::async_trait;
use pushflow_runtime::kafka::{
    run_consumer, DeadLetters, Durable, Handler, PartitionKey, Position, Record, StopAt,
};
use pushflow_runtime::postgres::{OffsetsTable, Reconnecting};
use pushflow_runtime::{CancellationToken, RuntimeError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::Validated;
use crate::facts::{decode, Input};
use crate::store::{self, Committed};
use crate::tally::Staged;
use crate::AnalyticsError;

pub use pushflow_runtime::kafka::StartAt;

/// Everything a run needs; the live component and replays differ only in
/// these (input topics: each one of [`Input`], possibly prefixed).
pub type RunOptions = pushflow_runtime::kafka::RunOptions<Validated>;

/// Totals of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Records handled (counted, duplicate, campaign or dead-lettered).
    pub records: u64,
    /// Facts counted for the first time.
    pub counted: u64,
    /// Repeats (within a batch or already in `seen`).
    pub duplicates: u64,
    /// Campaign rows upserted (one per campaign per batch).
    pub campaign_upserts: u64,
    /// Records sent to a dead-letter topic.
    pub dead_letters: u64,
    /// Batches committed.
    pub batches: u64,
}

struct Processor {
    opts: RunOptions,
    inputs: HashMap<String, Input>,
    client: Reconnecting,
    dlq: DeadLetters,
    /// Next offsets committed to Postgres, per owned partition.
    committed: HashMap<PartitionKey, i64>,
    /// Ends a bounded run once its partitions are committed.
    stop: StopAt,
    shutdown: CancellationToken,
    summary: RunSummary,
}

impl Processor {
    /// Loads the stored positions of `parts` and takes them over; returns
    /// where the consumer must seek. Retries while Postgres is unreachable
    /// (a rebalance during an outage must not stop the component).
    async fn load(&mut self, parts: &[PartitionKey]) -> Result<Vec<Position>, RuntimeError> {
        let name = self.opts.name.clone();
        let schema = self.opts.settings.schema.clone();
        let mut backoff = Duration::from_millis(100);
        let stored = loop {
            let attempt = match self.client.get().await {
                Ok(client) => OffsetsTable::new(&schema)
                    .load_next(client, parts)
                    .await
                    .map_err(AnalyticsError::from),
                Err(e) => Err(e.into()),
            };
            match attempt {
                Ok(stored) => break stored,
                Err(e) if e.is_retryable() && !self.shutdown.is_cancelled() => {
                    tracing::warn!(component = %name, error = %e, backoff_ms = backoff.as_millis() as u64, "cannot load the stored offsets; retrying");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(e.into_runtime(&name)),
                        _ = tokio::time::sleep(backoff) => {},
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e.into_runtime(&name)),
            }
        };
        let mut seek = Vec::new();
        for p in parts {
            let next = match stored.get(p) {
                Some(n) => *n,
                None => self.opts.start.next_offset(p),
            };
            self.committed.insert(p.clone(), next);
            self.stop.committed(p, next);
            seek.push(p.position(next));
        }
        self.stop.check();
        Ok(seek)
    }

    /// Commits `staged`, retrying the same batch with backoff while the
    /// error is retryable (Postgres restarting, a deadlock, a lost
    /// connection) and the component is not shutting down.
    async fn commit(&mut self, staged: &Staged, records: u64) -> Result<Committed, RuntimeError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let schema = self.opts.settings.schema.clone();
            let windows = self.opts.settings.windows_ms.clone();
            let attempt = match self.client.get().await {
                Ok(c) => store::commit(c, &schema, &windows, staged).await,
                Err(e) => Err(e.into()),
            };
            let e = match attempt {
                Ok(c) => return Ok(c),
                Err(e) => e,
            };
            metrics::counter!("pushflow_records_failed_total", "component" => self.opts.name.clone())
                .increment(records);
            if !e.is_retryable() {
                tracing::error!(component = %self.opts.name, error = %e, "batch cannot be committed; stopping (a restart resumes from the offsets in Postgres)");
                return Err(e.into_runtime(&self.opts.name));
            }
            metrics::counter!("pushflow_batch_retries_total", "component" => self.opts.name.clone())
                .increment(1);
            tracing::warn!(component = %self.opts.name, error = %e, backoff_ms = backoff.as_millis() as u64, "batch transaction failed; retrying the same batch");
            tokio::select! {
                _ = self.shutdown.cancelled() => return Err(e.into_runtime(&self.opts.name)),
                _ = tokio::time::sleep(backoff) => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn dead_letter(&mut self, r: &Record, why: &str) -> Result<(), RuntimeError> {
        self.dlq.send(r, why).await?;
        self.summary.dead_letters += 1;
        Ok(())
    }
}

#[async_trait]
impl Handler for Processor {
    async fn assigned(&mut self, parts: &[PartitionKey]) -> Result<Vec<Position>, RuntimeError> {
        self.load(parts).await
    }

    async fn revoked(&mut self, partitions: &[PartitionKey]) -> Result<(), RuntimeError> {
        for p in partitions {
            self.committed.remove(p);
        }
        Ok(())
    }

    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        let started = Instant::now();
        let missing = PartitionKey::unknown(batch, |p| self.committed.contains_key(p));
        if !missing.is_empty() {
            self.load(&missing).await?;
        }
        let mut staged = Staged::default();
        let dead_before = self.summary.dead_letters;
        for r in batch {
            if !staged.admit(&self.committed, &PartitionKey::of(r), r.offset) {
                continue;
            }
            let Some(input) = self.inputs.get(&r.topic).copied() else {
                self.dead_letter(r, "not an input topic of analytics")
                    .await?;
                continue;
            };
            let Some(bytes) = r.payload.as_deref() else {
                let why = format!(
                    "record has no value: send an Avro {} event in the Confluent wire format",
                    input.topic()
                );
                self.dead_letter(r, &why).await?;
                continue;
            };
            match decode(&self.opts.codec, input, bytes).await {
                Ok(fact) => match fact.check() {
                    Ok(()) => staged.stage(fact),
                    Err(why) => self.dead_letter(r, &why).await?,
                },
                Err(e) if e.is_retryable() => return Err(e.into()),
                Err(e) => self.dead_letter(r, &e.to_string()).await?,
            }
        }
        let handled = batch.len() as u64 - staged.skipped;
        if handled == 0 {
            // Every record was below the stored offsets: nothing to commit.
            return Ok(Durable::Nothing);
        }
        let c = self.commit(&staged, handled).await?;
        let name = self.opts.name.clone();
        metrics::counter!("pushflow_records_out_total", "component" => name.clone())
            .increment(c.counted + c.campaigns);
        metrics::counter!("pushflow_analytics_duplicates_total", "component" => name.clone())
            .increment(c.duplicates + staged.duplicates);
        metrics::histogram!("pushflow_analytics_commit_seconds", "component" => name)
            .record(started.elapsed().as_secs_f64());
        self.summary.records += handled;
        self.summary.counted += c.counted;
        self.summary.duplicates += c.duplicates + staged.duplicates;
        self.summary.campaign_upserts += c.campaigns;
        self.summary.batches += 1;
        self.opts.advance(handled);
        tracing::debug!(component = %self.opts.name, records = handled, counted = c.counted,
            dead_letters = self.summary.dead_letters - dead_before,
            ms = started.elapsed().as_millis() as u64, "batch committed");
        let mut positions = Vec::new();
        for (part, next) in &staged.positions {
            let e = self.committed.entry(part.clone()).or_insert(*next);
            *e = (*e).max(*next);
            self.stop.committed(part, *next);
            positions.push(part.position(*next));
        }
        self.stop.check();
        Ok(Durable::UpTo(positions))
    }

    async fn tick(&mut self) -> Result<Durable, RuntimeError> {
        self.stop.check();
        Ok(Durable::Nothing)
    }
}

/// The [`Input`] of every topic of `inputs`, or which one is not an input.
pub fn resolve_inputs(inputs: &[String]) -> Result<HashMap<String, Input>, String> {
    inputs
        .iter()
        .map(|t| match Input::for_topic(t) {
            Some(i) => Ok((t.clone(), i)),
            None => Err(format!(
                "{t:?} is not an analytics input; list some of: {}",
                Input::ALL.map(Input::topic).join(", ")
            )),
        })
        .collect()
}

/// Runs analytics until `shutdown` (or `opts.stop_at`): connects to
/// Postgres, migrates, then consumes.
pub async fn run(
    mut opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, AnalyticsError> {
    let inputs = resolve_inputs(&opts.inputs).map_err(AnalyticsError::Invalid)?;
    let mut client = store::connect(&opts.database_url).await?;
    store::migrate(&mut client, &opts.settings.schema).await?;
    let settings = opts.consumer_settings(opts.settings.max_batch);
    let done = shutdown.child_token();
    let mut p = Processor {
        inputs,
        client: Reconnecting::new(opts.database_url.clone(), Some(client)),
        dlq: opts.dead_letters()?,
        committed: HashMap::new(),
        stop: StopAt::new(opts.stop_at.take(), done.clone()),
        shutdown,
        summary: RunSummary::default(),
        opts,
    };
    tracing::info!(component = %p.opts.name, schema = %p.opts.settings.schema, inputs = ?p.opts.inputs, "analytics starting");
    p.stop.check();
    run_consumer(&settings, &mut p, done).await?;
    Ok(p.summary)
}
