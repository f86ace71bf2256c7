//! Postgres: the database and schema, versioned migrations, and the one
//! transaction per batch (per lane of partitions) that makes a staged batch
//! durable.
//!
//! Tables (schema `aggregate` by default, any plain schema for replays):
//! - `dedup_log`: the changelog of the in-memory dedup state, one row per
//!   committed transaction and partition ([`crate::changelog`], migration 5).
//! - `seen(notification_id, kind)`: the pairs counted before migration 5,
//!   which replaced it by `dedup_log`; kept, no longer read or written.
//! - `window_stats(store_id, campaign_id, window_size, window_start,
//!   delivered, clicked)`: primary key starts with `store_id` (the Citus
//!   distribution column); index `(store_id, window_size, window_start)`
//!   serves the dashboard's "this store, this window size, this time
//!   range" query.
//! - `monthly_totals(store_id, month, impressions, clicks)`, read through
//!   the view `billing_monthly_impressions` (in `public` for the live schema).
//! - `late_events`: one row per (ping, window size) it was too late for.
//! - `offsets(topic, partition, next_offset, watermark_ms)`: the consumer
//!   position that is truth (Kafka's own commits are informational).
//! - `migrations(version)`: applied migrations.

use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::postgres::{self, pg, Migration, OffsetsTable, StoredPosition};
use std::collections::HashMap;
use tokio_postgres::Client;

use crate::config::Window;
use crate::tally::{Deltas, Loaded, Staged};
use crate::AggregateError;

pub use pushflow_runtime::postgres::connect;

/// The aggregate's `offsets` table, which keeps each partition's watermark.
fn offsets(schema: &str) -> OffsetsTable<'_> {
    OffsetsTable::with_watermarks(schema)
}

fn migrations(s: &str) -> Vec<Migration> {
    let view_schema = if s == "aggregate" { "public" } else { s };
    vec![
        Migration {
            version: 1,
            sql: format!(
                "CREATE TABLE {s}.seen (notification_id text NOT NULL, kind smallint NOT NULL,
                    PRIMARY KEY (notification_id, kind)) WITH (fillfactor = 100);
                 CREATE TABLE {s}.window_stats (store_id text NOT NULL, campaign_id text NOT NULL,
                    window_size interval NOT NULL, window_start timestamptz NOT NULL,
                    delivered bigint NOT NULL DEFAULT 0, clicked bigint NOT NULL DEFAULT 0,
                    PRIMARY KEY (store_id, campaign_id, window_size, window_start));
                 CREATE INDEX window_stats_store_time ON {s}.window_stats (store_id, window_size, window_start);
                 CREATE TABLE {s}.monthly_totals (store_id text NOT NULL, month date NOT NULL,
                    impressions bigint NOT NULL DEFAULT 0, clicks bigint NOT NULL DEFAULT 0,
                    PRIMARY KEY (store_id, month));
                 CREATE TABLE {s}.late_events (store_id text NOT NULL, campaign_id text NOT NULL,
                    notification_id text NOT NULL, kind smallint NOT NULL, occurred_at timestamptz NOT NULL,
                    window_size interval NOT NULL, topic text NOT NULL, partition int NOT NULL,
                    kafka_offset bigint NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (store_id, notification_id, kind, window_size));
                 CREATE TABLE {s}.offsets (topic text NOT NULL, partition int NOT NULL,
                    next_offset bigint NOT NULL, watermark_ms bigint NOT NULL, resume_ts_ms bigint NOT NULL DEFAULT 0,
                    updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (topic, partition));"
            ),
        },
        Migration {
            version: 2,
            sql: format!(
                "CREATE OR REPLACE VIEW {view_schema}.billing_monthly_impressions AS
                    SELECT store_id::text AS store_id, month::date AS month,
                           impressions::bigint AS impressions, clicks::bigint AS clicks
                    FROM {s}.monthly_totals;"
            ),
        },
        Migration {
            version: 3,
            // Byte-order comparison for the pair key: ids are opaque, and
            // the locale's collation made every index comparison of the
            // per-event `seen` insert several times dearer.
            sql: format!(
                "ALTER TABLE {s}.seen ALTER COLUMN notification_id TYPE text COLLATE \"C\";"
            ),
        },
        Migration {
            version: 4,
            // The consumer resumes from `next_offset` itself; the broker
            // timestamp once kept to find a record-batch start is unused.
            sql: format!("ALTER TABLE {s}.offsets DROP COLUMN IF EXISTS resume_ts_ms;"),
        },
        Migration {
            version: 5,
            // The dedup state moves to memory with a changelog; `seen`
            // stays (nothing dropped) but is no longer used.
            sql: crate::changelog::create_sql(s),
        },
        Migration {
            version: 6,
            // Room on every page for the next versions of its rows: a
            // window's counts are updated by many transactions, and an
            // update that fits on the page (HOT) writes no index entry.
            sql: format!(
                "ALTER TABLE {s}.window_stats SET (fillfactor = 50);
                 ALTER TABLE {s}.monthly_totals SET (fillfactor = 50);"
            ),
        },
    ]
}

/// Creates the schema and applies missing migrations, under an advisory
/// lock so that two instances starting at once apply each exactly once
/// ([`pushflow_runtime::postgres::migrate`]).
pub async fn migrate(client: &mut Client, schema: &str) -> Result<(), AggregateError> {
    Ok(postgres::migrate(client, schema, &migrations(schema))
        .await
        .map(drop)?)
}

/// Stored positions and dedup state of `parts`, in one snapshot (see
/// [`crate::changelog::load`]).
pub async fn load(
    client: &mut Client,
    schema: &str,
    parts: &[PartitionKey],
    horizon_ms: i64,
) -> Result<HashMap<PartitionKey, Loaded>, AggregateError> {
    crate::changelog::load(client, schema, parts, horizon_ms).await
}

/// What a committed batch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Committed {
    /// Pings counted (first time within the horizon).
    pub counted: u64,
    /// (ping, window) pairs past their grace.
    pub late: u64,
}

/// Makes `staged` durable in ONE transaction: the fenced offsets first (a
/// partition whose stored row moved makes the whole transaction roll back
/// with [`PgFailure::Fenced`](pushflow_runtime::postgres::PgFailure)), then
/// the dedup changelog, window and monthly deltas and late events.
pub async fn commit(
    client: &mut Client,
    schema: &str,
    windows: &[Window],
    staged: &Staged,
) -> Result<Committed, AggregateError> {
    let s = schema;
    let tx = client.transaction().await.map_err(pg("begin batch"))?;
    let positions = staged
        .parts
        .iter()
        .zip(&staged.positions)
        .zip(&staged.slots)
        .map(|((p, at), slot)| {
            let stored = StoredPosition {
                next_offset: at.next_offset,
                watermark_ms: Some(at.watermark),
            };
            (p, stored, slot.expected)
        });
    offsets(s).save_expecting(&tx, positions).await?;
    crate::changelog::write(&tx, s, staged).await?;
    let d = crate::tally::deltas(windows, staged);
    write_deltas(&tx, s, staged, &d).await?;
    tx.commit().await.map_err(pg("commit batch"))?;
    Ok(Committed {
        counted: d.counted,
        late: d.late.len() as u64,
    })
}

async fn write_deltas(
    tx: &tokio_postgres::Transaction<'_>,
    s: &str,
    staged: &Staged,
    d: &Deltas,
) -> Result<(), AggregateError> {
    if !d.windows.is_empty() {
        let keys: Vec<_> = d.windows.keys().collect();
        let st: Vec<&str> = keys.iter().map(|k| k.store_id.as_str()).collect();
        let ca: Vec<&str> = keys.iter().map(|k| k.campaign_id.as_str()).collect();
        let size: Vec<i64> = keys.iter().map(|k| k.size_ms).collect();
        let start: Vec<i64> = keys.iter().map(|k| k.start_ms).collect();
        let dl: Vec<i64> = d.windows.values().map(|c| c.delivered).collect();
        let cl: Vec<i64> = d.windows.values().map(|c| c.clicked).collect();
        tx.execute(
            &format!("INSERT INTO {s}.window_stats AS w (store_id, campaign_id, window_size, window_start, delivered, clicked)
                      SELECT st, ca, sz * interval '1 millisecond', timestamptz 'epoch' + ws * interval '1 millisecond', dl, cl
                      FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS u(st, ca, sz, ws, dl, cl)
                      ON CONFLICT (store_id, campaign_id, window_size, window_start)
                      DO UPDATE SET delivered = w.delivered + excluded.delivered, clicked = w.clicked + excluded.clicked"),
            &[&st, &ca, &size, &start, &dl, &cl],
        )
        .await
        .map_err(pg("upsert window stats"))?;
    }
    if !d.monthly.is_empty() {
        let st: Vec<&str> = d.monthly.keys().map(|k| k.store_id.as_str()).collect();
        let mo: Vec<&str> = d.monthly.keys().map(|k| k.month.as_str()).collect();
        let im: Vec<i64> = d.monthly.values().map(|c| c.delivered).collect();
        let cl: Vec<i64> = d.monthly.values().map(|c| c.clicked).collect();
        tx.execute(
            &format!("INSERT INTO {s}.monthly_totals AS m (store_id, month, impressions, clicks)
                      SELECT st, mo::date, im, cl FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u(st, mo, im, cl)
                      ON CONFLICT (store_id, month)
                      DO UPDATE SET impressions = m.impressions + excluded.impressions, clicks = m.clicks + excluded.clicks"),
            &[&st, &mo, &im, &cl],
        )
        .await
        .map_err(pg("upsert monthly totals"))?;
    }
    if !d.late.is_empty() {
        let rows: Vec<_> = d
            .late
            .iter()
            .map(|l| (&staged.candidates[l.candidate], l.size_ms))
            .collect();
        let st: Vec<&str> = rows.iter().map(|(c, _)| c.ping.store_id.as_str()).collect();
        let ca: Vec<&str> = rows
            .iter()
            .map(|(c, _)| c.ping.campaign_id.as_str())
            .collect();
        let ids: Vec<&str> = rows
            .iter()
            .map(|(c, _)| c.ping.notification_id.as_str())
            .collect();
        let kinds: Vec<i16> = rows.iter().map(|(c, _)| c.ping.kind.code()).collect();
        let at: Vec<i64> = rows.iter().map(|(c, _)| c.ping.occurred_at).collect();
        let sizes: Vec<i64> = rows.iter().map(|(_, s)| *s).collect();
        let topics: Vec<&str> = rows
            .iter()
            .map(|(c, _)| staged.parts[c.part].topic.as_str())
            .collect();
        let parts: Vec<i32> = rows
            .iter()
            .map(|(c, _)| staged.parts[c.part].partition)
            .collect();
        let offsets: Vec<i64> = rows.iter().map(|(c, _)| c.offset).collect();
        tx.execute(
            &format!("INSERT INTO {s}.late_events (store_id, campaign_id, notification_id, kind, occurred_at, window_size, topic, partition, kafka_offset)
                      SELECT st, ca, n, k, timestamptz 'epoch' + t * interval '1 millisecond', sz * interval '1 millisecond', tp, p, o
                      FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::bigint[], $6::bigint[], $7::text[], $8::int[], $9::bigint[])
                        AS u(st, ca, n, k, t, sz, tp, p, o)
                      ON CONFLICT DO NOTHING"),
            &[&st, &ca, &ids, &kinds, &at, &sizes, &topics, &parts, &offsets],
        )
        .await
        .map_err(pg("record late events"))?;
    }
    Ok(())
}
