//! `pushflow replay aggregate`: rebuilds the aggregates from the Kafka log
//! into fresh tables with the same core as the live processor, then reports
//! every row that differs from the live tables — the event-sourcing promise
//! made checkable.
//!
//! Guarantee: the replay reads each input partition from `--from` up to its
//! end offset as of the start, with the same exactly-once commit as the
//! live processor (so an interrupted replay into the same `--into` resumes);
//! it never writes to the live schema. With `--from earliest` every window
//! and monthly total is compared; with a later `--from` only windows that
//! start at or after it (monthly totals then naturally differ and are not
//! compared).

use indicatif::{ProgressBar, ProgressStyle};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::client_config;
use pushflow_runtime::CancellationToken;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Validated;
use crate::core::Part;
use crate::processor::{run, RunOptions, RunSummary, StartAt};
use crate::{store, AggregateError};

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
    /// What the replay consumed and counted.
    pub summary: RunSummary,
    /// Rows that differ (at most 50 listed), empty when none.
    pub differences: Vec<String>,
    /// How many rows differ in all.
    pub difference_count: i64,
}

impl std::fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "replayed {} records into schema {}: {} counted, {} duplicates, {} late, {} dead letters", self.summary.records, self.schema, self.summary.counted, self.summary.duplicates, self.summary.late, self.summary.dead_letters)?;
        if self.difference_count == 0 {
            return writeln!(f, "no difference");
        }
        writeln!(f, "{} rows differ (live → replay):", self.difference_count)?;
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// Parses `--from`: `earliest`, ms since the epoch, or RFC 3339.
pub fn parse_from(s: &str) -> Result<Option<i64>, AggregateError> {
    if s == "earliest" {
        return Ok(None);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| Some(d.timestamp_millis()))
        .map_err(|e| AggregateError::Invalid(format!("--from {s:?}: {e}; write `earliest`, ms since the epoch or an RFC 3339 time such as 2026-11-01T00:00:00Z")))
}

/// (start, end) offsets of every partition of `topics`.
pub fn offsets(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    topics: &[String],
    from_ms: Option<i64>,
) -> Result<HashMap<Part, (i64, i64)>, AggregateError> {
    let consumer: BaseConsumer = client_config(brokers, passthrough)
        .set("group.id", "pushflow-replay-offsets")
        .create()?;
    let timeout = Duration::from_secs(15);
    let mut out = HashMap::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
            out.insert((topic.clone(), *p), (low, high));
            if let Some(ms) = from_ms {
                tpl.add_partition_offset(topic, *p, Offset::Offset(ms))?;
            }
        }
        if from_ms.is_some() && !partitions.is_empty() {
            for e in consumer.offsets_for_times(tpl, timeout)?.elements() {
                let key = (e.topic().to_string(), e.partition());
                if let Some(range) = out.get_mut(&key) {
                    range.0 = match e.offset() {
                        Offset::Offset(o) => o.max(range.0),
                        _ => range.1,
                    };
                }
            }
        }
    }
    Ok(out)
}

/// Runs a replay and compares.
pub async fn replay(opts: ReplayOptions) -> Result<ReplayReport, AggregateError> {
    let (brokers, pt, inputs, from) = (
        opts.brokers.clone(),
        opts.passthrough.clone(),
        opts.inputs.clone(),
        opts.from_ms,
    );
    let ranges = tokio::task::spawn_blocking(move || offsets(&brokers, &pt, &inputs, from))
        .await
        .map_err(|e| AggregateError::Invalid(format!("offset lookup panicked: {e}")))??;
    let total: i64 = ranges.values().map(|(s, e)| (e - s).max(0)).sum();
    let pb = if opts.progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    pb.set_style(ProgressStyle::with_template("{spinner} replay [{elapsed_precise}] {wide_bar} {pos}/{len} records ({per_sec}, eta {eta})").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let mut settings = opts.settings.clone();
    settings.schema = opts.into.clone();
    let live_schema = opts.settings.schema.clone();
    let run_opts = RunOptions {
        name: "aggregate-replay".into(),
        brokers: opts.brokers,
        passthrough: opts.passthrough,
        group: format!("pushflow-replay-{}-{}", opts.into, std::process::id()),
        inputs: opts.inputs,
        database_url: opts.database_url.clone(),
        settings,
        codec: opts.codec,
        start: StartAt::Offsets(ranges.iter().map(|(p, (s, _))| (p.clone(), *s)).collect()),
        stop_at: Some(ranges.iter().map(|(p, (_, e))| (p.clone(), *e)).collect()),
        progress: Some(pb.clone()),
    };
    let summary = run(run_opts, CancellationToken::new()).await?;
    pb.finish();
    let (differences, difference_count) =
        diff(&opts.database_url, &live_schema, &opts.into, opts.from_ms).await?;
    Ok(ReplayReport {
        schema: opts.into,
        summary,
        differences,
        difference_count,
    })
}

/// Rows of `window_stats` (and `monthly_totals` when `from_ms` is `None`)
/// that differ between two schemas: (first 50 described, count).
pub async fn diff(
    database_url: &str,
    live: &str,
    replay: &str,
    from_ms: Option<i64>,
) -> Result<(Vec<String>, i64), AggregateError> {
    let client = store::connect(database_url).await?;
    let pg = |source| AggregateError::Postgres {
        context: "compare live and replayed tables".into(),
        source,
    };
    let windows = format!(
        "SELECT 'window ' || coalesce(l.store_id, r.store_id) || '/' || coalesce(l.campaign_id, r.campaign_id) || ' ' ||
                coalesce(l.window_size, r.window_size)::text || ' @ ' || coalesce(l.window_start, r.window_start)::text || ': ' ||
                coalesce(l.delivered || '/' || l.clicked, 'absent') || ' → ' || coalesce(r.delivered || '/' || r.clicked, 'absent')
         FROM (SELECT * FROM {live}.window_stats WHERE window_start >= timestamptz 'epoch' + $1::bigint * interval '1 millisecond') l
         FULL JOIN (SELECT * FROM {replay}.window_stats WHERE window_start >= timestamptz 'epoch' + $1::bigint * interval '1 millisecond') r
           ON l.store_id = r.store_id AND l.campaign_id = r.campaign_id AND l.window_size = r.window_size AND l.window_start = r.window_start
         WHERE (l.delivered, l.clicked) IS DISTINCT FROM (r.delivered, r.clicked)"
    );
    let from = from_ms.unwrap_or(-62_000_000_000_000);
    let mut rows: Vec<String> = client
        .query(&windows, &[&from])
        .await
        .map_err(pg)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if from_ms.is_none() {
        let monthly = format!(
            "SELECT 'month ' || coalesce(l.store_id, r.store_id) || ' ' || coalesce(l.month, r.month)::text || ': ' ||
                    coalesce(l.impressions || '/' || l.clicks, 'absent') || ' → ' || coalesce(r.impressions || '/' || r.clicks, 'absent')
             FROM {live}.monthly_totals l FULL JOIN {replay}.monthly_totals r ON l.store_id = r.store_id AND l.month = r.month
             WHERE (l.impressions, l.clicks) IS DISTINCT FROM (r.impressions, r.clicks)"
        );
        rows.extend(
            client
                .query(&monthly, &[])
                .await
                .map_err(pg)?
                .iter()
                .map(|r| r.get::<_, String>(0)),
        );
    }
    let count = rows.len() as i64;
    rows.truncate(50);
    Ok((rows, count))
}
