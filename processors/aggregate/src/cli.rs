//! Command-line arguments of `pushflow billing`, `pushflow replay
//! aggregate` and `pushflow bench aggregate` (the binary embeds them).

use clap::{Args, ValueEnum};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::topology::Topology;
use std::path::Path;
use std::sync::Arc;

use crate::config::AggregateSettings;
use crate::replay::ReplayOptions;
use crate::AggregateError;

/// Output format of `pushflow billing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// `pushflow billing`: a month's impressions and clicks per store, from the
/// view `billing_monthly_impressions`.
#[derive(Debug, Clone, Args)]
pub struct BillingArgs {
    /// The month, as YYYY-MM (UTC calendar month of the event time).
    #[arg(long)]
    pub month: String,
    /// Only this store.
    #[arg(long)]
    pub store: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `pushflow replay aggregate`: rebuild the aggregates from the Kafka log
/// into fresh tables and compare them with the live ones.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Event log position to start from: RFC 3339 time (2026-11-01T00:00:00Z),
    /// ms since the epoch, or `earliest`.
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Schema to build into (default `aggregate_replay_<unix seconds>`).
    #[arg(long)]
    pub into: Option<String>,
    /// The aggregate component of topology.yaml to replay.
    #[arg(long, default_value = "aggregate")]
    pub component: String,
}

/// `pushflow bench aggregate`: end-to-end and in-process throughput
/// against the broker's raw rate and a one-upsert-per-event baseline.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Events to produce and aggregate.
    #[arg(long, default_value_t = 300_000)]
    pub events: u64,
    /// Records per batch (one Postgres transaction each).
    #[arg(long, default_value_t = 10_000)]
    pub max_batch: usize,
    /// Events written by the one-upsert-per-event baseline.
    #[arg(long, default_value_t = 5_000)]
    pub baseline_events: u64,
    /// Commit lanes of the second end-to-end run (the first uses one).
    #[arg(long, default_value_t = 2)]
    pub commit_connections: usize,
}

fn topology(path: &Path) -> Result<Topology, AggregateError> {
    Topology::load(path).map_err(|e| AggregateError::Invalid(e.to_string()))
}

/// `pushflow billing`: prints the month's totals.
pub async fn billing(path: &Path, args: &BillingArgs) -> Result<(), AggregateError> {
    let t = topology(path)?;
    print!(
        "{}",
        crate::billing::command(&t.services.database_url, args).await?
    );
    Ok(())
}

/// `pushflow replay aggregate`: rebuilds into a fresh schema and prints the
/// comparison with the live tables.
pub async fn replay(path: &Path, args: &ReplayArgs) -> Result<(), AggregateError> {
    let t = topology(path)?;
    let spec = t
        .component(&args.component)
        .filter(|c| c.kind == "aggregate")
        .ok_or_else(|| {
            AggregateError::Invalid(format!(
                "{}: no component named {:?} of type aggregate (use --component)",
                path.display(),
                args.component
            ))
        })?;
    let settings: AggregateSettings = spec
        .settings()
        .map_err(|(field, e)| AggregateError::Invalid(format!("{}: {field}: {e}", spec.name)))?;
    let settings = settings
        .validate()
        .map_err(|(f, m)| AggregateError::Invalid(format!("{}: {f}: {m}", spec.name)))?;
    let into = args
        .into
        .clone()
        .unwrap_or_else(|| format!("aggregate_replay_{}", chrono::Utc::now().timestamp()));
    AggregateSettings {
        schema: into.clone(),
        ..AggregateSettings::default()
    }
    .validate()
    .map_err(|(_, m)| AggregateError::Invalid(format!("--into: {m}")))?;
    if into == settings.schema {
        return Err(AggregateError::Invalid(format!(
            "--into {into:?} is the live schema; choose a fresh one"
        )));
    }
    let codec = Codec::for_registry(&t.services.registry_url)
        .map_err(pushflow_runtime::RuntimeError::from)?;
    let report = crate::replay::replay(ReplayOptions {
        brokers: t.services.brokers.clone(),
        passthrough: t.kafka.clone(),
        inputs: spec.inputs.clone(),
        database_url: t.services.database_url.clone(),
        settings,
        from_ms: crate::replay::parse_from(&args.from)?,
        into,
        codec: Arc::new(codec),
        progress: true,
    })
    .await?;
    print!("{report}");
    Ok(())
}

/// `pushflow bench aggregate`: prints the figures.
pub async fn bench(path: &Path, args: &BenchArgs) -> Result<(), AggregateError> {
    let (brokers, kafka, db) = match Topology::load(path) {
        Ok(t) => (t.services.brokers, t.kafka, t.services.database_url),
        Err(_) => (
            std::env::var("PUSHFLOW_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            Default::default(),
            std::env::var("PUSHFLOW_DATABASE_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/pushflow".into()),
        ),
    };
    print!(
        "{}",
        crate::bench::bench(&brokers, &kafka, &db, args).await?
    );
    Ok(())
}
