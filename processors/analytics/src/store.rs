//! Postgres: the tables, their versioned migrations and the ONE
//! transaction per batch that makes a staged batch durable (its `seen`
//! keys, its deltas, its campaign patches and its partitions' next offsets).
//!
//! Tables (schema `analytics` by default; any plain schema for replays),
//! the contract the dashboard reads:
//! - `campaigns(store_id, campaign_id, title, created_at, scheduled_at,
//!   throttle_per_minute, cancelled_at, launched_at)`: one row per
//!   campaign, merged from its events in any order ([`CampaignPatch::merge`]);
//!   `schedule_occurred_at` says which `campaign.scheduled` set the schedule.
//! - `campaign_windows(store_id, campaign_id, window_size, window_start,
//!   dispatched, failed, expired)` and `campaign_totals(store_id,
//!   campaign_id, dispatched, failed, expired)`.
//! - `store_days(store_id, day, subscribed, expired)`.
//! - `seen(store_id, kind, id, day)`: every key ever counted (primary key
//!   only, compared byte-wise).
//! - `offsets(topic, partition, next_offset)`: the consumer position that
//!   is truth (Kafka's own commits are informational).
//! - `migrations(version)`.
//!
//! [`CampaignPatch::merge`]: crate::facts::CampaignPatch::merge

use pushflow_runtime::postgres::{self, pg, Migration, OffsetsTable, StoredPosition};
use std::collections::HashSet;
use tokio_postgres::{Client, Transaction};

use crate::tally::{deltas, Deltas, Staged};
use crate::AnalyticsError;

pub use pushflow_runtime::postgres::connect;

/// The migrations of schema `s`.
pub fn migrations(s: &str) -> Vec<Migration> {
    vec![Migration {
        version: 1,
        sql: format!(
            "CREATE TABLE {s}.campaigns (store_id text NOT NULL, campaign_id text NOT NULL,
                title text NULL, created_at timestamptz NULL, scheduled_at timestamptz NULL,
                throttle_per_minute int NULL, cancelled_at timestamptz NULL, launched_at timestamptz NULL,
                schedule_occurred_at timestamptz NULL,
                PRIMARY KEY (store_id, campaign_id));
             CREATE TABLE {s}.campaign_windows (store_id text NOT NULL, campaign_id text NOT NULL,
                window_size interval NOT NULL, window_start timestamptz NOT NULL,
                dispatched bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,
                expired bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (store_id, campaign_id, window_size, window_start));
             CREATE TABLE {s}.campaign_totals (store_id text NOT NULL, campaign_id text NOT NULL,
                dispatched bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,
                expired bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (store_id, campaign_id));
             CREATE TABLE {s}.store_days (store_id text NOT NULL, day date NOT NULL,
                subscribed bigint NOT NULL DEFAULT 0, expired bigint NOT NULL DEFAULT 0,
                PRIMARY KEY (store_id, day));
             CREATE TABLE {s}.seen (store_id text COLLATE \"C\" NOT NULL, kind smallint NOT NULL,
                id text COLLATE \"C\" NOT NULL, day date NOT NULL,
                PRIMARY KEY (store_id, kind, id, day)) WITH (fillfactor = 100);
             COMMENT ON TABLE {s}.seen IS 'analytics dedup keys: kind 0 = a notification outcome (id = notification_id, day 1970-01-01: once ever), 1 = subscribed, 2 = expired (id = subscriber_id, per UTC day)';
             {offsets}",
            offsets = OffsetsTable::new(s).create_sql()
        ),
    }]
}

/// Creates the schema and applies missing migrations (exactly once, under
/// an advisory lock: see [`pushflow_runtime::postgres::migrate`]).
pub async fn migrate(client: &mut Client, schema: &str) -> Result<(), AnalyticsError> {
    Ok(postgres::migrate(client, schema, &migrations(schema))
        .await
        .map(drop)?)
}

/// What a committed batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Facts counted (keys new to `seen`).
    pub counted: u64,
    /// Candidates `seen` already had.
    pub duplicates: u64,
    /// Campaign rows upserted.
    pub campaigns: u64,
}

/// Makes `staged` durable in ONE transaction: asks `seen` which keys are
/// new (inserting them), writes their deltas and the campaign patches, and
/// moves the partitions' stored offsets past the batch.
pub async fn commit(
    client: &mut Client,
    schema: &str,
    windows_ms: &[i64],
    staged: &Staged,
) -> Result<Committed, AnalyticsError> {
    let s = schema;
    let tx = client.transaction().await.map_err(pg("begin batch"))?;
    let is_new = insert_seen(&tx, s, staged).await?;
    let d = deltas(windows_ms, staged, &is_new);
    write_deltas(&tx, s, &d).await?;
    write_campaigns(&tx, s, staged).await?;
    let positions = staged.positions.iter().map(|(p, next)| {
        let stored = StoredPosition {
            next_offset: *next,
            watermark_ms: None,
        };
        (p, stored)
    });
    OffsetsTable::new(s).save(&tx, positions).await?;
    tx.commit().await.map_err(pg("commit batch"))?;
    Ok(Committed {
        counted: d.counted,
        duplicates: staged.candidates.len() as u64 - d.counted,
        campaigns: staged.campaigns.len() as u64,
    })
}

/// Inserts the candidates' keys into `seen` (in key order, so concurrent
/// batches lock them in the same order) and says, per candidate, whether
/// Postgres inserted it: exact under the primary key, also against a
/// concurrent transaction inserting the same key.
async fn insert_seen(
    tx: &Transaction<'_>,
    s: &str,
    staged: &Staged,
) -> Result<Vec<bool>, AnalyticsError> {
    if staged.candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys: Vec<_> = staged.candidates.iter().map(|c| &c.key).collect();
    keys.sort();
    let stores: Vec<&str> = keys.iter().map(|k| k.store_id.as_str()).collect();
    let kinds: Vec<i16> = keys.iter().map(|k| k.kind.code()).collect();
    let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    let days: Vec<i32> = keys.iter().map(|k| k.day).collect();
    let rows = tx
        .query(
            &format!(
                "INSERT INTO {s}.seen (store_id, kind, id, day)
                 SELECT st, k, i, date '1970-01-01' + d
                 FROM unnest($1::text[], $2::smallint[], $3::text[], $4::int[]) AS u(st, k, i, d)
                 ON CONFLICT DO NOTHING
                 RETURNING store_id, kind, id, (day - date '1970-01-01')::int"
            ),
            &[&stores, &kinds, &ids, &days],
        )
        .await
        .map_err(pg("insert seen keys"))?;
    let fresh: HashSet<(&str, i16, &str, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    Ok(staged
        .candidates
        .iter()
        .map(|c| {
            let k = &c.key;
            fresh.contains(&(k.store_id.as_str(), k.kind.code(), k.id.as_str(), k.day))
        })
        .collect())
}

const MS: &str = "* interval '1 millisecond'";

async fn write_deltas(tx: &Transaction<'_>, s: &str, d: &Deltas) -> Result<(), AnalyticsError> {
    if !d.windows.is_empty() {
        let st: Vec<&str> = d.windows.keys().map(|k| k.store_id.as_str()).collect();
        let ca: Vec<&str> = d.windows.keys().map(|k| k.campaign_id.as_str()).collect();
        let size: Vec<i64> = d.windows.keys().map(|k| k.size_ms).collect();
        let start: Vec<i64> = d.windows.keys().map(|k| k.start_ms).collect();
        let di: Vec<i64> = d.windows.values().map(|c| c.dispatched).collect();
        let fa: Vec<i64> = d.windows.values().map(|c| c.failed).collect();
        let ex: Vec<i64> = d.windows.values().map(|c| c.expired).collect();
        tx.execute(
            &format!(
                "INSERT INTO {s}.campaign_windows AS w
                    (store_id, campaign_id, window_size, window_start, dispatched, failed, expired)
                 SELECT st, ca, sz {MS}, timestamptz 'epoch' + ws {MS}, di, fa, ex
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
                    AS u(st, ca, sz, ws, di, fa, ex)
                 ON CONFLICT (store_id, campaign_id, window_size, window_start) DO UPDATE
                 SET dispatched = w.dispatched + excluded.dispatched, failed = w.failed + excluded.failed,
                     expired = w.expired + excluded.expired"
            ),
            &[&st, &ca, &size, &start, &di, &fa, &ex],
        )
        .await
        .map_err(pg("upsert campaign windows"))?;
    }
    if !d.totals.is_empty() {
        let st: Vec<&str> = d.totals.keys().map(|k| k.store_id.as_str()).collect();
        let ca: Vec<&str> = d.totals.keys().map(|k| k.campaign_id.as_str()).collect();
        let di: Vec<i64> = d.totals.values().map(|c| c.dispatched).collect();
        let fa: Vec<i64> = d.totals.values().map(|c| c.failed).collect();
        let ex: Vec<i64> = d.totals.values().map(|c| c.expired).collect();
        tx.execute(
            &format!(
                "INSERT INTO {s}.campaign_totals AS t (store_id, campaign_id, dispatched, failed, expired)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
                 ON CONFLICT (store_id, campaign_id) DO UPDATE
                 SET dispatched = t.dispatched + excluded.dispatched, failed = t.failed + excluded.failed,
                     expired = t.expired + excluded.expired"
            ),
            &[&st, &ca, &di, &fa, &ex],
        )
        .await
        .map_err(pg("upsert campaign totals"))?;
    }
    if !d.days.is_empty() {
        let st: Vec<&str> = d.days.keys().map(|k| k.store_id.as_str()).collect();
        let day: Vec<i32> = d.days.keys().map(|k| k.day).collect();
        let su: Vec<i64> = d.days.values().map(|c| c.subscribed).collect();
        let ex: Vec<i64> = d.days.values().map(|c| c.expired).collect();
        tx.execute(
            &format!(
                "INSERT INTO {s}.store_days AS d (store_id, day, subscribed, expired)
                 SELECT st, date '1970-01-01' + dy, su, ex
                 FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[]) AS u(st, dy, su, ex)
                 ON CONFLICT (store_id, day) DO UPDATE
                 SET subscribed = d.subscribed + excluded.subscribed, expired = d.expired + excluded.expired"
            ),
            &[&st, &day, &su, &ex],
        )
        .await
        .map_err(pg("upsert store days"))?;
    }
    Ok(())
}

/// Upserts the batch's campaign patches, merging each into its row by the
/// rules of [`crate::facts::CampaignPatch::merge`]: the earliest creation
/// (ties: the byte-wise smaller title), the latest schedule (compared as
/// (occurred_at, send_at, throttle) with no throttle lowest), the earliest
/// cancel and launch. Idempotent and order-independent.
async fn write_campaigns(
    tx: &Transaction<'_>,
    s: &str,
    staged: &Staged,
) -> Result<(), AnalyticsError> {
    if staged.campaigns.is_empty() {
        return Ok(());
    }
    let (keys, patches): (Vec<_>, Vec<_>) = staged.campaigns.iter().unzip();
    let st: Vec<&str> = keys.iter().map(|k| k.store_id.as_str()).collect();
    let ca: Vec<&str> = keys.iter().map(|k| k.campaign_id.as_str()).collect();
    let title: Vec<Option<&str>> = patches
        .iter()
        .map(|p| p.created.as_ref().map(|c| c.1.as_str()))
        .collect();
    let created: Vec<Option<i64>> = patches
        .iter()
        .map(|p| p.created.as_ref().map(|c| c.0))
        .collect();
    let sched_at: Vec<Option<i64>> = patches
        .iter()
        .map(|p| p.scheduled.map(|x| x.occurred_at))
        .collect();
    let send_at: Vec<Option<i64>> = patches
        .iter()
        .map(|p| p.scheduled.map(|x| x.send_at))
        .collect();
    let throttle: Vec<Option<i32>> = patches
        .iter()
        .map(|p| p.scheduled.and_then(|x| x.throttle_per_minute))
        .collect();
    let cancelled: Vec<Option<i64>> = patches.iter().map(|p| p.cancelled_at).collect();
    let launched: Vec<Option<i64>> = patches.iter().map(|p| p.launched_at).collect();
    let newer_created = "excluded.created_at IS NOT NULL AND (c.created_at IS NULL
        OR (excluded.created_at, excluded.title COLLATE \"C\") < (c.created_at, c.title COLLATE \"C\"))";
    let later_schedule = "excluded.schedule_occurred_at IS NOT NULL AND (c.schedule_occurred_at IS NULL
        OR (excluded.schedule_occurred_at, excluded.scheduled_at, excluded.throttle_per_minute IS NOT NULL, coalesce(excluded.throttle_per_minute, 0))
         > (c.schedule_occurred_at, c.scheduled_at, c.throttle_per_minute IS NOT NULL, coalesce(c.throttle_per_minute, 0)))";
    tx.execute(
        &format!(
            "INSERT INTO {s}.campaigns AS c (store_id, campaign_id, title, created_at, schedule_occurred_at,
                scheduled_at, throttle_per_minute, cancelled_at, launched_at)
             SELECT st, ca, ti, timestamptz 'epoch' + cr {MS}, timestamptz 'epoch' + so {MS},
                timestamptz 'epoch' + sa {MS}, th, timestamptz 'epoch' + cx {MS}, timestamptz 'epoch' + la {MS}
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::int[], $8::bigint[], $9::bigint[])
                AS u(st, ca, ti, cr, so, sa, th, cx, la)
             ON CONFLICT (store_id, campaign_id) DO UPDATE SET
                title = CASE WHEN {newer_created} THEN excluded.title ELSE c.title END,
                created_at = CASE WHEN {newer_created} THEN excluded.created_at ELSE c.created_at END,
                schedule_occurred_at = CASE WHEN {later_schedule} THEN excluded.schedule_occurred_at ELSE c.schedule_occurred_at END,
                scheduled_at = CASE WHEN {later_schedule} THEN excluded.scheduled_at ELSE c.scheduled_at END,
                throttle_per_minute = CASE WHEN {later_schedule} THEN excluded.throttle_per_minute ELSE c.throttle_per_minute END,
                cancelled_at = LEAST(c.cancelled_at, excluded.cancelled_at),
                launched_at = LEAST(c.launched_at, excluded.launched_at)"
        ),
        &[
            &st, &ca, &title, &created, &sched_at, &send_at, &throttle, &cancelled, &launched,
        ],
    )
    .await
    .map_err(pg("upsert campaigns"))?;
    Ok(())
}
