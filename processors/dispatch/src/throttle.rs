//! Throttled launches: a `campaign.launched` with `throttle_per_minute = N`
//! is sent at no more than N notifications per minute for that campaign,
//! across every dispatch instance and across restarts, without holding
//! other campaigns up.
//!
//! **Guarantee.** Any N consecutive sends of the campaign start at least
//! 60 s + [`GUARD`] apart, so no 60-second window holds more than N of
//! them as long as a send reaches the push service within [`GUARD`] of its
//! start (a retry after a 429 or 5xx is the sender's retry policy, not a
//! new send slot). A crash costs pace, never rate: a batch handled again
//! claims new slots after the ones already taken.
//!
//! **How.**
//! - Planning (the view loop): the launch's audience, as of the launch,
//!   is split into batches of [`batch_size`] subscribers (at most
//!   [`SLOT`] of sending each) and written to Postgres in ONE transaction
//!   with the campaign's send clock (`dispatch.throttles.clock_us`, the
//!   next free send slot) and the launch marked planned; nothing goes to
//!   the batches topic yet.
//! - Releasing ([`crate::release`]): one releaser across the instances
//!   puts a campaign's next batch on `dispatch.batches` (with
//!   `throttle_per_minute` and `due_at` set) once the batch before it has
//!   begun sending and the clock is due within [`LEAD`]; so one batch per
//!   campaign is in flight and no backlog of due batches builds up in
//!   Kafka.
//! - Sending (the paced loop, group `<group>-paced`, which reads only
//!   throttled batches; the batch loop skips them and behaves as before):
//!   the handler claims as many slots as it has pushes to send, in one
//!   UPDATE of the clock (`start = max(clock, now)`, `clock = start +
//!   count × spacing`, Postgres's clock), waits until `start` (at most
//!   about [`LEAD`]) and starts the i-th push at `start + i × spacing`,
//!   [`spacing`] = (60 s + [`GUARD`]) / N. Claims are atomic, so slots of
//!   two instances, or of a batch handled again after a crash, never
//!   overlap. Its Kafka transaction stays open for the batch's sending
//!   only (≤ [`SLOT`] plus the short wait), well inside
//!   `max.poll.interval.ms` and the transaction timeout; the waiting for a
//!   due time happens in the releaser, outside any transaction.
//!
//! Why slots of one second, not ten: a batch's outcome events commit with
//! its transaction, and while it is open `read_committed` readers of the
//! outcome topics (the aggregate, the lake, the test collectors) cannot
//! read past it on the partitions it wrote, other campaigns' committed
//! events included. Measured with 10 s slots, an unthrottled campaign's
//! events became visible 10 s late; a one-second batch holds them back no
//! longer than an ordinary batch does.

use pushflow_runtime::postgres::pg;
use std::time::Duration;

use crate::store::{CampaignKey, Store};
use crate::DispatchError;

/// The longest a throttled batch takes to send: `ceil(N / 60)` subscribers
/// at N per minute (see the module doc for why not longer).
pub const SLOT: Duration = Duration::from_secs(1);

/// Added to every 60 s of slots: the margin for a send's travel time.
pub const GUARD: Duration = Duration::from_millis(500);

/// How long before its slot a batch is released (its trip through Kafka).
pub const LEAD: Duration = Duration::from_millis(250);

/// Subscribers per batch of a launch throttled to `per_minute`: at most
/// [`SLOT`] of sending, and no more than `max` (the `batch_size` setting).
pub fn batch_size(per_minute: i32, max: usize) -> i32 {
    let per_slot = (per_minute as i64 * SLOT.as_secs() as i64 + 59) / 60;
    per_slot.clamp(1, max.max(1) as i64) as i32
}

/// The time between two sends of a campaign throttled to `per_minute`.
pub fn spacing(per_minute: i32) -> Duration {
    let window_us = 60_000_000 + GUARD.as_micros() as u64;
    let n = per_minute.max(1) as u64;
    Duration::from_micros(window_us.div_ceil(n))
}

/// A batch due for release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The campaign.
    pub key: CampaignKey,
    /// Its batch number.
    pub batch_no: i32,
    /// The throttle.
    pub per_minute: i32,
    /// The campaign's next send slot, µs since the epoch.
    pub clock_us: i64,
    /// The batch's subscribers.
    pub subscriber_ids: Vec<String>,
}

/// Slots claimed for a batch's sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// Until the first slot.
    pub wait: Duration,
    /// Between two sends.
    pub spacing: Duration,
}

/// `clock_timestamp()` in µs since the epoch, as SQL.
const NOW_US: &str = "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint";

impl Store {
    /// Plans a throttled launch: its audience in batches of
    /// [`batch_size`], its clock at now, the launch planned, in ONE
    /// transaction. Returns (batches, audience), or `None` when it was
    /// planned before (a repeated launch).
    pub async fn plan_throttled(
        &self,
        key: &CampaignKey,
        per_minute: i32,
        max_batch: usize,
    ) -> Result<Option<(i32, i64)>, DispatchError> {
        let size = batch_size(per_minute, max_batch) as i64;
        let mut c = self.client().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg("begin planning a throttled launch"))?;
        let (st, ca) = (&key.store_id, &key.campaign_id);
        let known = tx
            .query_opt(
                "SELECT 1 FROM dispatch.throttles WHERE store_id = $1 AND campaign_id = $2",
                &[st, ca],
            )
            .await
            .map_err(pg("look for a throttled plan"))?;
        if known.is_some() {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO dispatch.throttled_batches (store_id, campaign_id, batch_no, subscriber_ids)
             SELECT $1, $2, (rn / $3)::int, array_agg(subscriber_id ORDER BY subscriber_id)
             FROM (SELECT subscriber_id, row_number() OVER (ORDER BY subscriber_id) - 1 AS rn
                   FROM dispatch.subscriptions WHERE store_id = $1 AND NOT expired) s
             GROUP BY rn / $3",
            &[st, ca, &size],
        )
        .await
        .map_err(pg("plan throttled batches"))?;
        let row = tx
            .query_one(
                "SELECT count(*)::int, coalesce(sum(cardinality(subscriber_ids)), 0)::bigint
                 FROM dispatch.throttled_batches WHERE store_id = $1 AND campaign_id = $2",
                &[st, ca],
            )
            .await
            .map_err(pg("count throttled batches"))?;
        let (batches, audience): (i32, i64) = (row.get(0), row.get(1));
        tx.execute(
            &format!(
                "INSERT INTO dispatch.throttles (store_id, campaign_id, per_minute, batch_size, batches, audience, clock_us)
                 VALUES ($1, $2, $3, $4, $5, $6, {NOW_US})"
            ),
            &[st, ca, &per_minute, &(size as i32), &batches, &audience],
        )
        .await
        .map_err(pg("store a throttle"))?;
        tx.execute(
            "UPDATE dispatch.launches SET planned = true, batches = $3, audience = $4,
                plan_topic = NULL, plan_partition = NULL, plan_offset = NULL
             WHERE store_id = $1 AND campaign_id = $2",
            &[st, ca, &batches, &audience],
        )
        .await
        .map_err(pg("mark a throttled launch planned"))?;
        tx.commit().await.map_err(pg("commit a throttled plan"))?;
        Ok(Some((batches, audience)))
    }

    /// Up to `limit` batches due for release: the next batch of each
    /// campaign whose previous batch began sending and whose clock is due
    /// within [`LEAD`].
    pub async fn due_releases(&self, limit: i64) -> Result<Vec<Release>, DispatchError> {
        let lead = LEAD.as_micros() as i64;
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT t.store_id, t.campaign_id, t.released, t.per_minute, t.clock_us, b.subscriber_ids
                     FROM dispatch.throttles t
                     JOIN dispatch.throttled_batches b
                       ON b.store_id = t.store_id AND b.campaign_id = t.campaign_id AND b.batch_no = t.released
                     WHERE t.released < t.batches AND t.claimed >= t.released - 1
                       AND t.clock_us <= {NOW_US} + $1
                     ORDER BY t.clock_us LIMIT $2"
                ),
                &[&lead, &limit],
            )
            .await
            .map_err(pg("read due releases"))?;
        Ok(rows
            .iter()
            .map(|r| Release {
                key: CampaignKey {
                    store_id: r.get(0),
                    campaign_id: r.get(1),
                },
                batch_no: r.get(2),
                per_minute: r.get(3),
                clock_us: r.get(4),
                subscriber_ids: r.get(5),
            })
            .collect())
    }

    /// How long until the next release could be due (`None`: no campaign
    /// is waiting for its clock; one waiting for its previous batch to
    /// begin is looked at again by the releaser's next turn).
    pub async fn next_release_in(&self) -> Result<Option<Duration>, DispatchError> {
        let row = self
            .client()
            .await?
            .query_one(
                &format!(
                    "SELECT min(clock_us) - {NOW_US} FROM dispatch.throttles
                     WHERE released < batches AND claimed >= released - 1"
                ),
                &[],
            )
            .await
            .map_err(pg("read the next release time"))?;
        Ok(row
            .get::<_, Option<i64>>(0)
            .map(|us| Duration::from_micros(us.max(0) as u64)))
    }

    /// Marks batches released (their records are on the topic): the
    /// campaign's next batch is the one after, and the released ones'
    /// subscriber lists are dropped.
    pub async fn mark_released(
        &self,
        released: &[(CampaignKey, i32)],
    ) -> Result<(), DispatchError> {
        if released.is_empty() {
            return Ok(());
        }
        let st: Vec<&str> = released.iter().map(|r| r.0.store_id.as_str()).collect();
        let ca: Vec<&str> = released.iter().map(|r| r.0.campaign_id.as_str()).collect();
        let no: Vec<i32> = released.iter().map(|r| r.1).collect();
        let mut c = self.client().await?;
        let tx = c
            .transaction()
            .await
            .map_err(pg("begin marking batches released"))?;
        tx.execute(
            "UPDATE dispatch.throttles t SET released = GREATEST(t.released, u.n + 1)
             FROM (SELECT st, ca, max(n) AS n FROM unnest($1::text[], $2::text[], $3::int[]) AS x(st, ca, n)
                   GROUP BY st, ca) u
             WHERE t.store_id = u.st AND t.campaign_id = u.ca",
            &[&st, &ca, &no],
        )
        .await
        .map_err(pg("mark batches released"))?;
        tx.execute(
            "DELETE FROM dispatch.throttled_batches b USING unnest($1::text[], $2::text[], $3::int[]) AS u(st, ca, n)
             WHERE b.store_id = u.st AND b.campaign_id = u.ca AND b.batch_no <= u.n",
            &[&st, &ca, &no],
        )
        .await
        .map_err(pg("drop released batches"))?;
        tx.commit().await.map_err(pg("commit released batches"))?;
        Ok(())
    }

    /// Claims `count` send slots of the campaign for batch `batch_no`
    /// (which marks it begun, releasing the next one): `start =
    /// max(clock, now)`, `clock = start + count × spacing`, atomically.
    /// `None` when the campaign has no throttle state.
    pub async fn claim(
        &self,
        key: &CampaignKey,
        batch_no: i32,
        count: usize,
        per_minute: i32,
    ) -> Result<Option<Slots>, DispatchError> {
        let spacing = spacing(per_minute);
        let span = count as i64 * spacing.as_micros() as i64;
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "WITH now AS (SELECT {NOW_US} AS us)
                     UPDATE dispatch.throttles t SET clock_us = GREATEST(t.clock_us, now.us) + $3,
                        claimed = GREATEST(t.claimed, $4)
                     FROM now WHERE t.store_id = $1 AND t.campaign_id = $2
                     RETURNING t.clock_us - $3 - now.us"
                ),
                &[&key.store_id, &key.campaign_id, &span, &batch_no],
            )
            .await
            .map_err(pg("claim send slots"))?;
        Ok(row.map(|r| Slots {
            wait: Duration::from_micros(r.get::<_, i64>(0).max(0) as u64),
            spacing,
        }))
    }

    /// How far the releaser read `topic` back (next offsets).
    pub async fn release_positions(
        &self,
        topic: &str,
    ) -> Result<std::collections::HashMap<(String, i32), i64>, DispatchError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT partition, next_offset FROM dispatch.release_positions WHERE topic = $1",
                &[&topic],
            )
            .await
            .map_err(pg("read the release positions"))?;
        Ok(rows
            .iter()
            .map(|r| ((topic.to_string(), r.get(0)), r.get(1)))
            .collect())
    }

    /// Stores how far the releaser read its topic back: every throttled
    /// batch before these offsets is known to Postgres.
    pub async fn save_release_positions(
        &self,
        positions: &std::collections::HashMap<(String, i32), i64>,
    ) -> Result<(), DispatchError> {
        let topics: Vec<&str> = positions.keys().map(|k| k.0.as_str()).collect();
        let parts: Vec<i32> = positions.keys().map(|k| k.1).collect();
        let next: Vec<i64> = positions.values().copied().collect();
        self.client()
            .await?
            .execute(
                "INSERT INTO dispatch.release_positions AS p (topic, partition, next_offset)
                 SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[])
                 ON CONFLICT (topic, partition) DO UPDATE SET next_offset = GREATEST(p.next_offset, excluded.next_offset)",
                &[&topics, &parts, &next],
            )
            .await
            .map_err(pg("store the release positions"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_a_slot_and_n_sends_span_over_a_minute() {
        assert_eq!(batch_size(240, 500), 4);
        assert_eq!(batch_size(100, 500), 2);
        assert_eq!(batch_size(59, 500), 1);
        assert_eq!(batch_size(1, 500), 1);
        assert_eq!(batch_size(600_000, 500), 500);
        for n in [1, 7, 60, 100, 240, 6000] {
            let s = spacing(n);
            // N consecutive sends: N - 1 gaps plus the next one's.
            assert!(s * n as u32 >= Duration::from_secs(60) + GUARD, "{n}");
            assert!(s * n as u32 <= Duration::from_secs(61), "{n}");
            // A batch is at most a slot (plus rounding) of sending: its
            // first push at the start, the last (m - 1) spacings later.
            let m = batch_size(n, 10_000) as u32;
            assert!(s * (m - 1) <= SLOT + GUARD, "{n}");
        }
    }
}
