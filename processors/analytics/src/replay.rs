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

use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::postgres::{pg, OffsetsTable};
use pushflow_runtime::replay::{self, DiffQuery, Differences, LogEnd, Range};
use pushflow_runtime::CancellationToken;
use std::collections::HashMap;

use crate::config::Validated;
use crate::processor::{run, RunSummary};
use crate::{store, AnalyticsError};

/// What to replay.
pub type ReplayOptions = replay::ReplayOptions<Validated>;

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
        replay::write_differences(f, &self.differences, self.difference_count)
    }
}

/// Parses `--from`: `earliest`, ms since the epoch, or RFC 3339.
pub fn parse_from(s: &str) -> Result<Option<i64>, AnalyticsError> {
    replay::parse_from(s).map_err(AnalyticsError::Invalid)
}

/// Runs a replay and compares.
pub async fn replay(opts: ReplayOptions) -> Result<ReplayReport, AnalyticsError> {
    let live = opts.settings.schema.clone();
    let client = store::connect(&opts.database_url).await?;
    let found: Option<String> = client
        .query_one(&format!("SELECT to_regclass('{live}.offsets')::text"), &[])
        .await
        .map_err(pg("look for the live tables"))?
        .get(0);
    if found.is_none() {
        return Err(AnalyticsError::Invalid(format!(
            "schema {live} has no analytics tables in this database: nothing to compare with (has the analytics component run against it?)"
        )));
    }
    // Up to the last committed record: the high watermark may be one past
    // a transaction marker (see `LogEnd`).
    let ranges = opts.ranges(LogEnd::LastRecord).await?;
    let pb = opts.progress_bar(&ranges, "replay analytics");
    let mut settings = opts.settings.clone();
    settings.schema = opts.into.clone();
    let (into, from_ms) = (opts.into.clone(), opts.from_ms);
    let run_opts = opts.run_options("analytics-replay", settings, &ranges, pb.clone());
    let summary = run(run_opts, CancellationToken::new()).await?;
    pb.finish_and_clear();
    let live_lead = lead(&client, &live, &ranges).await?;
    let found = diff(&client, &live, &into, from_ms).await?;
    Ok(ReplayReport {
        schema: into,
        live,
        compared: found.tables,
        summary,
        differences: found.listed,
        difference_count: found.count,
        live_lead,
    })
}

/// Records the live schema's stored offsets are past the replay's ends
/// (negative: short of them), summed over the replayed partitions.
async fn lead(
    client: &tokio_postgres::Client,
    live: &str,
    ranges: &HashMap<PartitionKey, Range>,
) -> Result<i64, AnalyticsError> {
    let parts: Vec<PartitionKey> = ranges.keys().cloned().collect();
    let stored = OffsetsTable::new(live).load_next(client, &parts).await?;
    Ok(ranges
        .iter()
        .map(|(p, r)| stored.get(p).copied().unwrap_or(0).max(r.start) - r.end)
        .sum())
}

/// Rows that differ between the `live` and `replay` schemas. With
/// `from_ms`, only windows and store days starting at or after it.
pub async fn diff(
    client: &tokio_postgres::Client,
    live: &str,
    replay: &str,
    from_ms: Option<i64>,
) -> Result<Differences, AnalyticsError> {
    let since = "timestamptz 'epoch' + $1::bigint * interval '1 millisecond'";
    let mut queries = vec![
        DiffQuery {
            table: "campaign_windows",
            sql: format!(
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
            takes_from: true,
        },
        DiffQuery {
            table: "store_days",
            sql: format!(
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
            takes_from: true,
        },
    ];
    if from_ms.is_none() {
        queries.push(DiffQuery {
            table: "campaign_totals",
            sql: format!(
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
            takes_from: false,
        });
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
        queries.push(DiffQuery {
            table: "campaigns",
            sql: format!(
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
            takes_from: false,
        });
    }
    Ok(replay::differences(client, queries, from_ms).await?)
}
