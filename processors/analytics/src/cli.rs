//! Command-line arguments of `pushflow replay analytics` (the binary
//! embeds them).

use clap::Args;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::postgres::is_plain_identifier;
use pushflow_runtime::topology::Topology;
use std::path::Path;
use std::sync::Arc;

use crate::replay::ReplayOptions;
use crate::AnalyticsError;

/// `pushflow replay analytics`: rebuild the analytics tables from the
/// Kafka log into a fresh schema and compare them with the live ones;
/// exits non-zero when a row differs.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
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

/// `pushflow replay analytics`: rebuilds into a fresh schema, prints the
/// comparison with the live tables, and fails ([`AnalyticsError::Differs`])
/// when a row differs.
pub async fn replay(path: &Path, args: &ReplayArgs) -> Result<(), AnalyticsError> {
    let t = Topology::load(path).map_err(|e| AnalyticsError::Invalid(e.to_string()))?;
    let spec = t
        .component(&args.component)
        .filter(|c| c.kind == "analytics")
        .ok_or_else(|| {
            AnalyticsError::Invalid(format!(
                "{}: no component named {:?} of type analytics (use --component)",
                path.display(),
                args.component
            ))
        })?;
    let settings = crate::component::settings_of(spec)
        .map_err(|(f, m)| AnalyticsError::Invalid(format!("{}: {f}: {m}", spec.name)))?;
    let into = args
        .into
        .clone()
        .unwrap_or_else(|| format!("analytics_replay_{}", chrono::Utc::now().timestamp()));
    if !is_plain_identifier(&into) {
        return Err(AnalyticsError::Invalid(format!(
            "--into {into:?} is not a plain Postgres identifier (lowercase letters, digits, _)"
        )));
    }
    if into == settings.schema {
        return Err(AnalyticsError::Invalid(format!(
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
    match report.difference_count {
        0 => Ok(()),
        count => Err(AnalyticsError::Differs {
            count,
            live: report.live,
            replay: report.schema,
        }),
    }
}
