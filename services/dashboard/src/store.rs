//! The SQL: every number of the API, read from the tables other
//! components write. Read-only: the connections are opened with
//! `default_transaction_read_only=on`, so a bug here cannot change a count.
//!
//! - delivered / clicked: the aggregate's `window_stats` (one row per
//!   campaign and window; the `series`) plus its `late_events` (a ping
//!   beyond the window's grace is there instead of in a window). Both are
//!   distinct per (notification, kind): the aggregate counts a pair once,
//!   ever. A campaign's totals are the sum over the windows of one size
//!   plus that size's late events; the series leaves the late ones out.
//! - dispatched / failed / expired, the campaign's title and times, and
//!   subscriber growth: the analytics component's `campaigns`,
//!   `campaign_totals` and `store_days`.
//! - billing: the aggregate's view `billing_monthly_impressions`, the one
//!   billing reads.
//!
//! Every query names the store, and the tables' keys start with it.

use deadpool_postgres::Pool;
use pushflow_runtime::postgres::PoolSettings;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::Config;

use crate::config::{DashboardConfig, Window};
use crate::DashboardError;

/// `late_events.kind` of a delivered ping (the aggregate's `PingKind`).
const DELIVERED: i16 = 0;
/// `late_events.kind` of a clicked ping.
const CLICKED: i16 = 1;

/// RFC 3339 in UTC with milliseconds, e.g. `2026-05-01T10:00:00.000Z`.
fn rfc3339(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
}

/// One point of a campaign's series: a window of the aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// The window's start, RFC 3339 UTC.
    pub start: String,
    /// Distinct notifications delivered in it (by event time).
    pub delivered: i64,
    /// Distinct notifications clicked in it.
    pub clicked: i64,
}

/// A campaign as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Campaign {
    /// Its id (unique within the store).
    pub campaign_id: String,
    /// From `campaign.created`; `None` before it was seen.
    pub title: Option<String>,
    /// `launched`, `cancelled`, `scheduled` or `draft`.
    pub status: &'static str,
    /// When `campaign.created` happened.
    pub created_at: Option<String>,
    /// `send_at` of `campaign.scheduled`.
    pub scheduled_at: Option<String>,
    /// When `campaign.launched` happened.
    pub launched_at: Option<String>,
    /// When `campaign.cancelled` happened.
    pub cancelled_at: Option<String>,
    /// The launch's throttle, notifications per minute.
    pub throttle_per_minute: Option<i32>,
    /// dispatched + failed + expired: every decided notification.
    pub audience: i64,
    /// Notifications handed to a push service.
    pub dispatched: i64,
    /// Notifications that could not be handed over.
    pub failed: i64,
    /// Notifications whose subscription turned out to be gone.
    pub expired: i64,
    /// Distinct notifications delivered (series plus late pings).
    pub delivered: i64,
    /// Distinct notifications clicked (series plus late pings).
    pub clicked: i64,
    /// clicked / delivered (0 when nothing was delivered).
    pub ctr: f64,
    /// The series' window size, e.g. `1h`.
    pub window: String,
    /// delivered / clicked per window, oldest first (late pings left out).
    pub series: Vec<Point>,
}

/// What a campaign's status is, from its times.
pub fn status(launched: bool, cancelled: bool, scheduled: bool) -> &'static str {
    match (launched, cancelled, scheduled) {
        (true, _, _) => "launched",
        (false, true, _) => "cancelled",
        (false, false, true) => "scheduled",
        _ => "draft",
    }
}

/// clicked / delivered, 0 when nothing was delivered.
pub fn ctr(clicked: i64, delivered: i64) -> f64 {
    match delivered {
        0 => 0.0,
        d => clicked as f64 / d as f64,
    }
}

/// One UTC day of a store's subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Subscriptions created that day.
    pub subscribed: i64,
    /// Subscriptions that ended that day.
    pub expired: i64,
    /// Subscriptions active at the day's end: subscribed − expired over
    /// every day up to it (not only the range asked for).
    pub active: i64,
}

/// A month of billing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Billing {
    /// `YYYY-MM`.
    pub month: String,
    /// Billed impressions (distinct delivered notifications).
    pub impressions: i64,
    /// Billed clicks (distinct clicked notifications).
    pub clicks: i64,
}

/// The read-only connection pool and the tables' names.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    aggregate: String,
    analytics: String,
    billing_view: String,
}

impl Store {
    /// A pool for `database_url` (connections are made on first use, so
    /// this needs no running Postgres). Every connection is read-only and
    /// a statement may take at most 10 s.
    pub fn new(database_url: &str, config: &DashboardConfig) -> Result<Store, DashboardError> {
        let mut pg: Config = database_url
            .parse()
            .map_err(|source| DashboardError::Postgres {
                context: "parse the database URL".into(),
                source,
            })?;
        pg.application_name("pushflow-dashboard");
        pg.options("-c default_transaction_read_only=on -c statement_timeout=10000");
        pg.connect_timeout(Duration::from_secs(5));
        let pool = pushflow_runtime::postgres::pool(
            pg,
            PoolSettings {
                max_size: 8,
                wait_timeout: Duration::from_secs(10),
                create_timeout: Duration::from_secs(5),
            },
        )
        .map_err(|e| DashboardError::config("database_url", e.to_string()))?;
        Ok(Store {
            pool,
            aggregate: config.aggregate_schema.clone(),
            analytics: config.analytics_schema.clone(),
            billing_view: config.billing_view.clone(),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, DashboardError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(source)
                if source.code() == Some(&SqlState::INVALID_CATALOG_NAME) =>
            {
                DashboardError::NotReady {
                    what: source
                        .as_db_error()
                        .map_or_else(|| source.to_string(), |d| d.message().to_string()),
                    hint: "the components that write it create it when they start".into(),
                }
            }
            other => DashboardError::Pool(other),
        })
    }

    fn failed(&self, context: &str) -> impl FnOnce(tokio_postgres::Error) -> DashboardError {
        let context = context.to_string();
        let hint = format!(
            "the aggregate (schema {}) and analytics (schema {}) components create their \
             tables when they start: are they running, with these schemas?",
            self.aggregate, self.analytics
        );
        move |source| match source.as_db_error() {
            Some(db) if db.code() == &SqlState::UNDEFINED_TABLE => DashboardError::NotReady {
                what: db.message().to_string(),
                hint,
            },
            _ => DashboardError::Postgres { context, source },
        }
    }

    /// `store_id`'s campaigns (all, or the one `only` names), newest first
    /// (by creation, else launch, else schedule time), each with its series
    /// in windows of `series` and its totals over windows of `totals`.
    pub async fn campaigns(
        &self,
        store_id: &str,
        only: Option<&str>,
        series: &Window,
        totals: &Window,
    ) -> Result<Vec<Campaign>, DashboardError> {
        let (ag, an) = (&self.aggregate, &self.analytics);
        let one = "($2::text IS NULL OR campaign_id = $2)";
        let sql = format!(
            "WITH ids AS (
                SELECT campaign_id FROM {an}.campaigns WHERE store_id = $1 AND {one}
                UNION SELECT campaign_id FROM {an}.campaign_totals WHERE store_id = $1 AND {one}
                UNION SELECT campaign_id FROM {ag}.window_stats
                    WHERE store_id = $1 AND window_size = $3::text::interval AND {one}
                UNION SELECT campaign_id FROM {ag}.late_events
                    WHERE store_id = $1 AND window_size = $3::text::interval AND {one}
             ), windows AS (
                SELECT campaign_id, sum(delivered)::bigint AS delivered, sum(clicked)::bigint AS clicked
                FROM {ag}.window_stats WHERE store_id = $1 AND window_size = $3::text::interval AND {one}
                GROUP BY campaign_id
             ), late AS (
                SELECT campaign_id,
                       count(*) FILTER (WHERE kind = {DELIVERED})::bigint AS delivered,
                       count(*) FILTER (WHERE kind = {CLICKED})::bigint AS clicked
                FROM {ag}.late_events WHERE store_id = $1 AND window_size = $3::text::interval AND {one}
                GROUP BY campaign_id
             )
             SELECT ids.campaign_id, c.title, {created}, {scheduled}, {launched}, {cancelled},
                    c.throttle_per_minute::int,
                    COALESCE(t.dispatched, 0)::bigint, COALESCE(t.failed, 0)::bigint,
                    COALESCE(t.expired, 0)::bigint,
                    (COALESCE(w.delivered, 0) + COALESCE(l.delivered, 0))::bigint,
                    (COALESCE(w.clicked, 0) + COALESCE(l.clicked, 0))::bigint
             FROM ids
             LEFT JOIN {an}.campaigns c ON c.store_id = $1 AND c.campaign_id = ids.campaign_id
             LEFT JOIN {an}.campaign_totals t ON t.store_id = $1 AND t.campaign_id = ids.campaign_id
             LEFT JOIN windows w ON w.campaign_id = ids.campaign_id
             LEFT JOIN late l ON l.campaign_id = ids.campaign_id
             ORDER BY COALESCE(c.created_at, c.launched_at, c.scheduled_at) DESC NULLS LAST,
                      ids.campaign_id",
            created = rfc3339("c.created_at"),
            scheduled = rfc3339("c.scheduled_at"),
            launched = rfc3339("c.launched_at"),
            cancelled = rfc3339("c.cancelled_at"),
        );
        let client = self.client().await?;
        let rows = client
            .query(&sql, &[&store_id, &only, &totals.interval()])
            .await
            .map_err(self.failed("read the campaigns"))?;
        let mut campaigns: Vec<Campaign> = rows
            .iter()
            .map(|r| {
                let (launched_at, cancelled_at, scheduled_at): (
                    Option<String>,
                    Option<String>,
                    Option<String>,
                ) = (r.get(4), r.get(5), r.get(3));
                let (dispatched, failed, expired): (i64, i64, i64) = (r.get(7), r.get(8), r.get(9));
                let (delivered, clicked): (i64, i64) = (r.get(10), r.get(11));
                Campaign {
                    campaign_id: r.get(0),
                    title: r.get(1),
                    status: status(
                        launched_at.is_some(),
                        cancelled_at.is_some(),
                        scheduled_at.is_some(),
                    ),
                    created_at: r.get(2),
                    scheduled_at,
                    launched_at,
                    cancelled_at,
                    throttle_per_minute: r.get(6),
                    audience: dispatched + failed + expired,
                    dispatched,
                    failed,
                    expired,
                    delivered,
                    clicked,
                    ctr: ctr(clicked, delivered),
                    window: series.name.clone(),
                    series: Vec::new(),
                }
            })
            .collect();
        if campaigns.is_empty() {
            return Ok(campaigns);
        }
        let ids: Vec<&str> = campaigns.iter().map(|c| c.campaign_id.as_str()).collect();
        let rows = client
            .query(
                &format!(
                    "SELECT campaign_id,
                            to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                            delivered::bigint, clicked::bigint
                     FROM {ag}.window_stats
                     WHERE store_id = $1 AND window_size = $2::text::interval AND campaign_id = ANY($3)
                     ORDER BY campaign_id, window_start"
                ),
                &[&store_id, &series.interval(), &ids],
            )
            .await
            .map_err(self.failed("read the campaigns' windows"))?;
        let mut by_id: HashMap<String, Vec<Point>> = HashMap::new();
        for r in &rows {
            by_id.entry(r.get(0)).or_default().push(Point {
                start: r.get(1),
                delivered: r.get(2),
                clicked: r.get(3),
            });
        }
        for c in &mut campaigns {
            c.series = by_id.remove(&c.campaign_id).unwrap_or_default();
        }
        Ok(campaigns)
    }

    /// `store_id`'s subscribers per UTC day from `from` to `to` (both
    /// `YYYY-MM-DD`, inclusive; every day listed, 0 where nothing
    /// happened), `active` counted over every day up to each.
    pub async fn subscribers(
        &self,
        store_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<Day>, DashboardError> {
        let an = &self.analytics;
        let sql = format!(
            "WITH before AS (
                SELECT COALESCE(sum(subscribed - expired), 0)::bigint AS active
                FROM {an}.store_days WHERE store_id = $1 AND day < $2::text::date
             ), days AS (
                SELECT d::date AS day, COALESCE(s.subscribed, 0)::bigint AS subscribed,
                       COALESCE(s.expired, 0)::bigint AS expired
                FROM generate_series($2::text::date, $3::text::date, interval '1 day') AS d
                LEFT JOIN {an}.store_days s ON s.store_id = $1 AND s.day = d::date
             )
             SELECT day::text, subscribed, expired,
                    (before.active + sum(subscribed - expired) OVER (ORDER BY day))::bigint
             FROM days, before ORDER BY day"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&store_id, &from, &to])
            .await
            .map_err(self.failed("read the subscribers per day"))?;
        Ok(rows
            .iter()
            .map(|r| Day {
                day: r.get(0),
                subscribed: r.get(1),
                expired: r.get(2),
                active: r.get(3),
            })
            .collect())
    }

    /// `store_id`'s billed impressions and clicks in `month` (`YYYY-MM`),
    /// 0 when the view has no row.
    pub async fn billing(&self, store_id: &str, month: &str) -> Result<Billing, DashboardError> {
        let first = format!("{month}-01");
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "SELECT impressions::bigint, clicks::bigint FROM {}
                     WHERE store_id = $1 AND month = $2::text::date",
                    self.billing_view
                ),
                &[&store_id, &first],
            )
            .await
            .map_err(self.failed("read billing_monthly_impressions"))?;
        let (impressions, clicks) = row.map_or((0, 0), |r| (r.get(0), r.get(1)));
        Ok(Billing {
            month: month.to_string(),
            impressions,
            clicks,
        })
    }

    /// `SELECT 1` on a pooled connection (for `/healthz`-style checks).
    pub async fn ping(&self) -> Result<(), DashboardError> {
        self.client()
            .await?
            .query_one("SELECT 1", &[])
            .await
            .map(|_| ())
            .map_err(self.failed("SELECT 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_contract() {
        assert_eq!(status(true, true, true), "launched");
        assert_eq!(status(false, true, true), "cancelled");
        assert_eq!(status(false, false, true), "scheduled");
        assert_eq!(status(false, false, false), "draft");
    }

    #[test]
    fn ctr_is_zero_without_deliveries() {
        assert_eq!(ctr(0, 0), 0.0);
        assert_eq!(ctr(3, 12), 0.25);
    }
}
