//! `pushflow replay aggregate|analytics`: rebuild a component's tables from
//! the Kafka log into a fresh schema, with the component's own code, and
//! print how they differ from the live ones.

use clap::{Args, Subcommand};
use pushflow_aggregate::{AggregateError, AggregateSettings};
use pushflow_analytics::{AnalyticsError, AnalyticsSettings};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::postgres::is_plain_identifier;
use pushflow_runtime::topology::{ComponentSpec, Topology};
use pushflow_runtime::RuntimeError;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use crate::{failure, Failure};

/// `pushflow replay …`
#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Rebuild the aggregates into fresh tables and report any difference
    /// from the live ones.
    Aggregate(AggregateArgs),
    /// Rebuild the analytics tables into a fresh schema and report any
    /// difference from the live ones (exit 1 when a row differs).
    Analytics(AnalyticsArgs),
}

/// `pushflow replay aggregate`: rebuild the aggregates from the Kafka log
/// into fresh tables and compare them with the live ones.
#[derive(Debug, Clone, Args)]
pub struct AggregateArgs {
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

/// `pushflow replay analytics`: rebuild the analytics tables from the
/// Kafka log into a fresh schema and compare them with the live ones;
/// exits non-zero when a row differs.
#[derive(Debug, Clone, Args)]
pub struct AnalyticsArgs {
    /// Event log position to start from: RFC 3339 time (2026-11-01T00:00:00Z),
    /// ms since the epoch, or `earliest`.
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Schema to build into (default `analytics_replay_<unix seconds>`).
    #[arg(long)]
    pub into: Option<String>,
    /// The analytics component of topology.yaml to replay.
    #[arg(long, default_value = "analytics")]
    pub component: String,
}

/// Runs `pushflow replay …` with the topology at `path`.
pub async fn run(path: &Path, cmd: &ReplayCommand) -> Result<(), Failure> {
    match cmd {
        ReplayCommand::Aggregate(args) => aggregate(path, args).await.map_err(failure),
        ReplayCommand::Analytics(args) => analytics(path, args).await.map_err(failure),
    }
}

/// What a replay reads, as the topology and its component's entry say:
/// the same for every component.
struct Source {
    brokers: String,
    passthrough: BTreeMap<String, String>,
    inputs: Vec<String>,
    database_url: String,
    /// The schema to build into.
    into: String,
    codec: Arc<Codec>,
}

/// The replay of the component crate `$krate` (its `replay` module) as
/// [`replay_into`] takes it: from a [`Source`] to the component's report.
/// Aggregate's and analytics' `ReplayOptions` are two types with the same
/// fields, and their `parse_from` two functions with the same rules.
macro_rules! component_replay {
    ($krate:ident, $settings:expr, $from:expr) => {
        move |s: Source| async move {
            let from_ms = $krate::replay::parse_from($from)?;
            $krate::replay::replay($krate::replay::ReplayOptions {
                brokers: s.brokers,
                passthrough: s.passthrough,
                inputs: s.inputs,
                database_url: s.database_url,
                settings: $settings,
                from_ms,
                into: s.into,
                codec: s.codec,
                progress: true,
            })
            .await
        }
    };
}

/// Loads the topology at `path` and finds its component `name` of type
/// `kind`; the error is the message to print.
fn find(path: &Path, kind: &str, name: &str) -> Result<(Topology, ComponentSpec), String> {
    let t = Topology::load(path).map_err(|e| e.to_string())?;
    let spec = t
        .component(name)
        .filter(|c| c.kind == kind)
        .cloned()
        .ok_or_else(|| {
            format!(
                "{}: no component named {name:?} of type {kind} (use --component)",
                path.display()
            )
        })?;
    Ok((t, spec))
}

/// `--into`, or `<kind>_replay_<unix seconds>`.
fn target(kind: &str, into: &Option<String>) -> String {
    into.clone()
        .unwrap_or_else(|| format!("{kind}_replay_{}", chrono::Utc::now().timestamp()))
}

/// The part every replay shares: refuses the live schema `live` as the
/// target `into`, connects to the topology's registry, runs `replay` on
/// the component's inputs and database, and prints its report.
async fn replay_into<R, E, Fut>(
    t: &Topology,
    spec: &ComponentSpec,
    live: &str,
    into: String,
    invalid: fn(String) -> E,
    replay: impl FnOnce(Source) -> Fut,
) -> Result<R, E>
where
    R: Display,
    E: From<RuntimeError>,
    Fut: Future<Output = Result<R, E>>,
{
    if into == live {
        return Err(invalid(format!(
            "--into {into:?} is the live schema; choose a fresh one"
        )));
    }
    let codec = Codec::for_registry(&t.services.registry_url).map_err(RuntimeError::from)?;
    let report = replay(Source {
        brokers: t.services.brokers.clone(),
        passthrough: t.kafka.clone(),
        inputs: spec.inputs.clone(),
        database_url: t.services.database_url.clone(),
        into,
        codec: Arc::new(codec),
    })
    .await?;
    print!("{report}");
    Ok(report)
}

/// `pushflow replay aggregate`: rebuilds into a fresh schema and prints the
/// comparison with the live tables.
async fn aggregate(path: &Path, args: &AggregateArgs) -> Result<(), AggregateError> {
    let (t, spec) = find(path, "aggregate", &args.component).map_err(AggregateError::Invalid)?;
    let settings: AggregateSettings = spec
        .settings()
        .map_err(|e| AggregateError::Invalid(format!("{}: {e}", spec.name)))?;
    let settings = settings
        .validate_with(&t.pings)
        .map_err(|e| AggregateError::Invalid(format!("{}: {e}", spec.name)))?;
    let into = target("aggregate", &args.into);
    AggregateSettings {
        schema: into.clone(),
        ..AggregateSettings::default()
    }
    .validate()
    .map_err(|e| AggregateError::Invalid(format!("--into: {}", e.message)))?;
    let live = settings.schema.clone();
    let replay = component_replay!(pushflow_aggregate, settings, &args.from);
    replay_into(&t, &spec, &live, into, AggregateError::Invalid, replay).await?;
    Ok(())
}

/// `pushflow replay analytics`: rebuilds into a fresh schema, prints the
/// comparison with the live tables, and fails ([`AnalyticsError::Differs`])
/// when a row differs.
async fn analytics(path: &Path, args: &AnalyticsArgs) -> Result<(), AnalyticsError> {
    let (t, spec) = find(path, "analytics", &args.component).map_err(AnalyticsError::Invalid)?;
    let settings = spec
        .settings::<AnalyticsSettings>()
        .and_then(|s| s.validate())
        .map_err(|e| AnalyticsError::Invalid(format!("{}: {e}", spec.name)))?;
    let into = target("analytics", &args.into);
    if !is_plain_identifier(&into) {
        return Err(AnalyticsError::Invalid(format!(
            "--into {into:?} is not a plain Postgres identifier (lowercase letters, digits, _)"
        )));
    }
    let live = settings.schema.clone();
    let replay = component_replay!(pushflow_analytics, settings, &args.from);
    let report = replay_into(&t, &spec, &live, into, AnalyticsError::Invalid, replay).await?;
    match report.difference_count {
        0 => Ok(()),
        count => Err(AnalyticsError::Differs {
            count,
            live: report.live,
            replay: report.schema,
        }),
    }
}
