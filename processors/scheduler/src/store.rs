//! Postgres (schema `scheduler` by default): the schedules, the positions
//! read in each input topic, and the lock that elects the active instance.
//!
//! Tables:
//! - `schedules(store_id, campaign_id, state, send_at_ms, …)`: one row per
//!   campaign ever scheduled, cancelled or launched (primary key
//!   `(store_id, campaign_id)`: ids are unique per store only); partial
//!   index on `send_at_ms` of the pending ones, which the timer reads.
//!   A launched row keeps its launch's event id, time and lateness.
//! - `offsets(topic, partition, next_offset)`: how far each input topic
//!   (`campaign.scheduled`, `.cancelled`, `.launched`) is applied, written
//!   in the same transaction as the rows those records changed.
//! - `migrations(version)`.

use pushflow_runtime::kafka::outbox::Part;
use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::postgres::{self, pg, Migration, OffsetsTable, StoredPosition};
use std::collections::HashMap;
use tokio_postgres::{Client, Transaction};

use crate::schedule::{CampaignKey, Launch, Schedule, State};
use crate::SchedulerError;

pub use pushflow_runtime::postgres::connect;

fn migrations(s: &str) -> Vec<Migration> {
    vec![Migration {
        version: 1,
        sql: format!(
            "CREATE TABLE {s}.schedules (
                store_id text NOT NULL, campaign_id text NOT NULL,
                state text NOT NULL CHECK (state IN ('pending', 'cancelled', 'launched')),
                send_at_ms bigint, throttle_per_minute integer,
                version text, scheduled_at_ms bigint, cancelled_at_ms bigint,
                launch_event_id text, launched_at_ms bigint, lateness_ms bigint, launched_by text,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (store_id, campaign_id));
             CREATE INDEX schedules_pending ON {s}.schedules (send_at_ms) WHERE state = 'pending';
             {offsets}",
            offsets = OffsetsTable::new(s).create_sql()
        ),
    }]
}

/// Creates the schema and applies missing migrations, under an advisory
/// lock so that two instances starting at once apply each exactly once
/// ([`pushflow_runtime::postgres::migrate`]).
pub async fn migrate(client: &mut Client, schema: &str) -> Result<(), SchedulerError> {
    Ok(postgres::migrate(client, schema, &migrations(schema))
        .await
        .map(drop)?)
}

/// Tries to become the active instance: a session advisory lock, held
/// until this connection closes (a crashed instance's connection closes,
/// and the lock with it).
pub async fn try_lead(client: &Client, schema: &str) -> Result<bool, SchedulerError> {
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('pushflow.scheduler.active.' || $1))",
            &[&schema],
        )
        .await
        .map_err(pg("try the active-instance lock"))?;
    Ok(row.get(0))
}

/// The stored next offsets of the input topics (keyed as the outbox's
/// [`Tail`](pushflow_runtime::kafka::outbox::Tail) reads them).
pub async fn load_offsets(
    client: &Client,
    schema: &str,
) -> Result<HashMap<Part, i64>, SchedulerError> {
    let stored = OffsetsTable::new(schema).load_all(client).await?;
    Ok(stored
        .into_iter()
        .map(|(p, s)| ((p.topic, p.partition), s.next_offset))
        .collect())
}

/// Stores next offsets (never moving one back).
pub async fn save_offsets(
    tx: &Transaction<'_>,
    schema: &str,
    offsets: &HashMap<Part, i64>,
) -> Result<(), SchedulerError> {
    let keys: Vec<(PartitionKey, StoredPosition)> = offsets
        .iter()
        .map(|(part, next)| {
            let stored = StoredPosition {
                next_offset: *next,
                watermark_ms: None,
            };
            (PartitionKey::from(part), stored)
        })
        .collect();
    let positions = keys.iter().map(|(p, s)| (p, *s));
    OffsetsTable::new(schema).save(tx, positions).await?;
    Ok(())
}

const COLUMNS: &str = "store_id, campaign_id, state, send_at_ms, throttle_per_minute, version, \
     scheduled_at_ms, cancelled_at_ms, launch_event_id, launched_at_ms, lateness_ms, launched_by";

fn schedule_of(r: &tokio_postgres::Row) -> (CampaignKey, Schedule) {
    let launch = r.get::<_, Option<String>>(8).map(|event_id| Launch {
        event_id,
        at: r.get::<_, Option<i64>>(9).unwrap_or_default(),
        lateness_ms: r.get(10),
        by_scheduler: r.get::<_, Option<String>>(11).as_deref() == Some("scheduler"),
    });
    (
        CampaignKey {
            store_id: r.get(0),
            campaign_id: r.get(1),
        },
        Schedule {
            state: State::parse(r.get(2)),
            send_at: r.get(3),
            throttle_per_minute: r.get(4),
            version: r.get(5),
            scheduled_at: r.get(6),
            cancelled_at: r.get(7),
            launch,
        },
    )
}

/// The rows of `keys`, locked for this transaction.
pub async fn lock_rows(
    tx: &Transaction<'_>,
    schema: &str,
    keys: &[CampaignKey],
) -> Result<HashMap<CampaignKey, Schedule>, SchedulerError> {
    let stores: Vec<&str> = keys.iter().map(|k| k.store_id.as_str()).collect();
    let campaigns: Vec<&str> = keys.iter().map(|k| k.campaign_id.as_str()).collect();
    let rows = tx
        .query(
            &format!(
                "SELECT {COLUMNS} FROM {schema}.schedules s
                 JOIN unnest($1::text[], $2::text[]) AS k(st, ca) ON s.store_id = k.st AND s.campaign_id = k.ca
                 ORDER BY s.store_id, s.campaign_id
                 FOR UPDATE OF s"
            ),
            &[&stores, &campaigns],
        )
        .await
        .map_err(pg("lock schedules"))?;
    Ok(rows.iter().map(schedule_of).collect())
}

/// Writes `rows` (insert or replace).
pub async fn save_rows(
    tx: &Transaction<'_>,
    schema: &str,
    rows: &[(CampaignKey, Schedule)],
) -> Result<(), SchedulerError> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&(CampaignKey, Schedule)) -> Option<String>| -> Vec<Option<String>> {
        rows.iter().map(f).collect()
    };
    let stores = col(&|r| Some(r.0.store_id.clone()));
    let campaigns = col(&|r| Some(r.0.campaign_id.clone()));
    let states = col(&|r| Some(r.1.state.as_str().to_string()));
    let versions = col(&|r| r.1.version.clone());
    let launch_ids = col(&|r| r.1.launch.as_ref().map(|l| l.event_id.clone()));
    let launched_by = col(&|r| {
        r.1.launch.as_ref().map(|l| {
            if l.by_scheduler {
                "scheduler".to_string()
            } else {
                "elsewhere".to_string()
            }
        })
    });
    let send_at: Vec<Option<i64>> = rows.iter().map(|r| r.1.send_at).collect();
    let throttle: Vec<Option<i32>> = rows.iter().map(|r| r.1.throttle_per_minute).collect();
    let scheduled_at: Vec<Option<i64>> = rows.iter().map(|r| r.1.scheduled_at).collect();
    let cancelled_at: Vec<Option<i64>> = rows.iter().map(|r| r.1.cancelled_at).collect();
    let launched_at: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.1.launch.as_ref().map(|l| l.at))
        .collect();
    let lateness: Vec<Option<i64>> = rows
        .iter()
        .map(|r| r.1.launch.as_ref().and_then(|l| l.lateness_ms))
        .collect();
    tx.execute(
        &format!(
            "INSERT INTO {schema}.schedules AS s ({COLUMNS})
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[], $6::text[],
                                  $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[], $12::text[])
             ON CONFLICT (store_id, campaign_id) DO UPDATE SET
               state = excluded.state, send_at_ms = excluded.send_at_ms,
               throttle_per_minute = excluded.throttle_per_minute, version = excluded.version,
               scheduled_at_ms = excluded.scheduled_at_ms, cancelled_at_ms = excluded.cancelled_at_ms,
               launch_event_id = excluded.launch_event_id, launched_at_ms = excluded.launched_at_ms,
               lateness_ms = excluded.lateness_ms, launched_by = excluded.launched_by, updated_at = now()"
        ),
        &[
            &stores,
            &campaigns,
            &states,
            &send_at,
            &throttle,
            &versions,
            &scheduled_at,
            &cancelled_at,
            &launch_ids,
            &launched_at,
            &lateness,
            &launched_by,
        ],
    )
    .await
    .map_err(pg("save schedules"))?;
    Ok(())
}

/// The earliest pending `send_at` and how many are pending.
pub async fn next_due(client: &Client, schema: &str) -> Result<(Option<i64>, i64), SchedulerError> {
    let r = client
        .query_one(
            &format!(
                "SELECT min(send_at_ms), count(*) FROM {schema}.schedules WHERE state = 'pending'"
            ),
            &[],
        )
        .await
        .map_err(pg("read the next send_at"))?;
    Ok((r.get(0), r.get(1)))
}

/// A pending schedule whose `send_at` has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The campaign.
    pub key: CampaignKey,
    /// When it was due.
    pub send_at: i64,
    /// Its throttle.
    pub throttle_per_minute: Option<i32>,
    /// The schedule's version.
    pub version: String,
}

/// Up to `limit` pending schedules due by `now`, earliest first, locked
/// for this transaction.
pub async fn lock_due(
    tx: &Transaction<'_>,
    schema: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<Due>, SchedulerError> {
    let rows = tx
        .query(
            &format!(
                "SELECT store_id, campaign_id, send_at_ms, throttle_per_minute, version
                 FROM {schema}.schedules
                 WHERE state = 'pending' AND send_at_ms <= $1
                 ORDER BY send_at_ms, store_id, campaign_id LIMIT $2
                 FOR UPDATE"
            ),
            &[&now, &limit],
        )
        .await
        .map_err(pg("read due schedules"))?;
    Ok(rows
        .iter()
        .map(|r| Due {
            key: CampaignKey {
                store_id: r.get(0),
                campaign_id: r.get(1),
            },
            send_at: r.get(2),
            throttle_per_minute: r.get(3),
            version: r.get::<_, Option<String>>(4).unwrap_or_default(),
        })
        .collect())
}

/// Marks fired schedules launched: (due, launch event id), fired at `at`.
pub async fn mark_fired(
    tx: &Transaction<'_>,
    schema: &str,
    fired: &[(Due, String)],
    at: i64,
) -> Result<(), SchedulerError> {
    let stores: Vec<&str> = fired.iter().map(|f| f.0.key.store_id.as_str()).collect();
    let campaigns: Vec<&str> = fired.iter().map(|f| f.0.key.campaign_id.as_str()).collect();
    let ids: Vec<&str> = fired.iter().map(|f| f.1.as_str()).collect();
    let lateness: Vec<i64> = fired.iter().map(|f| at - f.0.send_at).collect();
    tx.execute(
        &format!(
            "UPDATE {schema}.schedules s SET state = 'launched', launch_event_id = u.id,
                launched_at_ms = $5, lateness_ms = u.late, launched_by = 'scheduler', updated_at = now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS u(st, ca, id, late)
             WHERE s.store_id = u.st AND s.campaign_id = u.ca"
        ),
        &[&stores, &campaigns, &ids, &lateness, &at],
    )
    .await
    .map_err(pg("mark schedules launched"))?;
    Ok(())
}

/// The row of one campaign (tools and tests).
pub async fn schedule(
    client: &Client,
    schema: &str,
    key: &CampaignKey,
) -> Result<Option<Schedule>, SchedulerError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM {schema}.schedules WHERE store_id = $1 AND campaign_id = $2"
            ),
            &[&key.store_id, &key.campaign_id],
        )
        .await
        .map_err(pg("read a schedule"))?;
    Ok(row.as_ref().map(|r| schedule_of(r).1))
}
