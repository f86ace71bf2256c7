//! Replays of a consumer that counts into Postgres (`pushflow replay
//! aggregate`, `pushflow replay analytics`): which records to read again
//! ([`ReplayOptions::ranges`]: from a time, or the log start, to the end of
//! each log as of the start), the run that reads them into a fresh schema
//! with the live component's own code ([`ReplayOptions::run_options`]), and
//! the comparison of the rebuilt tables with the live ones
//! ([`differences`]).
//!
//! Guarantee: a replay reads each partition from its [`Range::start`] up
//! to its [`Range::end`], taken once at the start, through the component's
//! exactly-once commit (so an interrupted replay into the same schema
//! resumes); it never writes to the live schema, and the comparison only
//! reads.

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use crate::codec::Codec;
use crate::kafka::{admin, client_config, PartitionKey, RunOptions, StartAt};
use crate::postgres::{pg, PgError};
use crate::RuntimeError;

/// What to replay, with `S` the live component's validated settings.
pub struct ReplayOptions<S> {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// librdkafka pass-through.
    pub passthrough: BTreeMap<String, String>,
    /// Input topics.
    pub inputs: Vec<String>,
    /// Postgres URL (the live tables' database).
    pub database_url: String,
    /// The live component's settings (its schema is the one compared).
    pub settings: S,
    /// Start (Kafka record time, ms); `None`: the beginning of the log.
    pub from_ms: Option<i64>,
    /// Schema to build into.
    pub into: String,
    /// Decoder.
    pub codec: Arc<Codec>,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// Parses `--from`: `earliest` (`None`), ms since the epoch, or RFC 3339;
/// the error says what to write instead.
pub fn parse_from(s: &str) -> Result<Option<i64>, String> {
    if s == "earliest" {
        return Ok(None);
    }
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| Some(d.timestamp_millis()))
        .map_err(|e| format!("--from {s:?}: {e}; write `earliest`, ms since the epoch or an RFC 3339 time such as 2026-11-01T00:00:00Z"))
}

/// What to read of one partition: from `start` up to (not including) `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First offset to read.
    pub start: i64,
    /// One past the last record to read (`start` when there is none).
    pub end: i64,
}

/// Where a replay's [`Range`]s end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// At the high watermark: right for a log without transactions.
    HighWatermark,
    /// One past the last committed record, found by reading the tail of the
    /// log: the high watermark may be one past a transaction marker or
    /// aborted records, which no consumer ever receives.
    LastRecord,
}

impl<S> ReplayOptions<S> {
    /// The [`Range`] of every partition of the inputs: from the first
    /// record at or after `from_ms` (or the log start) to `end`.
    pub async fn ranges(&self, end: LogEnd) -> Result<HashMap<PartitionKey, Range>, RuntimeError> {
        let (brokers, passthrough, topics, from_ms) = (
            self.brokers.clone(),
            self.passthrough.clone(),
            self.inputs.clone(),
            self.from_ms,
        );
        tokio::task::spawn_blocking(move || ranges(&brokers, &passthrough, &topics, from_ms, end))
            .await
            .map_err(|e| failed(format!("offset lookup panicked: {e}")))?
    }

    /// The options of the replay's run: component `name`, `settings` (the
    /// live ones building into [`ReplayOptions::into`]), a consumer group of
    /// its own, reading `ranges`.
    pub fn run_options(
        self,
        name: &str,
        settings: S,
        ranges: &HashMap<PartitionKey, Range>,
        progress: ProgressBar,
    ) -> RunOptions<S> {
        RunOptions {
            name: name.into(),
            brokers: self.brokers,
            passthrough: self.passthrough,
            group: format!("pushflow-replay-{}-{}", self.into, std::process::id()),
            inputs: self.inputs,
            database_url: self.database_url,
            settings,
            codec: self.codec,
            start: StartAt::Offsets(ranges.iter().map(|(p, r)| (p.clone(), r.start)).collect()),
            stop_at: Some(
                ranges
                    .iter()
                    .filter(|(_, r)| r.end > r.start)
                    .map(|(p, r)| (p.clone(), r.end))
                    .collect(),
            ),
            progress: Some(progress),
        }
    }

    /// A progress bar over the records of `ranges`, labelled `label`
    /// (hidden unless [`ReplayOptions::progress`]).
    pub fn progress_bar(&self, ranges: &HashMap<PartitionKey, Range>, label: &str) -> ProgressBar {
        let total: i64 = ranges.values().map(|r| (r.end - r.start).max(0)).sum();
        let pb = match self.progress {
            true => ProgressBar::new(total as u64),
            false => ProgressBar::hidden(),
        };
        pb.set_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {label} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} records ({{per_sec}}, eta {{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    }
}

fn failed(message: String) -> RuntimeError {
    RuntimeError::Component {
        component: "replay".into(),
        message,
        retryable: false,
    }
}

/// See [`ReplayOptions::ranges`]. Blocking.
fn ranges(
    brokers: &str,
    passthrough: &BTreeMap<String, String>,
    topics: &[String],
    from_ms: Option<i64>,
    end: LogEnd,
) -> Result<HashMap<PartitionKey, Range>, RuntimeError> {
    // read_committed: the high watermark it is told is the last stable
    // offset, and it reads what the replay's consumer will read.
    let consumer: BaseConsumer = client_config(brokers, passthrough)
        .set("group.id", "pushflow-replay-offsets")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let timeout = Duration::from_secs(15);
    let mut logs: HashMap<PartitionKey, Range> = HashMap::new();
    let mut starts: HashMap<PartitionKey, i64> = HashMap::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), timeout)?;
        let mut tpl = TopicPartitionList::new();
        for p in md.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = admin::watermarks(&consumer, topic, p.id())?;
            let key = PartitionKey::new(topic.clone(), p.id());
            logs.insert(
                key.clone(),
                Range {
                    start: low,
                    end: high,
                },
            );
            starts.insert(key, low);
            if let Some(ms) = from_ms {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(ms))?;
            }
        }
        if from_ms.is_some() && tpl.count() > 0 {
            for e in consumer.offsets_for_times(tpl, timeout)?.elements() {
                let key = PartitionKey::new(e.topic(), e.partition());
                let log = logs[&key];
                let start = match e.offset() {
                    Offset::Offset(o) => o.max(log.start),
                    _ => log.end,
                };
                starts.insert(key, start);
            }
        }
    }
    let ends = match end {
        LogEnd::HighWatermark => logs.iter().map(|(p, log)| (p.clone(), log.end)).collect(),
        LogEnd::LastRecord => last_records(&consumer, &logs)?,
    };
    Ok(logs
        .keys()
        .map(|p| {
            let start = starts[p];
            let end = ends.get(p).map_or(start, |e| (*e).max(start));
            (p.clone(), Range { start, end })
        })
        .collect())
}

/// One past the last committed record of each partition of `logs` (each
/// log's whole range; absent: it has none), found by reading the tail of
/// each log, wider and wider until a record is found or the log start is
/// reached.
fn last_records(
    consumer: &BaseConsumer,
    logs: &HashMap<PartitionKey, Range>,
) -> Result<HashMap<PartitionKey, i64>, RuntimeError> {
    let mut found = HashMap::new();
    let mut todo: Vec<(PartitionKey, Range)> = logs
        .iter()
        .filter(|(_, log)| log.end > log.start)
        .map(|(p, log)| (p.clone(), *log))
        .collect();
    let mut width = 64;
    while !todo.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (p, log) in &todo {
            tpl.add_partition_offset(
                &p.topic,
                p.partition,
                Offset::Offset((log.end - width).max(log.start)),
            )?;
        }
        consumer.assign(&tpl)?;
        let mut last: HashMap<PartitionKey, i64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let position = consumer.position()?;
            let at_end = todo.iter().all(|(p, log)| {
                let pos = match position
                    .find_partition(&p.topic, p.partition)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                pos.max(last.get(p).map_or(0, |l| l + 1)) >= log.end
            });
            if at_end {
                break;
            }
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "could not read to the end of {:?} within 60 s",
                    todo.iter().map(|t| &t.0).collect::<Vec<_>>()
                )));
            }
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let e = last
                        .entry(PartitionKey::new(m.topic(), m.partition()))
                        .or_insert(m.offset());
                    *e = (*e).max(m.offset());
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reading the end of the log; trying again")
                }
                None => {}
            }
        }
        todo.retain(|(p, log)| match last.get(p) {
            Some(l) => {
                found.insert(p.clone(), l + 1);
                false
            }
            // Nothing committed in the tail read: read a wider one, unless
            // it already started at the log's start.
            None => log.end - width > log.start,
        });
        width = width.saturating_mul(16);
    }
    consumer.unassign()?;
    Ok(found)
}

/// A query listing the rows of one table that differ between the live and
/// the replayed schema, one text (column 0) per row.
#[derive(Debug, Clone)]
pub struct DiffQuery {
    /// The table compared.
    pub table: &'static str,
    /// The query.
    pub sql: String,
    /// Whether it takes the replay's start (ms, `bigint`) as `$1`.
    pub takes_from: bool,
}

/// Rows that differ between the live and the replayed tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Differences {
    /// Tables compared.
    pub tables: Vec<&'static str>,
    /// The first [`Differences::LISTED`] rows that differ, described.
    pub listed: Vec<String>,
    /// How many rows differ in all.
    pub count: i64,
}

impl Differences {
    /// Rows described at most.
    pub const LISTED: usize = 50;
}

/// Runs `queries` (in order) and collects the rows that differ. A query
/// that takes `$1` gets `from_ms` (or a time before any record).
pub async fn differences(
    client: &Client,
    queries: Vec<DiffQuery>,
    from_ms: Option<i64>,
) -> Result<Differences, PgError> {
    let from = from_ms.unwrap_or(-62_000_000_000_000);
    let mut out = Differences::default();
    for q in queries {
        out.tables.push(q.table);
        let params: &[&(dyn ToSql + Sync)] = match q.takes_from {
            true => &[&from],
            false => &[],
        };
        let rows = client
            .query(&q.sql, params)
            .await
            .map_err(pg("compare live and replayed tables"))?;
        out.listed
            .extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    out.count = out.listed.len() as i64;
    out.listed.truncate(Differences::LISTED);
    Ok(out)
}

/// Writes the rows that differ (`listed` of `count`) as a replay report
/// ends: `no difference`, or the count and one row a line.
pub fn write_differences(
    f: &mut std::fmt::Formatter<'_>,
    listed: &[String],
    count: i64,
) -> std::fmt::Result {
    if count == 0 {
        return writeln!(f, "no difference");
    }
    writeln!(f, "{count} rows differ (live → replay):")?;
    for d in listed {
        writeln!(f, "  {d}")?;
    }
    if count > listed.len() as i64 {
        writeln!(f, "  … and {} more", count - listed.len() as i64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_from_as_earliest_ms_or_rfc3339() {
        assert_eq!(parse_from("earliest").unwrap(), None);
        assert_eq!(parse_from("1000").unwrap(), Some(1000));
        assert_eq!(
            parse_from("1970-01-01T00:00:01Z").unwrap(),
            Some(1000),
            "RFC 3339"
        );
        assert!(parse_from("yesterday").unwrap_err().contains("earliest"));
    }
}
