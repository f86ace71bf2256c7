//! `<schema>.offsets`: where each input partition of a consumer stands,
//! in the component's own schema. It is the truth of the consumer's
//! position (Kafka's own offset commits are informational).
//!
//! Guarantee: [`OffsetsTable::save`] writes in the caller's transaction, so
//! offsets commit together with what the records below them changed, or
//! not at all; it never moves a stored offset (or watermark) back, so a
//! transaction that commits late cannot undo a later one.
//! [`OffsetsTable::save_expecting`] is the fenced save of a consumer that
//! keeps state of its own beside the offsets (the aggregate's dedup keys):
//! it writes only where the stored position is still the one this instance
//! last loaded or committed, so of two instances that briefly both hold a
//! partition during a rebalance only one can extend its stored position;
//! the other gets [`PgFailure::Fenced`] and must reload.

use std::collections::HashMap;
use tokio_postgres::{Client, Row, Transaction};

use super::{pg, PgError, PgFailure};
use crate::kafka::PartitionKey;

/// A component's `offsets` table: `(topic, partition, next_offset)`, and
/// `watermark_ms` (the max event time seen) where the component keeps one.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsTable<'a> {
    schema: &'a str,
    watermarks: bool,
}

/// One partition's stored position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPosition {
    /// Next offset to read (records below it are in Postgres).
    pub next_offset: i64,
    /// Max event time seen, ms; `None` where the table keeps no watermark.
    pub watermark_ms: Option<i64>,
}

impl<'a> OffsetsTable<'a> {
    /// `<schema>.offsets (topic, partition, next_offset)`. `schema` must be
    /// a plain identifier (it is spliced into the SQL).
    pub fn new(schema: &'a str) -> OffsetsTable<'a> {
        OffsetsTable {
            schema,
            watermarks: false,
        }
    }

    /// `<schema>.offsets (topic, partition, next_offset, watermark_ms)`.
    pub fn with_watermarks(schema: &'a str) -> OffsetsTable<'a> {
        OffsetsTable {
            schema,
            watermarks: true,
        }
    }

    /// The statement creating the table (for a component's first
    /// migration).
    pub fn create_sql(&self) -> String {
        let watermark = match self.watermarks {
            true => " watermark_ms bigint,",
            false => "",
        };
        format!(
            "CREATE TABLE {}.offsets (topic text NOT NULL, partition int NOT NULL,
                next_offset bigint NOT NULL,{watermark} updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (topic, partition));",
            self.schema
        )
    }

    fn columns(&self) -> &'static str {
        match self.watermarks {
            true => "o.topic, o.partition, o.next_offset, o.watermark_ms",
            false => "o.topic, o.partition, o.next_offset, NULL::bigint",
        }
    }

    fn read(rows: &[Row]) -> HashMap<PartitionKey, StoredPosition> {
        rows.iter()
            .map(|r| {
                let position = StoredPosition {
                    next_offset: r.get(2),
                    watermark_ms: r.get(3),
                };
                (PartitionKey::new(r.get::<_, String>(0), r.get(1)), position)
            })
            .collect()
    }

    /// The stored positions of `parts` (absent: never committed).
    pub async fn load(
        &self,
        client: &Client,
        parts: &[PartitionKey],
    ) -> Result<HashMap<PartitionKey, StoredPosition>, PgError> {
        let topics: Vec<&str> = parts.iter().map(|p| p.topic.as_str()).collect();
        let partitions: Vec<i32> = parts.iter().map(|p| p.partition).collect();
        let rows = client
            .query(
                &format!(
                    "SELECT {} FROM {}.offsets o
                     JOIN unnest($1::text[], $2::int[]) AS u(topic, partition) USING (topic, partition)",
                    self.columns(),
                    self.schema
                ),
                &[&topics, &partitions],
            )
            .await
            .map_err(pg("load stored offsets"))?;
        Ok(Self::read(&rows))
    }

    /// The stored next offsets of `parts` (absent: never committed), for a
    /// table without watermarks.
    pub async fn load_next(
        &self,
        client: &Client,
        parts: &[PartitionKey],
    ) -> Result<HashMap<PartitionKey, i64>, PgError> {
        let stored = self.load(client, parts).await?;
        Ok(stored
            .into_iter()
            .map(|(p, s)| (p, s.next_offset))
            .collect())
    }

    /// Every stored position.
    pub async fn load_all(
        &self,
        client: &Client,
    ) -> Result<HashMap<PartitionKey, StoredPosition>, PgError> {
        let rows = client
            .query(
                &format!("SELECT {} FROM {}.offsets o", self.columns(), self.schema),
                &[],
            )
            .await
            .map_err(pg("load stored offsets"))?;
        Ok(Self::read(&rows))
    }

    /// Stores `positions` in `tx`, fenced: each `(partition, position,
    /// expected)` is written only if the stored next offset is `expected`
    /// (`None`: no row yet, inserted only if still absent). If any
    /// partition's row did not match, returns [`PgFailure::Fenced`] naming
    /// them; the caller must then roll back `tx` (nothing of it may
    /// commit) and reload those partitions. Watermarks never move back.
    /// Two instances saving the same partition at once serialise on its
    /// row lock; the second then sees the first's offset and is fenced.
    pub async fn save_expecting<'k>(
        &self,
        tx: &Transaction<'_>,
        positions: impl IntoIterator<Item = (&'k PartitionKey, StoredPosition, Option<i64>)>,
    ) -> Result<(), PgError> {
        let (mut upd, mut ins): (Vec<_>, Vec<_>) = (Vec::new(), Vec::new());
        for (p, s, expected) in positions {
            match expected {
                Some(e) => upd.push((p, s, e)),
                None => ins.push((p, s)),
            }
        }
        let s = self.schema;
        let watermark = match self.watermarks {
            true => ", watermark_ms = GREATEST(o.watermark_ms, u.w)",
            false => "",
        };
        let mut matched: Vec<PartitionKey> = Vec::with_capacity(upd.len() + ins.len());
        if !upd.is_empty() {
            let topics: Vec<&str> = upd.iter().map(|u| u.0.topic.as_str()).collect();
            let partitions: Vec<i32> = upd.iter().map(|u| u.0.partition).collect();
            let next: Vec<i64> = upd.iter().map(|u| u.1.next_offset).collect();
            let marks: Vec<i64> = upd
                .iter()
                .map(|u| u.1.watermark_ms.unwrap_or(i64::MIN))
                .collect();
            let expected: Vec<i64> = upd.iter().map(|u| u.2).collect();
            let rows = tx
                .query(
                    &format!(
                        "UPDATE {s}.offsets AS o
                         SET next_offset = GREATEST(o.next_offset, u.n){watermark}, updated_at = now()
                         FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[]) AS u(topic, partition, n, w, e)
                         WHERE o.topic = u.topic AND o.partition = u.partition AND o.next_offset = u.e
                         RETURNING o.topic, o.partition"
                    ),
                    &[&topics, &partitions, &next, &marks, &expected],
                )
                .await
                .map_err(pg("store offsets (fenced)"))?;
            matched.extend(
                rows.iter()
                    .map(|r| PartitionKey::new(r.get::<_, String>(0), r.get(1))),
            );
        }
        if !ins.is_empty() {
            let topics: Vec<&str> = ins.iter().map(|u| u.0.topic.as_str()).collect();
            let partitions: Vec<i32> = ins.iter().map(|u| u.0.partition).collect();
            let next: Vec<i64> = ins.iter().map(|u| u.1.next_offset).collect();
            let marks: Vec<i64> = ins
                .iter()
                .map(|u| u.1.watermark_ms.unwrap_or(i64::MIN))
                .collect();
            let sql = match self.watermarks {
                true => format!(
                    "INSERT INTO {s}.offsets (topic, partition, next_offset, watermark_ms)
                     SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[])
                     ON CONFLICT (topic, partition) DO NOTHING RETURNING topic, partition"
                ),
                false => format!(
                    "INSERT INTO {s}.offsets (topic, partition, next_offset)
                     SELECT t, p, n FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[]) AS u(t, p, n, w)
                     ON CONFLICT (topic, partition) DO NOTHING RETURNING topic, partition"
                ),
            };
            let rows = tx
                .query(&sql, &[&topics, &partitions, &next, &marks])
                .await
                .map_err(pg("store offsets (fenced, first commit)"))?;
            matched.extend(
                rows.iter()
                    .map(|r| PartitionKey::new(r.get::<_, String>(0), r.get(1))),
            );
        }
        let matched: std::collections::HashSet<PartitionKey> = matched.into_iter().collect();
        let fenced: Vec<PartitionKey> = upd
            .iter()
            .map(|u| u.0)
            .chain(ins.iter().map(|u| u.0))
            .filter(|p| !matched.contains(*p))
            .cloned()
            .collect();
        if fenced.is_empty() {
            return Ok(());
        }
        Err(PgError::new(
            "store offsets (fenced)",
            PgFailure::Fenced(fenced),
        ))
    }

    /// Stores `positions` in `tx`, never moving an offset or a watermark
    /// back (a missing watermark is stored as `i64::MIN`: none seen).
    pub async fn save<'k>(
        &self,
        tx: &Transaction<'_>,
        positions: impl IntoIterator<Item = (&'k PartitionKey, StoredPosition)>,
    ) -> Result<(), PgError> {
        let (mut topics, mut partitions, mut next, mut watermarks) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (p, s) in positions {
            topics.push(p.topic.as_str());
            partitions.push(p.partition);
            next.push(s.next_offset);
            watermarks.push(s.watermark_ms.unwrap_or(i64::MIN));
        }
        if topics.is_empty() {
            return Ok(());
        }
        let s = self.schema;
        let written = match self.watermarks {
            true => {
                tx.execute(
                    &format!(
                        "INSERT INTO {s}.offsets AS o (topic, partition, next_offset, watermark_ms)
                         SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[])
                         ON CONFLICT (topic, partition) DO UPDATE
                         SET next_offset = GREATEST(o.next_offset, excluded.next_offset),
                             watermark_ms = GREATEST(o.watermark_ms, excluded.watermark_ms),
                             updated_at = now()"
                    ),
                    &[&topics, &partitions, &next, &watermarks],
                )
                .await
            }
            false => {
                tx.execute(
                    &format!(
                        "INSERT INTO {s}.offsets AS o (topic, partition, next_offset)
                         SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
                         ON CONFLICT (topic, partition) DO UPDATE
                         SET next_offset = GREATEST(o.next_offset, excluded.next_offset), updated_at = now()"
                    ),
                    &[&topics, &partitions, &next],
                )
                .await
            }
        };
        written.map_err(pg("store offsets"))?;
        Ok(())
    }
}
