//! `pushflow bench peer`: pushflow's aggregate and the seed's engine
//! (Kafka Streams, `peers/kafka-streams/`) on the same records on the same
//! broker, each timed from its first record to its last commit and each
//! checked against one ground truth worked out independently.
//!
//! 1. The peer's driver (`peers/kafka-streams/run --produce-only`, Python)
//!    produces the pings — duplicates, disorder, a month boundary, late and
//!    far-late events — and writes the ground truth it computes on its own.
//! 2. pushflow's aggregate runs on those topics from the beginning to their
//!    ends, into a fresh schema, through the live code path; its
//!    `window_stats` and `monthly_totals` are compared row by row with the
//!    ground truth.
//! 3. The driver runs Kafka Streams (`exactly_once_v2`) on the same topics
//!    (`--reuse`) and checks its output topics against the same truth.
//!
//! pushflow's figure includes its Postgres transaction; the peer's does
//! not include the seed's Kafka Connect JDBC copy into Postgres (its
//! results end in topics), so the peer's rate is an upper bound for the
//! seed's pipeline.

use clap::Args;
use pushflow_aggregate::config::AggregateSettings;
use pushflow_aggregate::processor::{run, RunOptions, RunSummary, StartAt};
use pushflow_aggregate::{store, AggregateError};
use pushflow_runtime::codec::{Codec, InMemoryResolver};
use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::postgres::{pg, PgError};
use pushflow_runtime::CancellationToken;
use pushflow_schemas::catalogue::{NOTIFICATION_CLICKED, NOTIFICATION_DELIVERED};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

/// `pushflow bench peer`: pushflow's aggregate beside Kafka Streams on the
/// same records, both checked against one independent ground truth.
#[derive(Debug, Clone, Args)]
pub struct PeerArgs {
    /// Pings to produce (both engines read all of them).
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// The peer's driver.
    #[arg(long, default_value = "peers/kafka-streams/run")]
    pub driver: PathBuf,
    /// Commit lanes of pushflow's aggregate.
    #[arg(long, default_value_t = 2)]
    pub commit_connections: usize,
    /// How the peer decides lateness: `partition` (pushflow's rule, per
    /// input partition, which the ground truth follows) or `stream-time`
    /// (Kafka Streams' own, as kSQL; not exact on a catch-up, see
    /// peers/kafka-streams/README.md).
    #[arg(long, default_value = "partition")]
    pub peer_lateness: String,
    /// Extra arguments for the peer's run (e.g. `--peer-arg=--lateness
    /// --peer-arg=partition`); the driver's own defaults otherwise.
    #[arg(long = "peer-arg", allow_hyphen_values = true)]
    pub peer_args: Vec<String>,
    /// Leave the input topics and pushflow's schema.
    #[arg(long)]
    pub keep: bool,
}

/// The ground truth the driver writes (`--truth-out`).
#[derive(Debug, Deserialize)]
struct Truth {
    topics: Vec<String>,
    records: u64,
    counted: u64,
    duplicates: u64,
    /// (store, campaign, size ms, start ms, delivered, clicked).
    windows: Vec<(String, String, i64, i64, i64, i64)>,
    /// (store, month `YYYY-MM-01`, impressions, clicks).
    monthly: Vec<(String, String, i64, i64)>,
}

/// What the peer's driver prints (the fields this report uses).
#[derive(Debug, Deserialize)]
struct PeerRun {
    records: u64,
    seconds: f64,
    events_per_second: f64,
    exact: bool,
    monthly_exact: bool,
    windows_exact: bool,
    lateness: Option<String>,
    /// The rate once the JIT warmed up: `{seconds, events_per_second, cpu_seconds}`.
    #[serde(default)]
    second_half: serde_json::Value,
    mismatches: serde_json::Value,
    cpu: serde_json::Value,
}

/// Rows of pushflow's tables that differ from the truth.
#[derive(Debug, Default)]
struct Check {
    windows: usize,
    monthly: usize,
    first: Vec<String>,
}

impl Check {
    fn exact(&self) -> bool {
        self.windows == 0 && self.monthly == 0
    }
}

fn invalid(e: impl std::fmt::Display) -> AggregateError {
    AggregateError::Invalid(e.to_string())
}

/// Runs the driver with `args`; returns its last JSON line (its progress
/// goes to our stderr).
fn driver(path: &PathBuf, brokers: &str, args: &[String]) -> Result<String, AggregateError> {
    let out = Command::new(path)
        .arg("--brokers")
        .arg(brokers)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| {
            invalid(format!(
                "{}: {e} (run from the repository root or give --driver)",
                path.display()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The last line holding a JSON object (anything before its `{`, such as
    // a tool's colour codes, is not part of it).
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.find('{').map(|i| &l[i..]));
    match line {
        Some(l) => Ok(l.to_string()),
        None => Err(invalid(format!(
            "{} {args:?} printed no result (exit {}): {stdout}",
            path.display(),
            out.status
        ))),
    }
}

/// The end offset of every partition of `topics` (blocking).
fn ends(brokers: &str, topics: &[String]) -> Result<HashMap<PartitionKey, i64>, AggregateError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer =
        pushflow_runtime::kafka::client_config(brokers, &BTreeMap::new()).create()?;
    let mut out = HashMap::new();
    for topic in topics {
        let md = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(10))?;
        for t in md.topics() {
            for p in t.partitions() {
                let (_, high) =
                    pushflow_runtime::kafka::admin::watermarks(&consumer, topic, p.id())?;
                out.insert(PartitionKey::new(topic.clone(), p.id()), high);
            }
        }
    }
    Ok(out)
}

/// pushflow's aggregate from the beginning of `truth.topics` to `ends`,
/// into `schema`.
async fn pushflow_run(
    brokers: &str,
    database_url: &str,
    schema: &str,
    truth: &Truth,
    ends: HashMap<PartitionKey, i64>,
    lanes: usize,
) -> Result<RunSummary, AggregateError> {
    // The driver writes with fixed schema ids 1 (delivered) and 2 (clicked).
    let resolver = InMemoryResolver::new();
    resolver.insert(1, NOTIFICATION_DELIVERED.schema_text);
    resolver.insert(2, NOTIFICATION_CLICKED.schema_text);
    let settings = AggregateSettings {
        schema: schema.into(),
        commit_connections: lanes,
        ..AggregateSettings::default()
    }
    .validate()
    .map_err(invalid)?;
    let total: i64 = ends.values().sum();
    let pb = super::progress_bar(total as u64, "pushflow aggregate");
    let opts = RunOptions {
        name: "aggregate-peer-bench".into(),
        brokers: brokers.into(),
        passthrough: BTreeMap::new(),
        group: format!("pushflow-bench-peer-{schema}"),
        inputs: truth.topics.clone(),
        database_url: database_url.into(),
        settings,
        codec: Arc::new(Codec::new(Arc::new(resolver))),
        start: StartAt::Beginning,
        stop_at: Some(ends),
        progress: Some(pb.clone()),
    };
    let summary = run(opts, CancellationToken::new()).await?;
    pb.finish_and_clear();
    Ok(summary)
}

/// Compares pushflow's tables in `schema` with the truth, row by row.
async fn check(
    client: &tokio_postgres::Client,
    schema: &str,
    truth: &Truth,
) -> Result<Check, AggregateError> {
    let rows = client
        .query(
            &format!(
                "SELECT store_id, campaign_id, (extract(epoch FROM window_size) * 1000)::bigint,
                        (extract(epoch FROM window_start) * 1000)::bigint, delivered, clicked
                 FROM {schema}.window_stats"
            ),
            &[],
        )
        .await
        .map_err(pg("read window_stats"))?;
    let got: HashMap<(String, String, i64, i64), (i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1), r.get(2), r.get(3)),
                (r.get(4), r.get(5)),
            )
        })
        .collect();
    let want: HashMap<_, _> = truth
        .windows
        .iter()
        .map(|(s, c, size, start, d, k)| ((s.clone(), c.clone(), *size, *start), (*d, *k)))
        .collect();
    let mut out = Check::default();
    for (key, w) in diff(&got, &want) {
        out.windows += 1;
        if out.first.len() < 5 {
            out.first.push(format!("window {key:?}: {w}"));
        }
    }
    let rows = client
        .query(
            &format!(
                "SELECT store_id, month::text, impressions, clicks FROM {schema}.monthly_totals"
            ),
            &[],
        )
        .await
        .map_err(pg("read monthly_totals"))?;
    let got: HashMap<(String, String), (i64, i64)> = rows
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    let want: HashMap<_, _> = truth
        .monthly
        .iter()
        .map(|(s, m, i, c)| ((s.clone(), m.clone()), (*i, *c)))
        .collect();
    for (key, w) in diff(&got, &want) {
        out.monthly += 1;
        if out.first.len() < 5 {
            out.first.push(format!("month {key:?}: {w}"));
        }
    }
    Ok(out)
}

/// The keys whose counts differ (absent = zero), with "got … want …".
fn diff<K: std::hash::Hash + Eq + Clone>(
    got: &HashMap<K, (i64, i64)>,
    want: &HashMap<K, (i64, i64)>,
) -> Vec<(K, String)> {
    let zero = (0, 0);
    got.keys()
        .chain(want.keys().filter(|k| !got.contains_key(*k)))
        .filter_map(|k| {
            let (g, w) = (got.get(k).unwrap_or(&zero), want.get(k).unwrap_or(&zero));
            (g != w).then(|| (k.clone(), format!("got {g:?}, want {w:?}")))
        })
        .collect()
}

/// What `bench` found: the report to print, and whether pushflow's tables
/// equal the ground truth (the command fails when they do not; the peer's
/// exactness is only reported).
pub struct Report {
    /// The printed report.
    pub text: String,
    /// pushflow's totals equal the ground truth.
    pub exact: bool,
}

/// Runs the comparison.
pub async fn bench(
    brokers: &str,
    database_url: &str,
    args: &PeerArgs,
) -> Result<Report, AggregateError> {
    let stamp = format!("{}_{}", chrono::Utc::now().timestamp(), std::process::id());
    let prefix = format!("peer-{stamp}");
    let truth_file = std::env::temp_dir().join(format!("pushflow-peer-truth-{stamp}.json"));
    let produce = [
        "--produce-only".to_string(),
        "--prefix".into(),
        prefix.clone(),
        "-n".into(),
        args.events.to_string(),
        "--truth-out".into(),
        truth_file.display().to_string(),
    ];
    let (d, b) = (args.driver.clone(), brokers.to_string());
    tokio::task::spawn_blocking(move || driver(&d, &b, &produce))
        .await
        .map_err(invalid)??;
    let text = std::fs::read_to_string(&truth_file).map_err(invalid)?;
    let _ = std::fs::remove_file(&truth_file);
    let truth: Truth = serde_json::from_str(&text).map_err(invalid)?;

    let (b, t) = (brokers.to_string(), truth.topics.clone());
    let ends = tokio::task::spawn_blocking(move || ends(&b, &t))
        .await
        .map_err(invalid)??;
    let schema = format!("aggregate_peer_{stamp}");
    let cpu_before = crate::procs::own_cpu_seconds();
    let summary = pushflow_run(
        brokers,
        database_url,
        &schema,
        &truth,
        ends,
        args.commit_connections,
    )
    .await?;
    let cpu_us =
        1e6 * (crate::procs::own_cpu_seconds() - cpu_before) / summary.records.max(1) as f64;
    let client = store::connect(database_url).await?;
    let ours = check(&client, &schema, &truth).await?;
    if !args.keep {
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .map_err(|e| PgError::new("drop the bench schema", e))?;
    }

    let mut reuse = vec![
        "--reuse".to_string(),
        "--prefix".into(),
        prefix.clone(),
        "--lateness".into(),
        args.peer_lateness.clone(),
    ];
    reuse.extend(args.peer_args.iter().cloned());
    let (d, b) = (args.driver.clone(), brokers.to_string());
    let peer = tokio::task::spawn_blocking(move || driver(&d, &b, &reuse))
        .await
        .map_err(invalid)?;
    if !args.keep {
        let names: Vec<&str> = truth.topics.iter().map(String::as_str).collect();
        super::delete_topics(brokers, &names).await;
    }
    let peer: PeerRun = serde_json::from_str(&peer?).map_err(invalid)?;

    let rate = summary.records as f64 / summary.busy_secs().max(1e-9);
    let yes = |b: bool| if b { "yes" } else { "NO" };
    let ratio = rate / peer.events_per_second.max(1e-9);
    let text = format!(
        "pushflow bench peer: {} records on {} ({} distinct pings, {} duplicates; ground truth by peers/kafka-streams/run)\n\
         pushflow aggregate → Postgres ({} lanes): {rate:>10.0} events/s  ({} records in {:.2} s, {cpu_us:.1} µs CPU each in this process, Postgres not included)  exact: {} (windows {} wrong, months {} wrong){}\n\
         Kafka Streams → topics (exactly_once_v2): {:>10.0} events/s  ({} records in {:.2} s; second half {:.0}/s)  exact: {} (windows {}, months {}; lateness {})\n\
           peer CPU µs per event (from /proc): {}\n\
         pushflow / Kafka Streams: {ratio:.1}x (goal 3x: {}); the peer's figure leaves out the seed's Kafka Connect JDBC copy into Postgres{}\n",
        truth.records,
        truth.topics.join(", "),
        truth.counted,
        truth.duplicates,
        args.commit_connections,
        summary.records,
        summary.busy_secs(),
        yes(ours.exact()),
        ours.windows,
        ours.monthly,
        if ours.first.is_empty() { String::new() } else { format!("; first: {}", ours.first.join("; ")) },
        peer.events_per_second,
        peer.records,
        peer.seconds,
        peer.second_half.get("events_per_second").and_then(|v| v.as_f64()).unwrap_or(0.0),
        yes(peer.exact),
        if peer.windows_exact { "exact" } else { "wrong" },
        if peer.monthly_exact { "exact" } else { "wrong" },
        peer.lateness.as_deref().unwrap_or("?"),
        peer.cpu.get("us_per_event").cloned().unwrap_or_default(),
        if ratio >= 3.0 { "met" } else { "NOT met" },
        if peer.exact { String::new() } else { format!("\n  peer mismatches: {}", peer.mismatches) },
    );
    Ok(Report {
        text,
        exact: ours.exact(),
    })
}
