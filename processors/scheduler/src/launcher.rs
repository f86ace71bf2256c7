//! The active instance: reads the three campaign topics into Postgres and
//! fires due schedules (guarantee and crash points: see the crate doc).
//!
//! One loop, so applying an input and firing never race: it waits for the
//! next record or the earliest pending `send_at` (at most `max_sleep`),
//! applies what came in ONE Postgres transaction with the offsets, and when
//! something is due reads the inputs up to their high watermarks first,
//! then fires a round: due rows locked, their `campaign.launched` records
//! in one Kafka transaction of the [`Outbox`], and after its commit the
//! rows marked launched, in the same Postgres transaction that locked them.
//!
//! Test hook: `PUSHFLOW_FAILPOINT=scheduler.before_commit` (or
//! `scheduler.after_commit`) aborts the process at that point of the first
//! round, as a kill -9 there would; the crash tests use it.

use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::outbox::{Absent, Outbox, Outgoing, Part, Tail};
use pushflow_runtime::kafka::{DeadLetters, Record};
use pushflow_runtime::postgres::pg;
use pushflow_runtime::CancellationToken;
use pushflow_schemas::{now_millis, CampaignCancelled, CampaignLaunched, CampaignScheduled, Event};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

use crate::config::Validated;
use crate::schedule::{self, launch_event_id, CampaignKey, Change, Input, Schedule};
use crate::store;
use crate::SchedulerError;

/// Header on the scheduler's own `campaign.launched` records: the
/// `send_at` (ms, decimal) they were due at, so a launch read back after a
/// crash is known as the scheduler's, with its lateness.
pub const SEND_AT_HEADER: &str = "pushflow.scheduler.send_at";

/// Records applied per Postgres transaction.
const MAX_BATCH: usize = 1000;

/// The topics the scheduler reads and writes (the catalogue's names by
/// default; tests use prefixed names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Input.
    pub scheduled: String,
    /// Input.
    pub cancelled: String,
    /// Input (launches by anyone, and the scheduler's own read back) and
    /// output.
    pub launched: String,
}

impl Topics {
    /// Every name with `prefix` in front.
    pub fn prefixed(prefix: &str) -> Topics {
        Topics {
            scheduled: format!("{prefix}{}", CampaignScheduled::TOPIC),
            cancelled: format!("{prefix}{}", CampaignCancelled::TOPIC),
            launched: format!("{prefix}{}", CampaignLaunched::TOPIC),
        }
    }

    /// What the scheduler reads.
    pub fn inputs(&self) -> Vec<String> {
        vec![
            self.scheduled.clone(),
            self.cancelled.clone(),
            self.launched.clone(),
        ]
    }
}

impl Default for Topics {
    /// The catalogue's names, unprefixed.
    fn default() -> Self {
        Topics::prefixed("")
    }
}

/// Everything a session needs.
pub struct Options {
    /// Component name (metrics label, logs, dead-letter header).
    pub name: String,
    /// Checked settings.
    pub settings: Validated,
    /// Topic names.
    pub topics: Topics,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka pass-through.
    pub kafka: BTreeMap<String, String>,
    /// Postgres URL.
    pub database_url: String,
    /// Consumer group name: the outbox's transactional id is
    /// `<group>-launcher`, the same for every instance.
    pub group: String,
    /// Codec.
    pub codec: Arc<Codec>,
    /// Dead letters.
    pub dlq: DeadLetters,
}

fn failpoint(name: &str) {
    static SET: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let set = SET.get_or_init(|| std::env::var("PUSHFLOW_FAILPOINT").ok());
    if set.as_deref() == Some(name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting the process");
        std::process::abort();
    }
}

/// Why a record is refused (it goes to the dead-letter topic).
fn refuse(why: impl Into<String>) -> SchedulerError {
    SchedulerError::BadRecord(why.into())
}

fn check_ids(store_id: &str, campaign_id: &str) -> Result<CampaignKey, SchedulerError> {
    if store_id.is_empty() || campaign_id.is_empty() {
        return Err(refuse("store_id and campaign_id must not be empty"));
    }
    Ok(CampaignKey {
        store_id: store_id.to_string(),
        campaign_id: campaign_id.to_string(),
    })
}

/// Runs sessions until shutdown: waits to become the active instance,
/// then works; a session that fails for a reason retrying can fix starts
/// again after a backoff (the lock is released with its connection).
pub async fn run(
    opts: &Options,
    shutdown: CancellationToken,
    health: Option<&pushflow_runtime::http::Health>,
) -> Result<(), SchedulerError> {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        match session(opts, &shutdown, health).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_retryable() && !shutdown.is_cancelled() => {
                metrics::gauge!("pushflow_scheduler_active", "component" => opts.name.clone())
                    .set(0.0);
                if let Some(h) = health {
                    h.failing(&opts.name, e.to_string());
                }
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                tracing::warn!(component = %opts.name, error = %e, backoff_ms = backoff.as_millis() as u64, "scheduler session ended; starting again");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(backoff) => {},
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) if shutdown.is_cancelled() => {
                tracing::info!(component = %opts.name, error = %e, "scheduler stopped during shutdown");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

async fn session(
    opts: &Options,
    shutdown: &CancellationToken,
    health: Option<&pushflow_runtime::http::Health>,
) -> Result<(), SchedulerError> {
    let schema = &opts.settings.schema;
    let mut client = store::connect(&opts.database_url).await?;
    store::migrate(&mut client, schema).await?;
    if let Some(h) = health {
        h.ok(&opts.name);
    }
    let mut said = false;
    while !store::try_lead(&client, schema).await? {
        if !said {
            tracing::info!(component = %opts.name, "another scheduler instance is active; standing by");
            said = true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
    let outbox = Outbox::open(
        &opts.brokers,
        &opts.kafka,
        &format!("{}-launcher", opts.group),
    )
    .await?;
    let from = store::load_offsets(&client, schema).await?;
    let tail = Tail::open(
        &opts.brokers,
        &opts.kafka,
        &opts.topics.inputs(),
        &from,
        Absent::Beginning,
    )
    .await?;
    metrics::gauge!("pushflow_scheduler_active", "component" => opts.name.clone()).set(1.0);
    let mut active = Active {
        opts,
        client,
        outbox,
        tail,
    };
    active.recover(shutdown).await?;
    if shutdown.is_cancelled() {
        return Ok(());
    }
    active.work(shutdown).await
}

struct Active<'a> {
    opts: &'a Options,
    client: Client,
    outbox: Outbox,
    tail: Tail,
}

/// What applying one batch did.
struct Applied {
    changes: Vec<(CampaignKey, Change, Schedule)>,
    dead: usize,
}

impl Active<'_> {
    fn name(&self) -> &str {
        &self.opts.name
    }

    /// Before firing anything: reads all three topics up to the high
    /// watermarks taken now (after the outbox fenced any predecessor), so
    /// every launch ever committed, and every schedule and cancel
    /// acknowledged before this start, is in Postgres. No timeout: firing
    /// without it could launch twice; only another producer's open
    /// transaction holds it back, until that producer's transaction
    /// timeout at most.
    async fn recover(&mut self, shutdown: &CancellationToken) -> Result<(), SchedulerError> {
        let started = Instant::now();
        let hw = self.tail.high_watermarks().await?;
        self.catch_up(&hw, None, shutdown).await?;
        tracing::info!(component = %self.name(), ms = started.elapsed().as_millis() as u64,
            partitions = hw.len(), "recovered: campaign topics read up to their high watermarks; firing due schedules");
        Ok(())
    }

    /// Reads and applies until every partition reached `targets`, or
    /// `deadline` passed (then returns false, after a warning), or shutdown.
    async fn catch_up(
        &mut self,
        targets: &HashMap<Part, i64>,
        deadline: Option<Instant>,
        shutdown: &CancellationToken,
    ) -> Result<bool, SchedulerError> {
        let mut last_word = Instant::now();
        loop {
            let behind = self.tail.behind(targets);
            if behind.is_empty() {
                return Ok(true);
            }
            let known = self.tail.partitions();
            if let Some((new, _, _)) = behind.iter().find(|(p, _, _)| !known.contains(p)) {
                // A partition added since the session began: a new session
                // reads it (from the log start) along with the others.
                return Err(SchedulerError::Runtime(
                    pushflow_runtime::RuntimeError::Component {
                        component: self.opts.name.clone(),
                        message: format!("partition {new:?} was added to a campaign topic; starting a new session to read it"),
                        retryable: true,
                    },
                ));
            }
            if shutdown.is_cancelled() {
                return Ok(false);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                tracing::warn!(component = %self.name(), behind = ?behind,
                    "inputs not read up to their high watermarks in time (another producer's transaction is open?): firing anyway; a cancel behind it may come too late");
                return Ok(false);
            }
            if last_word.elapsed() > Duration::from_secs(10) {
                tracing::warn!(component = %self.name(), behind = ?behind,
                    "still reading the campaign topics up to their high watermarks (another producer's open transaction holds them back)");
                last_word = Instant::now();
            }
            let batch = self
                .tail
                .next_batch(MAX_BATCH, Duration::from_millis(200))
                .await;
            if !batch.is_empty() {
                self.apply(batch).await?;
            }
        }
    }

    /// The steady state: wait for input or the next `send_at`, apply, fire.
    async fn work(&mut self, shutdown: &CancellationToken) -> Result<(), SchedulerError> {
        let s = &self.opts.settings;
        loop {
            let (next, pending) = store::next_due(&self.client, &s.schema).await?;
            metrics::gauge!("pushflow_scheduler_pending", "component" => self.opts.name.clone())
                .set(pending as f64);
            let now = now_millis();
            if next.is_some_and(|d| d <= now) {
                let hw = self.tail.high_watermarks().await?;
                self.catch_up(&hw, Some(Instant::now() + s.catch_up_timeout), shutdown)
                    .await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                self.fire().await?;
                continue;
            }
            let wait = match next {
                Some(d) => Duration::from_millis((d - now).max(1) as u64).min(s.max_sleep),
                None => s.max_sleep,
            };
            let batch = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                b = self.tail.next_batch(MAX_BATCH, wait) => b,
            };
            if !batch.is_empty() {
                self.apply(batch).await?;
            }
        }
    }

    async fn decode(&self, r: &Record) -> Result<(CampaignKey, Input), SchedulerError> {
        let t = &self.opts.topics;
        let codec = &self.opts.codec;
        let Some(bytes) = r.payload.as_deref() else {
            return Err(refuse(
                "record has no value: send an Avro event in the Confluent wire format",
            ));
        };
        if r.topic == t.scheduled {
            let e: CampaignScheduled = codec.decode(bytes).await?;
            let key = check_ids(&e.store_id, &e.campaign_id)?;
            if e.throttle_per_minute.is_some_and(|n| n < 1) {
                return Err(refuse(format!(
                    "throttle_per_minute {:?}: must be at least 1, or null for no throttle",
                    e.throttle_per_minute
                )));
            }
            Ok((
                key,
                Input::Scheduled {
                    event_id: e.event_id,
                    occurred_at: e.occurred_at,
                    send_at: e.send_at,
                    throttle_per_minute: e.throttle_per_minute,
                },
            ))
        } else if r.topic == t.cancelled {
            let e: CampaignCancelled = codec.decode(bytes).await?;
            let key = check_ids(&e.store_id, &e.campaign_id)?;
            Ok((
                key,
                Input::Cancelled {
                    event_id: e.event_id,
                    occurred_at: e.occurred_at,
                },
            ))
        } else {
            let e: CampaignLaunched = codec.decode(bytes).await?;
            let key = check_ids(&e.store_id, &e.campaign_id)?;
            let scheduled_send_at = r
                .headers
                .iter()
                .find(|(k, _)| k == SEND_AT_HEADER)
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok());
            Ok((
                key,
                Input::Launched {
                    event_id: e.event_id,
                    occurred_at: e.occurred_at,
                    scheduled_send_at,
                },
            ))
        }
    }

    /// Applies `batch` in ONE Postgres transaction with its offsets; bad
    /// records go to their dead-letter topic first (at least once).
    async fn apply(&mut self, batch: Vec<Record>) -> Result<(), SchedulerError> {
        let started = Instant::now();
        let mut offsets: HashMap<Part, i64> = HashMap::new();
        let mut inputs = Vec::with_capacity(batch.len());
        let mut dead = 0;
        for r in &batch {
            let e = offsets
                .entry((r.topic.clone(), r.partition))
                .or_insert(r.offset + 1);
            *e = (*e).max(r.offset + 1);
            match self.decode(r).await {
                Ok(x) => inputs.push(x),
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    self.opts.dlq.send(r, &e.to_string()).await?;
                    dead += 1;
                }
            }
        }
        let schema = self.opts.settings.schema.clone();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg("begin a batch"))?;
        let mut keys: Vec<CampaignKey> = inputs.iter().map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        let mut rows = if keys.is_empty() {
            HashMap::new()
        } else {
            store::lock_rows(&tx, &schema, &keys).await?
        };
        let mut changed: BTreeMap<CampaignKey, Schedule> = BTreeMap::new();
        let mut applied = Applied {
            changes: Vec::new(),
            dead,
        };
        for (key, input) in &inputs {
            let current = changed.remove(key).or_else(|| rows.remove(key));
            let (row, change) = schedule::apply(current, input);
            applied.changes.push((key.clone(), change, row.clone()));
            changed.insert(key.clone(), row);
        }
        let rows: Vec<(CampaignKey, Schedule)> = changed.into_iter().collect();
        store::save_rows(&tx, &schema, &rows).await?;
        store::save_offsets(&tx, &schema, &offsets).await?;
        tx.commit().await.map_err(pg("commit a batch"))?;
        self.report(&applied, batch.len(), started);
        Ok(())
    }

    fn report(&self, applied: &Applied, records: usize, started: Instant) {
        let name = self.opts.name.clone();
        metrics::counter!("pushflow_records_in_total", "component" => name.clone())
            .increment(records as u64);
        metrics::histogram!("pushflow_batch_duration_seconds", "component" => name.clone())
            .record(started.elapsed().as_secs_f64());
        if applied.dead > 0 {
            metrics::counter!("pushflow_records_failed_total", "component" => name.clone())
                .increment(applied.dead as u64);
        }
        for (key, change, row) in &applied.changes {
            metrics::counter!("pushflow_scheduler_changes_total", "component" => name.clone(), "change" => change.as_str())
                .increment(1);
            let (store_id, campaign_id) = (&key.store_id, &key.campaign_id);
            match change {
                Change::Scheduled | Change::Rescheduled | Change::ScheduledAgain => {
                    tracing::info!(component = %name, store_id, campaign_id, change = change.as_str(), send_at = row.send_at, throttle_per_minute = row.throttle_per_minute, "campaign scheduled")
                }
                Change::Cancelled => {
                    tracing::info!(component = %name, store_id, campaign_id, "scheduled campaign cancelled")
                }
                Change::CancelTooLate => {
                    tracing::warn!(component = %name, store_id, campaign_id, "campaign.cancelled came after the campaign was launched: too late, ignored")
                }
                Change::ScheduleAfterLaunch => {
                    tracing::warn!(component = %name, store_id, campaign_id, "campaign.scheduled for a campaign already launched: ignored")
                }
                Change::Launched => {
                    let l = row.launch.as_ref();
                    tracing::info!(component = %name, store_id, campaign_id,
                        by_scheduler = l.is_some_and(|l| l.by_scheduler),
                        event_id = l.map(|l| l.event_id.as_str()),
                        "campaign.launched read from the topic: marked launched (any schedule of it is moot)")
                }
                Change::Stale | Change::CancelIgnored | Change::AlreadyLaunched => {
                    tracing::debug!(component = %name, store_id, campaign_id, change = change.as_str(), "nothing changes")
                }
            }
        }
    }

    /// One round: the due rows (locked), their launches in one Kafka
    /// transaction, then the rows marked launched in the same Postgres
    /// transaction. Returns how many were launched.
    async fn fire(&mut self) -> Result<usize, SchedulerError> {
        let s = &self.opts.settings;
        let tx = self
            .client
            .transaction()
            .await
            .map_err(pg("begin a round"))?;
        let due = store::lock_due(&tx, &s.schema, now_millis(), s.max_launches as i64).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let fired_at = now_millis();
        let mut records = Vec::with_capacity(due.len());
        let mut fired = Vec::with_capacity(due.len());
        for d in due {
            let event = CampaignLaunched {
                event_id: launch_event_id(&d.key, &d.version),
                occurred_at: fired_at,
                store_id: d.key.store_id.clone(),
                campaign_id: d.key.campaign_id.clone(),
                throttle_per_minute: d.throttle_per_minute,
            };
            records.push(Outgoing {
                topic: self.opts.topics.launched.clone(),
                key: event.key().to_string(),
                payload: self.opts.codec.encode(&event).await?,
                headers: vec![(
                    SEND_AT_HEADER.to_string(),
                    d.send_at.to_string().into_bytes(),
                )],
            });
            fired.push((d, event.event_id));
        }
        self.outbox.send(&records).await?;
        failpoint("scheduler.before_commit");
        // A failed commit may still have committed: the session ends, and
        // the next one reads the topic back before firing again.
        self.outbox.commit().await?;
        failpoint("scheduler.after_commit");
        store::mark_fired(&tx, &s.schema, &fired, fired_at).await?;
        tx.commit().await.map_err(pg("commit a round"))?;
        let name = self.opts.name.clone();
        metrics::counter!("pushflow_records_out_total", "component" => name.clone())
            .increment(fired.len() as u64);
        metrics::counter!("pushflow_scheduler_launches_total", "component" => name.clone())
            .increment(fired.len() as u64);
        for (d, event_id) in &fired {
            let late_ms = fired_at - d.send_at;
            metrics::histogram!("pushflow_scheduler_launch_lateness_seconds", "component" => name.clone())
                .record(late_ms.max(0) as f64 / 1000.0);
            let (store_id, campaign_id) = (&d.key.store_id, &d.key.campaign_id);
            if late_ms > s.late_after.as_millis() as i64 {
                metrics::counter!("pushflow_scheduler_late_launches_total", "component" => name.clone())
                    .increment(1);
                tracing::warn!(component = %name, store_id, campaign_id, event_id, send_at = d.send_at, late_ms,
                    "campaign launched late (the scheduler was down or busy at send_at, or send_at was already past)");
            } else {
                tracing::info!(component = %name, store_id, campaign_id, event_id, late_ms, throttle_per_minute = d.throttle_per_minute, "campaign launched");
            }
        }
        Ok(fired.len())
    }
}
