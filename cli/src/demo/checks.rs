//! Waiting for pushflow's outputs and reading them back: dispatch's
//! subscription view, push-sim's inbox, the billing view, the lake, the
//! dead-letter topics.

use indicatif::ProgressBar;
use pushflow_aggregate::billing::BillingRow;
use pushflow_s3_parquet::Lake;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use super::browsers::{Delivered, Truth};
use super::report::{DashboardFigures, Report};
use super::setup::DemoEnv;
use super::DemoArgs;
use crate::Failure;

const POLL: Duration = Duration::from_millis(250);

/// One look at an output: done, or what is still missing.
enum Look<T> {
    Ready(T),
    Waiting(String),
}

/// Looks every `every` until `look` is ready; fails once the phase timeout
/// has passed, saying what the last look was still waiting for.
async fn poll<T>(
    args: &DemoArgs,
    every: Duration,
    mut look: impl AsyncFnMut() -> Result<Look<T>, Failure>,
) -> Result<T, Failure> {
    let deadline = Instant::now() + args.phase_timeout();
    loop {
        match look().await? {
            Look::Ready(v) => return Ok(v),
            Look::Waiting(what) if Instant::now() > deadline => {
                return Err(Failure::Other(anyhow::anyhow!(
                    "{what} (waited {}); see the log above",
                    humantime::format_duration(args.phase_timeout())
                )))
            }
            Look::Waiting(_) => tokio::time::sleep(every).await,
        }
    }
}

/// Waits until dispatch's view knows all of `store_id`'s subscribers.
pub async fn wait_active(
    env: &DemoEnv,
    store_id: &str,
    args: &DemoArgs,
    bar: &ProgressBar,
) -> Result<(), Failure> {
    let store = pushflow_dispatch::store::Store::connect(&env.topology.services.database_url)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    poll(args, POLL, async || {
        let n = store
            .active_count(store_id)
            .await
            .map_err(|e| Failure::Other(e.into()))?;
        bar.set_message(format!("{n} active in dispatch"));
        Ok(match n as usize >= args.subscribers {
            true => Look::Ready(()),
            false => Look::Waiting(format!(
                "dispatch's view has {n} of {} subscribers",
                args.subscribers
            )),
        })
    })
    .await
}

/// What push-sim received for the campaign.
#[derive(Debug, Default)]
pub struct Pushes {
    /// One per subscriber: what its browser decrypted.
    pub payloads: Vec<Delivered>,
    /// Pushes accepted in all (a retried send counts twice).
    pub accepted: u64,
    /// Subscribers that received the notification more than once.
    pub repeated: u64,
    /// Bodies push-sim could not decrypt.
    pub decrypt_failed: u64,
}

/// Waits until every subscriber's browser has the campaign's push, then
/// reads the decrypted payloads.
pub async fn wait_pushes(
    env: &DemoEnv,
    campaign_id: &str,
    subs: &[String],
    args: &DemoArgs,
    bar: &ProgressBar,
) -> Result<Pushes, Failure> {
    let state = &env.sim.state;
    let accepted = |s: &serde_json::Value, k: &str| s[k].as_u64().unwrap_or(0);
    poll(args, POLL, async || {
        let stats = state.stats();
        let n = accepted(&stats, "accepted");
        bar.set_position(n.min(subs.len() as u64));
        let waiting = Look::Waiting(format!("push-sim accepted {n} of {} pushes", subs.len()));
        if n < subs.len() as u64 {
            return Ok(waiting);
        }
        let mut out = Pushes {
            accepted: n,
            decrypt_failed: accepted(&stats, "decrypt_failed"),
            ..Pushes::default()
        };
        let mut missing = 0;
        for (browser, sub) in subs.iter().enumerate() {
            let got = state.received(sub);
            if got.len() > 1 {
                out.repeated += 1;
            }
            let payload = got
                .iter()
                .filter_map(|r| r.payload.as_ref())
                .find(|p| p["campaign_id"].as_str() == Some(campaign_id));
            match payload {
                Some(p) => out.payloads.push(Delivered {
                    browser,
                    notification_id: p["notification_id"].as_str().unwrap_or("").into(),
                    token: p["ping_token"].as_str().unwrap_or("").into(),
                }),
                None => missing += 1,
            }
        }
        if missing > 0 {
            bar.set_message(format!("{missing} browsers still waiting"));
            return Ok(waiting);
        }
        Ok(Look::Ready(out))
    })
    .await
}

/// The current month, `YYYY-MM`, in UTC (billing's months are UTC).
pub fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// Waits until the billing view counts `truth` for `store_id` this month
/// (returns at once if it counts more: a double count is a result to
/// report, not to wait out).
pub async fn wait_billing(
    env: &DemoEnv,
    store_id: &str,
    truth: &Truth,
    args: &DemoArgs,
    bar: &ProgressBar,
) -> Result<BillingRow, Failure> {
    let (want_i, want_c) = (truth.delivered.len() as i64, truth.clicked.len() as i64);
    let db = &env.topology.services.database_url;
    poll(args, POLL, async || {
        let row = pushflow_aggregate::billing::rows(db, &this_month(), Some(store_id))
            .await
            .ok()
            .and_then(|r| r.into_iter().next());
        let (i, c) = row.as_ref().map_or((0, 0), |r| (r.impressions, r.clicks));
        bar.set_position(i.max(0) as u64);
        bar.set_message(format!("{c}/{want_c} clicks"));
        Ok(match row {
            Some(row) if (i >= want_i && c >= want_c) || i > want_i || c > want_c => {
                Look::Ready(row)
            }
            _ => Look::Waiting(format!(
                "billing shows {i} of {want_i} impressions and {c} of {want_c} clicks"
            )),
        })
    })
    .await
}

/// The aggregate's own late counts for `store_id` (see
/// [`crate::demo::report::PingFigures::counted_late`]).
pub async fn counted_late(env: &DemoEnv, store_id: &str) -> Result<Vec<(String, i64)>, Failure> {
    let schema = env
        .topology
        .components
        .iter()
        .find(|c| c.kind == "aggregate")
        .and_then(|c| c.settings.get("schema").and_then(|s| s.as_str()))
        .unwrap_or("aggregate")
        .to_string();
    pushflow_aggregate::billing::late_counts(&env.topology.services.database_url, &schema, store_id)
        .await
        .map_err(|e| Failure::Other(e.into()))
}

/// What the lake holds for the demo's merchant.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LakeCounts {
    /// Rows per table.
    pub rows: BTreeMap<String, u64>,
    /// `count(DISTINCT notification_id)` of `notification_delivered` this month.
    pub distinct_delivered: u64,
    /// The same for `notification_clicked`.
    pub distinct_clicked: u64,
    /// The same for the campaign's `notification_dispatched`.
    pub distinct_dispatched: u64,
    /// The SQL the impressions came from (what an analyst would run).
    pub sql: String,
}

/// The demo checks the lake with SQL (DataFusion): a build without the
/// `query` feature refuses to start it rather than skip the check.
pub fn require_query() -> Result<(), Failure> {
    match cfg!(feature = "query") {
        true => Ok(()),
        false => Err(Failure::Config(format!(
            "the demo checks the lake with SQL: {}",
            crate::commands::lake::WITHOUT_QUERY
        ))),
    }
}

#[cfg(not(feature = "query"))]
async fn scalar(_lake: &Lake, _sql: &str) -> Result<u64, Failure> {
    require_query().map(|()| 0)
}

#[cfg(feature = "query")]
async fn scalar(lake: &Lake, sql: &str) -> Result<u64, Failure> {
    use arrow::array::{Array, Int64Array};
    let batches = pushflow_s3_parquet::query::query(lake, sql)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    let v = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    Ok(v.max(0) as u64)
}

/// Waits until the lake holds `expected` rows per table for `store_id`
/// (returns at once when a table holds more), then counts the distinct
/// notifications the way an analyst would.
pub async fn wait_lake(
    env: &DemoEnv,
    store_id: &str,
    campaign_id: &str,
    expected: &BTreeMap<String, u64>,
    args: &DemoArgs,
    bar: &ProgressBar,
) -> Result<LakeCounts, Failure> {
    let lake =
        Lake::open(&env.topology.services.lake_url, &[]).map_err(|e| Failure::Other(e.into()))?;
    let rows = poll(args, Duration::from_millis(500), async || {
        let mut rows = BTreeMap::new();
        for table in expected.keys() {
            let sql = format!("SELECT count(*) FROM {table} WHERE store_id = '{store_id}'");
            rows.insert(table.clone(), scalar(&lake, &sql).await?);
        }
        bar.set_position(rows.values().sum());
        let done: HashSet<&String> = expected
            .iter()
            .filter(|(t, n)| rows.get(*t) == Some(n))
            .map(|(t, _)| t)
            .collect();
        let over = expected
            .iter()
            .any(|(t, n)| rows.get(t).is_some_and(|g| g > n));
        Ok(match done.len() == expected.len() || over {
            true => Look::Ready(rows),
            false => Look::Waiting(format!("the lake holds {rows:?}, expected {expected:?}")),
        })
    })
    .await?;
    let mut counts = LakeCounts {
        rows,
        ..LakeCounts::default()
    };
    let month_start = format!("{}-01", this_month());
    counts.sql = format!(
        "SELECT count(DISTINCT notification_id) FROM notification_delivered WHERE store_id = '{store_id}' AND dt >= '{month_start}'"
    );
    counts.distinct_delivered = scalar(&lake, &counts.sql).await?;
    counts.distinct_clicked = scalar(
        &lake,
        &format!("SELECT count(DISTINCT notification_id) FROM notification_clicked WHERE store_id = '{store_id}' AND dt >= '{month_start}'"),
    )
    .await?;
    counts.distinct_dispatched = scalar(
        &lake,
        &format!("SELECT count(DISTINCT notification_id) FROM notification_dispatched WHERE campaign_id = '{campaign_id}'"),
    )
    .await?;
    Ok(counts)
}

/// Every dead-letter topic's watermark span (see
/// [`pushflow_runtime::kafka::admin::watermark_spans`]): compare two
/// readings.
pub async fn dlq_records(
    env_topology: &pushflow_runtime::topology::Topology,
) -> Result<BTreeMap<String, i64>, Failure> {
    let topics: Vec<String> = env_topology
        .topics
        .iter()
        .map(|t| pushflow_schemas::catalogue::dlq_topic(&t.spec.name))
        .collect();
    let brokers = env_topology.services.brokers.clone();
    let kafka = env_topology.kafka.clone();
    tokio::task::spawn_blocking(move || {
        pushflow_runtime::kafka::admin::watermark_spans(&brokers, &kafka, &topics)
    })
    .await
    .map_err(|e| Failure::Other(e.into()))?
    .map_err(|e| Failure::Other(e.into()))
}

/// Waits until the dashboard's API (`base`, with the demo's token) shows
/// for the demo's campaign the distinct pings of the report and, when the
/// topology runs `analytics`, one dispatched notification per subscriber
/// and the second campaign as scheduled; and for billing the billing
/// view's row. Returns what it answered last: equal, or different once the
/// phase timeout has passed (the report's check then fails).
pub async fn wait_dashboard(
    env: &DemoEnv,
    base: &str,
    report: &Report,
    scheduled_id: &str,
    args: &DemoArgs,
) -> Result<DashboardFigures, Failure> {
    let store = &report.store_id;
    let api = format!("{base}/api/v1/stores/{store}");
    let get = async |path: String| -> Result<serde_json::Value, String> {
        let r = env
            .http
            .get(format!("{api}{path}"))
            .bearer_auth(&args.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        match status.is_success() {
            true => Ok(body),
            false => Err(format!(
                "{status}: {} (is --token one of the dashboard's tokens?)",
                body["error"]
            )),
        }
    };
    let analytics = env.runs("analytics");
    let (billed_i, billed_c) = report
        .billing
        .as_ref()
        .map_or((-1, -1), |b| (b.impressions, b.clicks));
    let deadline = Instant::now() + args.phase_timeout();
    loop {
        let mut seen = DashboardFigures {
            url: format!(
                "{base}/?store={store}&campaign={}&token={}",
                report.campaign_id, args.token
            ),
            with_analytics: analytics,
            ..DashboardFigures::default()
        };
        let answers = async {
            let c = get(format!("/campaigns/{}", report.campaign_id)).await?;
            let s = get(format!("/campaigns/{scheduled_id}")).await;
            let b = get(format!("/billing?month={}", this_month())).await?;
            Ok::<_, String>((c, s, b))
        };
        match answers.await {
            Ok((c, s, b)) => {
                let n = |v: &serde_json::Value, k: &str| v[k].as_i64().unwrap_or(-1);
                seen.dispatched = n(&c, "dispatched");
                seen.delivered = n(&c, "delivered");
                seen.clicked = n(&c, "clicked");
                seen.impressions = n(&b, "impressions");
                seen.clicks = n(&b, "clicks");
                seen.scheduled_status = s
                    .map(|s| s["status"].as_str().unwrap_or("").to_string())
                    .unwrap_or_else(|e| e);
                seen.error = None;
            }
            Err(e) => seen.error = Some(e),
        }
        let agrees = seen.error.is_none()
            && seen.delivered == report.pings.distinct_delivered as i64
            && seen.clicked == report.pings.distinct_clicked as i64
            && (seen.impressions, seen.clicks) == (billed_i, billed_c)
            && (!analytics
                || (seen.dispatched == report.subscribers as i64
                    && seen.scheduled_status == "scheduled"));
        if agrees || Instant::now() > deadline {
            return Ok(seen);
        }
        tokio::time::sleep(POLL).await;
    }
}
