//! `<schema>.dedup_log`: the changelog of the in-memory dedup state
//! ([`crate::dedup`]), one row per committed transaction and partition.
//!
//! Guarantee: rows are written in the SAME transaction as the deltas and
//! the (fenced) offsets of their batch, so the log of a partition always
//! holds exactly the keys first seen below its stored next offset, minus
//! rows deleted once every key in them was past the horizon. A row:
//! `(topic, partition, first_offset, next_offset, max_record_ms, keys,
//! key_secs)`, `keys` the batch's NEW keys as concatenated 16-byte keys
//! and `key_secs` their record times (4 bytes each, big-endian seconds,
//! rounded up); `max_record_ms` is the partition's max record time after
//! the batch, so it never decreases along the offsets and the rows past
//! the horizon are always a prefix. No row per event.
//!
//! [`load`] reads a partition's stored position and its rows within the
//! horizon in ONE repeatable-read snapshot, so the state loaded is that of
//! exactly the stored offset.

use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::postgres::{pg, OffsetsTable};
use std::collections::HashMap;
use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::dedup::{alive, Dedup, Key, LogRow};
use crate::tally::{Loaded, PartitionPosition, Staged};
use crate::AggregateError;

/// The migration creating the table (keys are random: no compression).
pub fn create_sql(s: &str) -> String {
    format!(
        "CREATE TABLE {s}.dedup_log (topic text COLLATE \"C\" NOT NULL, partition int NOT NULL,
            first_offset bigint NOT NULL, next_offset bigint NOT NULL, max_record_ms bigint NOT NULL,
            keys bytea NOT NULL, key_secs bytea NOT NULL,
            PRIMARY KEY (topic, partition, next_offset));
         ALTER TABLE {s}.dedup_log ALTER COLUMN keys SET STORAGE EXTERNAL,
            ALTER COLUMN key_secs SET STORAGE EXTERNAL;
         COMMENT ON TABLE {s}.dedup_log IS 'aggregate dedup changelog: per committed transaction and partition the (notification_id, kind) keys first seen (128-bit truncated SHA-256 of kind byte + id) and their record times; rows past pings.token_ttl + pings.clock_skew are deleted';
         COMMENT ON TABLE {s}.seen IS 'unused since migration 5 (dedup_log replaced it); kept for a manual look-up of pairs counted before the upgrade';"
    )
}

/// Writes the changelog rows of `staged` (partitions whose position moved)
/// and deletes the rows it found past the horizon, in `tx`.
pub async fn write(tx: &Transaction<'_>, s: &str, staged: &Staged) -> Result<(), AggregateError> {
    let (mut topics, mut parts, mut first, mut next, mut rec, mut keys, mut secs) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut p_topics, mut p_parts, mut p_upto) = (Vec::new(), Vec::new(), Vec::new());
    for ((part, at), slot) in staged
        .parts
        .iter()
        .zip(&staged.positions)
        .zip(&staged.slots)
    {
        if let Some(upto) = slot.prune_upto {
            p_topics.push(part.topic.as_str());
            p_parts.push(part.partition);
            p_upto.push(upto);
        }
        if at.next_offset <= slot.first_offset {
            continue;
        }
        let mut k = Vec::with_capacity(16 * slot.new_keys.len());
        let mut t = Vec::with_capacity(4 * slot.new_keys.len());
        for (key, s) in &slot.new_keys {
            k.extend_from_slice(&key.to_bytes());
            t.extend_from_slice(&s.to_be_bytes());
        }
        topics.push(part.topic.as_str());
        parts.push(part.partition);
        first.push(slot.first_offset);
        next.push(at.next_offset);
        rec.push(slot.record_ms);
        keys.push(k);
        secs.push(t);
    }
    if !p_topics.is_empty() {
        tx.execute(
            &format!(
                "DELETE FROM {s}.dedup_log d USING unnest($1::text[], $2::int[], $3::bigint[]) AS u(t, p, n)
                 WHERE d.topic = u.t AND d.partition = u.p AND d.next_offset <= u.n"
            ),
            &[&p_topics, &p_parts, &p_upto],
        )
        .await
        .map_err(pg("prune the dedup changelog"))?;
    }
    if !topics.is_empty() {
        tx.execute(
            &format!(
                "INSERT INTO {s}.dedup_log (topic, partition, first_offset, next_offset, max_record_ms, keys, key_secs)
                 SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bytea[], $7::bytea[])"
            ),
            &[&topics, &parts, &first, &next, &rec, &keys, &secs],
        )
        .await
        .map_err(pg("write the dedup changelog"))?;
    }
    Ok(())
}

/// The stored position and dedup state of `parts` (absent position: never
/// committed), read in one snapshot: rows below the stored next offset
/// whose max record time is within `horizon_ms` of the partition's, and of
/// them the keys still alive.
pub async fn load(
    client: &mut Client,
    s: &str,
    parts: &[PartitionKey],
    horizon_ms: i64,
) -> Result<HashMap<PartitionKey, Loaded>, AggregateError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg("begin loading partitions"))?;
    let stored = OffsetsTable::with_watermarks(s)
        .load(tx.client(), parts)
        .await?;
    let mut out: HashMap<PartitionKey, Loaded> = parts
        .iter()
        .map(|p| {
            let stored = stored.get(p).map(|st| PartitionPosition {
                next_offset: st.next_offset,
                watermark: st.watermark_ms.unwrap_or(i64::MIN),
            });
            (
                p.clone(),
                Loaded {
                    stored,
                    dedup: Dedup::default(),
                },
            )
        })
        .collect();
    let topics: Vec<&str> = parts.iter().map(|p| p.topic.as_str()).collect();
    let partitions: Vec<i32> = parts.iter().map(|p| p.partition).collect();
    let rows = tx
        .query(
            &format!(
                "WITH u AS (SELECT * FROM unnest($1::text[], $2::int[]) AS u(topic, partition)),
                      top AS (SELECT d.topic, d.partition, max(d.max_record_ms) AS m
                              FROM {s}.dedup_log d JOIN u USING (topic, partition) GROUP BY 1, 2)
                 SELECT d.topic, d.partition, d.next_offset, d.max_record_ms, d.keys, d.key_secs
                 FROM {s}.dedup_log d JOIN top USING (topic, partition)
                 JOIN {s}.offsets o USING (topic, partition)
                 WHERE d.max_record_ms >= top.m - $3 AND d.next_offset <= o.next_offset
                 ORDER BY d.topic, d.partition, d.next_offset"
            ),
            &[&topics, &partitions, &horizon_ms],
        )
        .await
        .map_err(pg("load the dedup changelog"))?;
    tx.commit().await.map_err(pg("end loading partitions"))?;
    // The partitions' max record times first (rows come in offset order).
    let mut now: HashMap<(&str, i32), i64> = HashMap::new();
    for r in &rows {
        let e = now.entry((r.get(0), r.get(1))).or_insert(i64::MIN);
        *e = (*e).max(r.get(3));
    }
    for r in &rows {
        let (topic, partition): (&str, i32) = (r.get(0), r.get(1));
        let Some(loaded) = out.get_mut(&PartitionKey::new(topic, partition)) else {
            continue;
        };
        let now = now[&(topic, partition)];
        let (keys, secs): (&[u8], &[u8]) = (r.get(4), r.get(5));
        for (k, t) in keys.chunks_exact(16).zip(secs.chunks_exact(4)) {
            let t = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
            if alive(t, now, horizon_ms) {
                loaded.dedup.insert(Key::from_bytes(k), t);
            }
        }
        loaded.dedup.logged(LogRow {
            next_offset: r.get(2),
            max_record_ms: r.get(3),
        });
    }
    Ok(out)
}
