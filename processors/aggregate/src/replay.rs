//! `pushflow replay aggregate`: rebuilds the aggregates from the Kafka log
//! into fresh tables with the same tally as the live processor, then reports
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

use pushflow_runtime::replay::{self, DiffQuery, Differences, LogEnd};
use pushflow_runtime::CancellationToken;

use crate::config::Validated;
use crate::processor::{run, RunSummary};
use crate::{store, AggregateError};

/// What to replay.
pub type ReplayOptions = replay::ReplayOptions<Validated>;

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
        replay::write_differences(f, &self.differences, self.difference_count)
    }
}

/// Parses `--from`: `earliest`, ms since the epoch, or RFC 3339.
pub fn parse_from(s: &str) -> Result<Option<i64>, AggregateError> {
    replay::parse_from(s).map_err(AggregateError::Invalid)
}

/// Runs a replay and compares.
pub async fn replay(opts: ReplayOptions) -> Result<ReplayReport, AggregateError> {
    // Up to the high watermarks, as this replay always read (analytics
    // reads to the last committed record: see `LogEnd`).
    let ranges = opts.ranges(LogEnd::HighWatermark).await?;
    let pb = opts.progress_bar(&ranges, "replay");
    let mut settings = opts.settings.clone();
    settings.schema = opts.into.clone();
    let (live, into, from_ms) = (
        opts.settings.schema.clone(),
        opts.into.clone(),
        opts.from_ms,
    );
    let database_url = opts.database_url.clone();
    let run_opts = opts.run_options("aggregate-replay", settings, &ranges, pb.clone());
    let summary = run(run_opts, CancellationToken::new()).await?;
    pb.finish();
    let client = store::connect(&database_url).await?;
    let found = diff(&client, &live, &into, from_ms).await?;
    Ok(ReplayReport {
        schema: into,
        summary,
        differences: found.listed,
        difference_count: found.count,
    })
}

/// Rows of `window_stats` (and `monthly_totals` when `from_ms` is `None`)
/// that differ between two schemas.
pub async fn diff(
    client: &tokio_postgres::Client,
    live: &str,
    replay: &str,
    from_ms: Option<i64>,
) -> Result<Differences, AggregateError> {
    let mut queries = vec![DiffQuery {
        table: "window_stats",
        sql: format!(
            "SELECT 'window ' || coalesce(l.store_id, r.store_id) || '/' || coalesce(l.campaign_id, r.campaign_id) || ' ' ||
                    coalesce(l.window_size, r.window_size)::text || ' @ ' || coalesce(l.window_start, r.window_start)::text || ': ' ||
                    coalesce(l.delivered || '/' || l.clicked, 'absent') || ' → ' || coalesce(r.delivered || '/' || r.clicked, 'absent')
             FROM (SELECT * FROM {live}.window_stats WHERE window_start >= timestamptz 'epoch' + $1::bigint * interval '1 millisecond') l
             FULL JOIN (SELECT * FROM {replay}.window_stats WHERE window_start >= timestamptz 'epoch' + $1::bigint * interval '1 millisecond') r
               ON l.store_id = r.store_id AND l.campaign_id = r.campaign_id AND l.window_size = r.window_size AND l.window_start = r.window_start
             WHERE (l.delivered, l.clicked) IS DISTINCT FROM (r.delivered, r.clicked)"
        ),
        takes_from: true,
    }];
    if from_ms.is_none() {
        queries.push(DiffQuery {
            table: "monthly_totals",
            sql: format!(
                "SELECT 'month ' || coalesce(l.store_id, r.store_id) || ' ' || coalesce(l.month, r.month)::text || ': ' ||
                        coalesce(l.impressions || '/' || l.clicks, 'absent') || ' → ' || coalesce(r.impressions || '/' || r.clicks, 'absent')
                 FROM {live}.monthly_totals l FULL JOIN {replay}.monthly_totals r ON l.store_id = r.store_id AND l.month = r.month
                 WHERE (l.impressions, l.clicks) IS DISTINCT FROM (r.impressions, r.clicks)"
            ),
            takes_from: false,
        });
    }
    Ok(replay::differences(client, queries, from_ms).await?)
}
