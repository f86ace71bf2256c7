//! `pushflow replay analytics`: rebuilds every analytics table from the
//! Kafka log into a fresh schema with the same code as the live component,
//! then reports every row that differs from the live tables.
//!
//! Guarantee: the replay reads each input partition from `--from` up to its
//! last committed record as of the start (transaction markers and aborted
//! records after it are not waited for), with the same exactly-once commit
//! as the live component (an interrupted replay into the same `--into`
//! resumes); it never writes to the live schema. With `--from earliest`
//! every table is compared; with a later `--from` only the windows that
//! start at or after it and the store days that start at or after it
//! (campaign rows and totals then naturally differ and are not compared).
//! The comparison is meaningful once the live component has consumed up to
//! the same offsets; the report says by how many records it is behind or
//! ahead of the replay.

use indicatif::{ProgressBar, ProgressStyle};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::{admin, client_config};
use pushflow_runtime::CancellationToken;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Validated;
use crate::processor::{run, RunOptions, RunSummary, StartAt};
use crate::tally::Part;
use crate::{store, AnalyticsError};

/// What to replay.
pub struct ReplayOptions {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka pass-through.
    pub passthrough: BTreeMap<String, String>,
    /// Input topics.
    pub inputs: Vec<String>,
    /// Postgres URL (the live tables' database).
    pub database_url: String,
    /// The live component's settings (its `schema` is the one compared).
    pub settings: Validated,
    /// Start (Kafka record time, ms); `None`: the beginning of the log.
    pub from_ms: Option<i64>,
    /// Schema to build into.
    pub into: String,
    /// Decoder.
    pub codec: Arc<Codec>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// The outcome.
#[derive(Debug)]
pub struct ReplayReport {
    /// Schema built.
    pub schema: String,
    /// Schema compared with.
    pub live: String,
    /// Tables compared.
    pub compared: Vec<&'static str>,
    /// What the replay consumed and counted.
    pub summary: RunSummary,
    /// Rows that differ (at most 50 listed), empty when none.
    pub differences: Vec<String>,
    /// How many rows differ in all.
    pub difference_count: i64,
    /// Records the live component has consumed beyond the replay's end
    /// (positive) or not yet (negative), summed over partitions.
    pub live_lead: i64,
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.summary;
        writeln!(
            f,
            "replayed {} records into schema {}: {} counted, {} duplicates, {} campaign upserts, {} dead letters",
            s.records, self.schema, s.counted, s.duplicates, s.campaign_upserts, s.dead_letters
        )?;
        writeln!(
            f,
            "compared with schema {}: {}",
            self.live,
            self.compared.join(", ")
        )?;
        match self.live_lead {
            0 => {}
            n if n > 0 => writeln!(f, "note: the live component has consumed {n} records past the replay's end; rows they changed differ")?,
            n => writeln!(f, "note: the live component is {} records behind the replay's end; rows it has not counted yet differ", -n)?,
        }
        if self.difference_count == 0 {
            return writeln!(f, "no difference");
        }
        writeln!(f, "{} rows differ (live → replay):", self.difference_count)?;
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        if self.difference_count > self.differences.len() as i64 {
            writeln!(
                f,
                "  … and {} more",
                self.difference_count - self.differences.len() as i64
            )?;
        }
        Ok(())
    }
}

/// Parses `--from`: `earliest`, ms since the epoch, or RFC 3339.
pub fn parse_from(s: &str) -> Result<Option<i64>, AnalyticsError> {
    if s == "earliest" {
        return Ok(None);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| Some(d.timestamp_millis()))
        .map_err(|e| AnalyticsError::Invalid(format!("--from {s:?}: {e}; write `earliest`, ms since the epoch or an RFC 3339 time such as 2026-11-01T00:00:00Z")))
}

/// What to read of one partition: from `start` up to (not including) `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First offset to read.
    pub start: i64,
    /// One past the last committed record (`start` when there is none).
    pub end: i64,
}

/// The [`Range`] of every partition of `topics`: from the first record at
/// or after `from_ms` (or the log start) to the last committed record.
/// Blocking.
pub fn ranges(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    topics: &[String],
    from_ms: Option<i64>,
) -> Result<HashMap<Part, Range>, AnalyticsError> {
    // read_committed: the high watermark it is told is the last stable
    // offset, and it reads what the replay's consumer will read.
    let consumer: BaseConsumer = client_config(brokers, passthrough)
        .set("group.id", "pushflow-replay-offsets")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let timeout = Duration::from_secs(15);
    let mut logs: HashMap<Part, (i64, i64)> = HashMap::new();
    let mut starts: HashMap<Part, i64> = HashMap::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = admin::watermarks(&consumer, topic, p.id())?;
            logs.insert((topic.clone(), p.id()), (low, high));
            starts.insert((topic.clone(), p.id()), low);
            if let Some(ms) = from_ms {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(ms))?;
            }
        }
        if from_ms.is_some() && tpl.count() > 0 {
            for e in consumer.offsets_for_times(tpl, timeout)?.elements() {
                let key = (e.topic().to_string(), e.partition());
                let (low, high) = logs[&key];
                let start = match e.offset() {
                    Offset::Offset(o) => o.max(low),
                    _ => high,
                };
                starts.insert(key, start);
            }
        }
    }
    let ends = last_records(&consumer, &logs)?;
    Ok(logs
        .keys()
        .map(|p| {
            let start = starts[p];
            let end = ends.get(p).map_or(start, |e| (*e).max(start));
            (p.clone(), Range { start, end })
        })
        .collect())
}

/// One past the last committed record of each partition (absent: it has
/// none), found by reading the tail of each log, wider and wider until a
/// record is found or the log start is reached: the high watermark itself
/// may be one past a transaction marker or aborted records, which no
/// consumer ever receives.
fn last_records(
    consumer: &BaseConsumer,
    logs: &HashMap<Part, (i64, i64)>,
) -> Result<HashMap<Part, i64>, AnalyticsError> {
    let mut found = HashMap::new();
    let mut todo: Vec<(Part, i64, i64)> = logs
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, (low, high))| (p.clone(), *low, *high))
        .collect();
    let mut width = 64;
    while !todo.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (p, low, high) in &todo {
            tpl.add_partition_offset(&p.0, p.1, Offset::Offset((high - width).max(*low)))?;
        }
        consumer.assign(&tpl)?;
        let mut last: HashMap<Part, i64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let position = consumer.position()?;
            let at_end = todo.iter().all(|(p, _, high)| {
                let pos = match position.find_partition(&p.0, p.1).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                pos.max(last.get(p).map_or(0, |l| l + 1)) >= *high
            });
            if at_end {
                break;
            }
            if Instant::now() > deadline {
                return Err(AnalyticsError::Invalid(format!(
                    "could not read to the end of {:?} within 60 s",
                    todo.iter().map(|t| &t.0).collect::<Vec<_>>()
                )));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    let e = last.entry(key).or_insert(m.offset());
                    *e = (*e).max(m.offset());
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading the end of the log; trying again")
                }
                None => {}
            }
        }
        todo.retain(|(p, low, high)| match last.get(p) {
            Some(l) => {
                found.insert(p.clone(), l + 1);
                false
            }
            // Nothing committed in the tail read: read a wider one, unless
            // it already started at the log's start.
            None => high - width > *low,
        });
        width = width.saturating_mul(16);
    }
    consumer.unassign()?;
    Ok(found)
}

/// Runs a replay and compares.
pub async fn replay(opts: ReplayOptions) -> Result<ReplayReport, AnalyticsError> {
    let live = opts.settings.schema.clone();
    let client = store::connect(&opts.database_url).await?;
    let found: Option<String> = client
        .query_one(&format!("SELECT to_regclass('{live}.offsets')::text"), &[])
        .await
        .map_err(|source| AnalyticsError::Postgres {
            context: "look for the live tables".into(),
            source,
        })?
        .get(0);
    if found.is_none() {
        return Err(AnalyticsError::Invalid(format!(
            "schema {live} has no analytics tables in this database: nothing to compare with (has the analytics component run against it?)"
        )));
    }
    let (brokers, pt, inputs, from) = (
        opts.brokers.clone(),
        opts.passthrough.clone(),
        opts.inputs.clone(),
        opts.from_ms,
    );
    let ranges = tokio::task::spawn_blocking(move || ranges(&brokers, &pt, &inputs, from))
        .await
        .map_err(|e| AnalyticsError::Invalid(format!("offset lookup panicked: {e}")))??;
    let total: i64 = ranges.values().map(|r| r.end - r.start).sum();
    let pb = if opts.progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} replay analytics [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut settings = opts.settings.clone();
    settings.schema = opts.into.clone();
    let run_opts = RunOptions {
        name: "analytics-replay".into(),
        brokers: opts.brokers,
        passthrough: opts.passthrough,
        group: format!("pushflow-replay-{}-{}", opts.into, std::process::id()),
        inputs: opts.inputs,
        database_url: opts.database_url.clone(),
        settings,
        codec: opts.codec,
        start: StartAt::Offsets(ranges.iter().map(|(p, r)| (p.clone(), r.start)).collect()),
        stop_at: Some(
            ranges
                .iter()
                .filter(|(_, r)| r.end > r.start)
                .map(|(p, r)| (p.clone(), r.end))
                .collect(),
        ),
        progress: Some(pb.clone()),
    };
    let summary = run(run_opts, CancellationToken::new()).await?;
    pb.finish_and_clear();
    let live_lead = lead(&client, &live, &ranges).await?;
    let (compared, differences, difference_count) =
        diff(&client, &live, &opts.into, opts.from_ms).await?;
    Ok(ReplayReport {
        schema: opts.into,
        live,
        compared,
        summary,
        differences,
        difference_count,
        live_lead,
    })
}

/// Records the live schema's stored offsets are past the replay's ends
/// (negative: short of them), summed over the replayed partitions.
async fn lead(
    client: &tokio_postgres::Client,
    live: &str,
    ranges: &HashMap<Part, Range>,
) -> Result<i64, AnalyticsError> {
    let parts: Vec<Part> = ranges.keys().cloned().collect();
    let stored = store::load_positions(client, live, &parts).await?;
    Ok(ranges
        .iter()
        .map(|(p, r)| stored.get(p).copied().unwrap_or(0).max(r.start) - r.end)
        .sum())
}

/// Rows that differ between the `live` and `replay` schemas: (tables
/// compared, first 50 rows described, count). With `from_ms`, only
/// windows and store days starting at or after it.
pub async fn diff(
    client: &tokio_postgres::Client,
    live: &str,
    replay: &str,
    from_ms: Option<i64>,
) -> Result<(Vec<&'static str>, Vec<String>, i64), AnalyticsError> {
    let pg = |source| AnalyticsError::Postgres {
        context: "compare live and replayed tables".into(),
        source,
    };
    let from = from_ms.unwrap_or(-62_000_000_000_000);
    let since = "timestamptz 'epoch' + $1::bigint * interval '1 millisecond'";
    // (table, query, whether it takes `from` as $1)
    let mut queries: Vec<(&'static str, String, bool)> = vec![
        (
            "campaign_windows",
            format!(
                "SELECT 'campaign_windows ' || k.store_id || '/' || k.campaign_id || ' ' || k.window_size::text
                        || ' @ ' || to_char(k.window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                        || ': ' || coalesce(l.dispatched || '/' || l.failed || '/' || l.expired, 'absent')
                        || ' → ' || coalesce(r.dispatched || '/' || r.failed || '/' || r.expired, 'absent')
                 FROM (SELECT store_id, campaign_id, window_size, window_start FROM {live}.campaign_windows
                       UNION SELECT store_id, campaign_id, window_size, window_start FROM {replay}.campaign_windows) k
                 LEFT JOIN {live}.campaign_windows l USING (store_id, campaign_id, window_size, window_start)
                 LEFT JOIN {replay}.campaign_windows r USING (store_id, campaign_id, window_size, window_start)
                 WHERE k.window_start >= {since}
                   AND (l.dispatched, l.failed, l.expired) IS DISTINCT FROM (r.dispatched, r.failed, r.expired)
                 ORDER BY 1"
            ),
            true,
        ),
        (
            "store_days",
            format!(
                "SELECT 'store_days ' || k.store_id || ' ' || k.day::text || ': '
                        || coalesce(l.subscribed || '/' || l.expired, 'absent') || ' → '
                        || coalesce(r.subscribed || '/' || r.expired, 'absent')
                 FROM (SELECT store_id, day FROM {live}.store_days UNION SELECT store_id, day FROM {replay}.store_days) k
                 LEFT JOIN {live}.store_days l USING (store_id, day)
                 LEFT JOIN {replay}.store_days r USING (store_id, day)
                 WHERE k.day::timestamp AT TIME ZONE 'UTC' >= {since}
                   AND (l.subscribed, l.expired) IS DISTINCT FROM (r.subscribed, r.expired)
                 ORDER BY 1"
            ),
            true,
        ),
    ];
    if from_ms.is_none() {
        queries.push((
            "campaign_totals",
            format!(
                "SELECT 'campaign_totals ' || k.store_id || '/' || k.campaign_id || ': '
                        || coalesce(l.dispatched || '/' || l.failed || '/' || l.expired, 'absent')
                        || ' → ' || coalesce(r.dispatched || '/' || r.failed || '/' || r.expired, 'absent')
                 FROM (SELECT store_id, campaign_id FROM {live}.campaign_totals
                       UNION SELECT store_id, campaign_id FROM {replay}.campaign_totals) k
                 LEFT JOIN {live}.campaign_totals l USING (store_id, campaign_id)
                 LEFT JOIN {replay}.campaign_totals r USING (store_id, campaign_id)
                 WHERE (l.dispatched, l.failed, l.expired) IS DISTINCT FROM (r.dispatched, r.failed, r.expired)
                 ORDER BY 1"
            ),
            false,
        ));
        let cols = "title, created_at, schedule_occurred_at, scheduled_at, throttle_per_minute, cancelled_at, launched_at";
        let show = |t: &str| {
            format!(
                "CASE WHEN {t}.store_id IS NULL THEN 'absent' ELSE concat_ws(' ', 'title=' || quote_nullable({t}.title),
                    'created_at=' || quote_nullable({t}.created_at AT TIME ZONE 'UTC'),
                    'scheduled_at=' || quote_nullable({t}.scheduled_at AT TIME ZONE 'UTC'),
                    'throttle_per_minute=' || quote_nullable({t}.throttle_per_minute),
                    'cancelled_at=' || quote_nullable({t}.cancelled_at AT TIME ZONE 'UTC'),
                    'launched_at=' || quote_nullable({t}.launched_at AT TIME ZONE 'UTC')) END"
            )
        };
        queries.push((
            "campaigns",
            format!(
                "SELECT 'campaigns ' || k.store_id || '/' || k.campaign_id || ': ' || {} || ' → ' || {}
                 FROM (SELECT store_id, campaign_id FROM {live}.campaigns
                       UNION SELECT store_id, campaign_id FROM {replay}.campaigns) k
                 LEFT JOIN (SELECT store_id, campaign_id, {cols} FROM {live}.campaigns) l USING (store_id, campaign_id)
                 LEFT JOIN (SELECT store_id, campaign_id, {cols} FROM {replay}.campaigns) r USING (store_id, campaign_id)
                 WHERE (l.store_id IS NULL) IS DISTINCT FROM (r.store_id IS NULL)
                    OR (l.title, l.created_at, l.schedule_occurred_at, l.scheduled_at, l.throttle_per_minute, l.cancelled_at, l.launched_at)
                       IS DISTINCT FROM (r.title, r.created_at, r.schedule_occurred_at, r.scheduled_at, r.throttle_per_minute, r.cancelled_at, r.launched_at)
                 ORDER BY 1",
                show("l"),
                show("r")
            ),
            false,
        ));
    }
    let mut rows = Vec::new();
    let mut compared = Vec::new();
    for (table, sql, takes_from) in queries {
        compared.push(table);
        let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = match takes_from {
            true => &[&from],
            false => &[],
        };
        rows.extend(
            client
                .query(&sql, params)
                .await
                .map_err(pg)?
                .iter()
                .map(|r| r.get::<_, String>(0)),
        );
    }
    let count = rows.len() as i64;
    rows.truncate(50);
    Ok((compared, rows, count))
}
