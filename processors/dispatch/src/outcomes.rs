//! One row per decided notification (`dispatch.outcomes`), checked before
//! sending. Each row names the batch record whose transaction publishes its
//! events; rows older than that scheme carry `published` instead.

use pushflow_runtime::postgres::pg;
use std::collections::HashMap;

use crate::store::Store;
use crate::DispatchError;

/// A decided notification (`kind` = `dispatched` or a failure kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    /// Deterministic notification id.
    pub notification_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Subscriber.
    pub subscriber_id: String,
    /// Store.
    pub store_id: String,
    /// `dispatched` or a `FailureKind` symbol.
    pub kind: String,
    /// Failure retryable.
    pub retryable: bool,
    /// HTTP status.
    pub status_code: Option<i32>,
    /// Reason ("" when dispatched).
    pub error: String,
    /// Decision time, ms.
    pub occurred_at: i64,
    /// Rows from before transactions: whether its events were acknowledged.
    pub published: bool,
    /// Partition of the batch record whose transaction publishes the
    /// events (-1: a row from before transactions).
    pub batch_partition: i32,
    /// Offset of that batch record.
    pub batch_offset: i64,
}

impl Store {
    /// Outcomes already decided among `ids`: one primary-key probe per id.
    ///
    /// Written as a lateral probe, not `notification_id = ANY($1)`: while
    /// the table is young (no statistics, up to ~100 k rows) the planner
    /// prices 500 index probes above a sequential scan of the whole table
    /// (`random_page_cost` 4): `EXPLAIN ANALYZE` of 500 ids at 25 k rows
    /// took 4.2 ms that way and 1.3 ms this way; over a 200 k bench
    /// (`pg_stat_statements`) 8–11 ms a batch became 2.1–2.7 ms.
    pub async fn outcomes(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, OutcomeRow>, DispatchError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT o.notification_id, o.campaign_id, o.subscriber_id, o.store_id, o.kind, o.retryable, o.status_code, o.error,
                        o.occurred_at, o.published, o.batch_partition, o.batch_offset
                 FROM unnest($1::text[]) AS i(id)
                 CROSS JOIN LATERAL (SELECT * FROM dispatch.outcomes WHERE notification_id = i.id LIMIT 1) AS o",
                &[&ids],
            )
            .await
            .map_err(pg("read decided outcomes"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let o = OutcomeRow {
                    notification_id: r.get(0),
                    campaign_id: r.get(1),
                    subscriber_id: r.get(2),
                    store_id: r.get(3),
                    kind: r.get(4),
                    retryable: r.get(5),
                    status_code: r.get(6),
                    error: r.get(7),
                    occurred_at: r.get(8),
                    published: r.get(9),
                    batch_partition: r.get(10),
                    batch_offset: r.get(11),
                };
                (o.notification_id.clone(), o)
            })
            .collect())
    }

    /// Records decided outcomes; an existing row wins.
    pub async fn record(&self, rows: &[OutcomeRow]) -> Result<(), DispatchError> {
        let v = |f: fn(&OutcomeRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        let retryable: Vec<bool> = rows.iter().map(|r| r.retryable).collect();
        let status: Vec<Option<i32>> = rows.iter().map(|r| r.status_code).collect();
        let at: Vec<i64> = rows.iter().map(|r| r.occurred_at).collect();
        let partition: Vec<i32> = rows.iter().map(|r| r.batch_partition).collect();
        let offset: Vec<i64> = rows.iter().map(|r| r.batch_offset).collect();
        self.client()
            .await?
            .execute(
                "INSERT INTO dispatch.outcomes (notification_id, campaign_id, subscriber_id, store_id, kind, retryable, status_code, error, occurred_at, batch_partition, batch_offset)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], $7::int[], $8::text[], $9::bigint[], $10::int[], $11::bigint[])
                 ON CONFLICT (notification_id) DO NOTHING",
                &[
                    &v(|r| &r.notification_id),
                    &v(|r| &r.campaign_id),
                    &v(|r| &r.subscriber_id),
                    &v(|r| &r.store_id),
                    &v(|r| &r.kind),
                    &retryable,
                    &status,
                    &v(|r| &r.error),
                    &at,
                    &partition,
                    &offset,
                ],
            )
            .await
            .map_err(pg("record outcomes"))?;
        Ok(())
    }

    /// Hands outcomes whose transaction never committed to the batch record
    /// at (`partition`, `offset`), whose transaction publishes them now.
    pub async fn rebind(
        &self,
        ids: &[String],
        partition: i32,
        offset: i64,
    ) -> Result<(), DispatchError> {
        self.client()
            .await?
            .execute(
                "UPDATE dispatch.outcomes SET batch_partition = $2, batch_offset = $3 WHERE notification_id = ANY($1)",
                &[&ids, &partition, &offset],
            )
            .await
            .map_err(pg("rebind outcomes"))?;
        Ok(())
    }
}
