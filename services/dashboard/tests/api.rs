//! The merchant API over real HTTP against real Postgres: a fresh database
//! holding the tables the aggregate and analytics components write (their
//! contract's columns, created here) with figures chosen by hand, and the
//! `dashboard` component itself serving them.
//!
//! - `answers_each_call_from_the_tables`: every number of every call
//!   against the figures put in: totals = windows + late pings (either
//!   window size gives the same), the series leave the late ones out,
//!   statuses and order, store isolation (another store with the same
//!   campaign id), `active` summed over the days before the range, billing
//!   from the view.
//! - `refuses_what_it_cannot_answer`: 401 / 403, 400 for every bad
//!   parameter, 404 for an unknown campaign or route, each saying what to
//!   fix.
//! - `healthz_tells_whether_postgres_answers`: 200 with the tables there;
//!   503 naming Postgres when it is unreachable, and the API 503 then, as
//!   it is for tables not created yet.
//! - `serves_the_page_and_svg_charts`: `/`, its assets, the charts.
//! - the end-to-end test on the real pipeline is `cli/tests/dashboard.rs`.

use pushflow_dashboard::DashboardComponent;
use pushflow_runtime::topology::ComponentSpec;
use pushflow_runtime::CancellationToken;
use pushflow_testkit::http::{chart_series, ok_body};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const DEV: &str = "pushflow-dev-token";
const SHOP_S2: &str = "shop-s2-token";

/// The contract's tables (aggregate: DESIGN.md and
/// processors/aggregate/src/store.rs; analytics: the component's brief).
const TABLES: &str = r#"
CREATE SCHEMA aggregate;
CREATE TABLE aggregate.window_stats (store_id text NOT NULL, campaign_id text NOT NULL,
   window_size interval NOT NULL, window_start timestamptz NOT NULL,
   delivered bigint NOT NULL DEFAULT 0, clicked bigint NOT NULL DEFAULT 0,
   PRIMARY KEY (store_id, campaign_id, window_size, window_start));
CREATE TABLE aggregate.monthly_totals (store_id text NOT NULL, month date NOT NULL,
   impressions bigint NOT NULL DEFAULT 0, clicks bigint NOT NULL DEFAULT 0,
   PRIMARY KEY (store_id, month));
CREATE TABLE aggregate.late_events (store_id text NOT NULL, campaign_id text NOT NULL,
   notification_id text NOT NULL, kind smallint NOT NULL, occurred_at timestamptz NOT NULL,
   window_size interval NOT NULL, topic text NOT NULL, partition int NOT NULL,
   kafka_offset bigint NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
   PRIMARY KEY (store_id, notification_id, kind, window_size));
CREATE VIEW public.billing_monthly_impressions AS
   SELECT store_id::text AS store_id, month::date AS month,
          impressions::bigint AS impressions, clicks::bigint AS clicks
   FROM aggregate.monthly_totals;
CREATE SCHEMA analytics;
CREATE TABLE analytics.campaigns (store_id text NOT NULL, campaign_id text NOT NULL,
   title text, created_at timestamptz, scheduled_at timestamptz, throttle_per_minute int,
   cancelled_at timestamptz, launched_at timestamptz, PRIMARY KEY (store_id, campaign_id));
CREATE TABLE analytics.campaign_windows (store_id text NOT NULL, campaign_id text NOT NULL,
   window_size interval NOT NULL, window_start timestamptz NOT NULL,
   dispatched bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,
   expired bigint NOT NULL DEFAULT 0,
   PRIMARY KEY (store_id, campaign_id, window_size, window_start));
CREATE TABLE analytics.campaign_totals (store_id text NOT NULL, campaign_id text NOT NULL,
   dispatched bigint NOT NULL DEFAULT 0, failed bigint NOT NULL DEFAULT 0,
   expired bigint NOT NULL DEFAULT 0, PRIMARY KEY (store_id, campaign_id));
CREATE TABLE analytics.store_days (store_id text NOT NULL, day date NOT NULL,
   subscribed bigint NOT NULL DEFAULT 0, expired bigint NOT NULL DEFAULT 0,
   PRIMARY KEY (store_id, day));
"#;

/// The figures. Store s1's campaign `c-old` has 52 delivered and 6 clicked
/// in all: 50 / 5 in its hourly windows plus 2 / 1 late for them; 49 / 5
/// in its minute windows plus 3 / 1 late for those. Store s2 has a
/// campaign of the same id that must never show in s1's numbers.
const FIGURES: &str = r#"
INSERT INTO analytics.campaigns VALUES
 ('s1', 'c-old', 'Old sale', '2026-03-01T09:00Z', NULL, NULL, NULL, '2026-03-01T10:00Z'),
 ('s1', 'c-draft', 'Draft', '2026-03-02T09:00Z', NULL, NULL, NULL, NULL),
 ('s1', 'c-cancel', 'Called off', '2026-03-04T09:00Z', '2026-03-20T12:00Z', NULL, '2026-03-07T08:00Z', NULL),
 ('s1', 'c-new', 'New sale', '2026-03-05T08:00Z', NULL, 600, NULL, '2026-03-05T09:00Z'),
 ('s1', 'c-sched', 'Spring sale', '2026-03-06T10:00Z', '2026-04-01T12:00Z', 1000, NULL, NULL),
 ('s2', 'c-old', 'Other store', '2026-03-09T09:00Z', NULL, NULL, NULL, '2026-03-09T10:00Z');
INSERT INTO analytics.campaign_totals VALUES
 ('s1', 'c-old', 100, 3, 2), ('s1', 'c-new', 10, 0, 0), ('s2', 'c-old', 999, 1, 1);
INSERT INTO aggregate.window_stats VALUES
 ('s1', 'c-old', '1 hour', '2026-03-01T10:00Z', 40, 4),
 ('s1', 'c-old', '1 hour', '2026-03-01T11:00Z', 10, 1),
 ('s1', 'c-old', '1 minute', '2026-03-01T10:00Z', 30, 3),
 ('s1', 'c-old', '1 minute', '2026-03-01T10:01Z', 9, 1),
 ('s1', 'c-old', '1 minute', '2026-03-01T11:05Z', 10, 1),
 ('s1', 'c-new', '1 hour', '2026-03-05T09:00Z', 7, 2),
 ('s1', 'c-new', '1 minute', '2026-03-05T09:00Z', 7, 2),
 ('s1', 'c-orphan', '1 hour', '2026-03-03T10:00Z', 3, 0),
 ('s1', 'c-orphan', '1 minute', '2026-03-03T10:00Z', 3, 0),
 ('s2', 'c-old', '1 hour', '2026-03-09T10:00Z', 500, 50),
 ('s2', 'c-old', '1 minute', '2026-03-09T10:00Z', 500, 50);
INSERT INTO aggregate.late_events (store_id, campaign_id, notification_id, kind, occurred_at, window_size, topic, partition, kafka_offset) VALUES
 ('s1', 'c-old', 'n1', 0, '2026-03-01T10:10Z', '1 hour', 'notification.delivered', 0, 1),
 ('s1', 'c-old', 'n2', 0, '2026-03-01T10:20Z', '1 hour', 'notification.delivered', 1, 1),
 ('s1', 'c-old', 'n3', 1, '2026-03-01T10:30Z', '1 hour', 'notification.clicked', 0, 1),
 ('s1', 'c-old', 'n1', 0, '2026-03-01T10:10Z', '1 minute', 'notification.delivered', 0, 1),
 ('s1', 'c-old', 'n2', 0, '2026-03-01T10:20Z', '1 minute', 'notification.delivered', 1, 1),
 ('s1', 'c-old', 'n4', 0, '2026-03-01T10:21Z', '1 minute', 'notification.delivered', 1, 2),
 ('s1', 'c-old', 'n3', 1, '2026-03-01T10:30Z', '1 minute', 'notification.clicked', 0, 1),
 ('s2', 'c-old', 'n9', 0, '2026-03-09T10:10Z', '1 hour', 'notification.delivered', 0, 7);
INSERT INTO analytics.store_days VALUES
 ('s1', '2026-02-20', 100, 0), ('s1', '2026-03-01', 20, 5), ('s1', '2026-03-03', 0, 10),
 ('s1', '2026-03-05', 7, 1), ('s2', '2026-03-01', 1000, 0);
INSERT INTO aggregate.monthly_totals VALUES
 ('s1', '2026-03-01', 59, 8), ('s2', '2026-03-01', 501, 50);
"#;

struct Dashboard {
    url: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Dashboard {
    /// The real component on a free port over `database_url`, tokens from
    /// the environment override: the dev token (every store) and one for
    /// store s2 only.
    async fn start(database_url: &str) -> Dashboard {
        let port = pushflow_testkit::free_port();
        let topology = pushflow_testkit::topology_with(
            &pushflow_testkit::brokers(),
            "http://127.0.0.1:1",
            database_url,
        );
        let spec: ComponentSpec = serde_yaml::from_str(&format!(
            "name: dashboard\ntype: dashboard\nsettings:\n  addr: 127.0.0.1:{port}\n  refresh_interval: 1s\n  max_days: 40\n"
        ))
        .unwrap();
        let component = DashboardComponent::with_env(&spec, &topology, |k| {
            (k == "PUSHFLOW_DASHBOARD_TOKENS").then(|| format!("dev:{DEV}; shop:{SHOP_S2}:s2"))
        })
        .expect("the dashboard validates");
        let (shutdown, _) = pushflow_testkit::run_component(component, spec, topology);
        let d = Dashboard {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            shutdown,
        };
        let started = Instant::now();
        while d.http.get(format!("{}/", d.url)).send().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "dashboard up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path, Some(DEV)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Polls `/healthz` until its status is `want`; returns the body.
    async fn healthz(&self, want: u16) -> Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.get("/healthz", None).await;
            if status == want {
                return body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "/healthz stayed {status} (want {want}): {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn database_with(sql: &[&str]) -> String {
    let (name, url) = pushflow_testkit::fresh_database("dashboard_api");
    pushflow_testkit::create_database(&name).await;
    let client = pushflow_testkit::connect(&url).await;
    for s in sql {
        client.batch_execute(s).await.unwrap();
    }
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_each_call_from_the_tables() {
    let d = Dashboard::start(&database_with(&[TABLES, FIGURES]).await).await;

    let list = d.ok("/api/v1/stores/s1/campaigns").await;
    let ids: Vec<&str> = list["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["campaign_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["c-sched", "c-new", "c-cancel", "c-draft", "c-old", "c-orphan"],
        "newest first; a campaign only the aggregate knows comes last"
    );
    let statuses: Vec<&str> = list["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "scheduled",
            "launched",
            "cancelled",
            "draft",
            "launched",
            "draft"
        ]
    );

    let old = d.ok("/api/v1/stores/s1/campaigns/c-old").await;
    // serde_json reads floats to within an ulp (no float_roundtrip).
    let ctr = old["ctr"].as_f64().unwrap();
    assert!((ctr - 6.0 / 52.0).abs() < 1e-15, "ctr {ctr}");
    let mut old_fixed = old.clone();
    old_fixed["ctr"] = json!(6.0 / 52.0);
    assert_eq!(
        old_fixed,
        json!({
            "campaign_id": "c-old", "title": "Old sale", "status": "launched",
            "created_at": "2026-03-01T09:00:00.000Z", "scheduled_at": null,
            "launched_at": "2026-03-01T10:00:00.000Z", "cancelled_at": null,
            "throttle_per_minute": null,
            "audience": 105, "dispatched": 100, "failed": 3, "expired": 2,
            "delivered": 52, "clicked": 6, "ctr": 6.0 / 52.0,
            "window": "1h",
            "series": [
                {"start": "2026-03-01T10:00:00Z", "delivered": 40, "clicked": 4},
                {"start": "2026-03-01T11:00:00Z", "delivered": 10, "clicked": 1},
            ],
        })
    );
    assert_eq!(list["campaigns"][4], old, "the list holds the same object");
    let minutes = d.ok("/api/v1/stores/s1/campaigns/c-old?window=1m").await;
    assert_eq!(
        (minutes["delivered"].as_i64(), minutes["clicked"].as_i64()),
        (Some(52), Some(6)),
        "totals do not depend on the series' window"
    );
    assert_eq!(minutes["window"], "1m");
    assert_eq!(
        chart_series(&minutes),
        [
            ("2026-03-01T10:00:00Z".to_string(), 30, 3),
            ("2026-03-01T10:01:00Z".to_string(), 9, 1),
            ("2026-03-01T11:05:00Z".to_string(), 10, 1),
        ]
    );
    assert_eq!(
        d.ok("/api/v1/stores/s1/campaigns/c-old?window=60m").await,
        old,
        "another spelling of the hour"
    );

    let new = d.ok("/api/v1/stores/s1/campaigns/c-new").await;
    assert_eq!(new["throttle_per_minute"], 600);
    assert_eq!(
        (new["delivered"].as_i64(), new["clicked"].as_i64()),
        (Some(7), Some(2))
    );
    assert!((new["ctr"].as_f64().unwrap() - 2.0 / 7.0).abs() < 1e-15);
    let sched = d.ok("/api/v1/stores/s1/campaigns/c-sched").await;
    assert_eq!(sched["status"], "scheduled");
    assert_eq!(sched["scheduled_at"], "2026-04-01T12:00:00.000Z");
    assert_eq!(
        (
            sched["audience"].as_i64(),
            sched["ctr"].as_f64(),
            sched["series"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0.0), Some(0)),
        "nothing sent yet: zeros, a ctr of 0, no series"
    );
    let cancel = d.ok("/api/v1/stores/s1/campaigns/c-cancel").await;
    assert_eq!(cancel["status"], "cancelled");
    assert_eq!(cancel["cancelled_at"], "2026-03-07T08:00:00.000Z");
    let orphan = d.ok("/api/v1/stores/s1/campaigns/c-orphan").await;
    assert_eq!(
        (
            orphan["title"].clone(),
            orphan["status"].clone(),
            orphan["delivered"].as_i64()
        ),
        (Value::Null, json!("draft"), Some(3))
    );

    // The other store: its own numbers, never s1's, though the id is the same.
    let other = d.ok("/api/v1/stores/s2/campaigns/c-old").await;
    assert_eq!(
        (
            other["dispatched"].as_i64(),
            other["delivered"].as_i64(),
            other["clicked"].as_i64()
        ),
        (Some(999), Some(501), Some(50))
    );
    assert_eq!(
        d.ok("/api/v1/stores/s3/campaigns").await,
        json!({"campaigns": []}),
        "a store with nothing yet"
    );

    let days = d
        .ok("/api/v1/stores/s1/subscribers?from=2026-03-01&to=2026-03-05")
        .await;
    assert_eq!(
        days["days"],
        json!([
            {"day": "2026-03-01", "subscribed": 20, "expired": 5, "active": 115},
            {"day": "2026-03-02", "subscribed": 0, "expired": 0, "active": 115},
            {"day": "2026-03-03", "subscribed": 0, "expired": 10, "active": 105},
            {"day": "2026-03-04", "subscribed": 0, "expired": 0, "active": 105},
            {"day": "2026-03-05", "subscribed": 7, "expired": 1, "active": 111},
        ]),
        "active counts the days before the range (100 on 2026-02-20)"
    );
    let one = d
        .ok("/api/v1/stores/s2/subscribers?from=2026-03-05&to=2026-03-05")
        .await;
    assert_eq!(
        one["days"],
        json!([{"day": "2026-03-05", "subscribed": 0, "expired": 0, "active": 1000}])
    );
    let recent = d.ok("/api/v1/stores/s1/subscribers").await;
    assert_eq!(
        recent["days"].as_array().map(Vec::len),
        Some(30),
        "the last 30 days by default"
    );
    assert_eq!(recent["days"][29]["active"], 111);

    assert_eq!(
        d.ok("/api/v1/stores/s1/billing?month=2026-03").await,
        json!({"month": "2026-03", "impressions": 59, "clicks": 8})
    );
    assert_eq!(
        d.ok("/api/v1/stores/s1/billing?month=2026-04").await,
        json!({"month": "2026-04", "impressions": 0, "clicks": 0})
    );
    assert_eq!(
        d.get("/api/v1/stores/s2/billing?month=2026-03", Some(SHOP_S2))
            .await,
        (
            200,
            json!({"month": "2026-03", "impressions": 501, "clicks": 50})
        ),
        "a store's own token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_what_it_cannot_answer() {
    let d = Dashboard::start(&database_with(&[TABLES, FIGURES]).await).await;
    let error = |body: &Value| body["error"].as_str().unwrap_or_default().to_string();

    for path in [
        "/api/v1/stores/s1/campaigns",
        "/api/v1/stores/s1/campaigns/c-old",
        "/api/v1/stores/s1/campaigns/c-old/chart.svg",
        "/api/v1/stores/s1/subscribers",
        "/api/v1/stores/s1/subscribers/chart.svg",
        "/api/v1/stores/s1/billing",
    ] {
        let (status, body) = d.get(path, None).await;
        assert_eq!(status, 401, "{path} without a token: {body}");
        assert!(error(&body).contains("Authorization: Bearer"), "{body}");
        let (status, body) = d.get(path, Some("not-a-token")).await;
        assert_eq!(status, 401, "{path} with an unknown token: {body}");
        let (status, body) = d.get(path, Some(SHOP_S2)).await;
        assert_eq!(status, 403, "{path} with another store's token: {body}");
        assert_eq!(
            error(&body),
            "token \"shop\" does not cover store \"s1\" (it covers: s2)"
        );
    }
    let r = d
        .http
        .get(format!("{}/api/v1/stores/s1/billing", d.url))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("www-authenticate").is_some());

    for (path, status, hint) in [
        ("/api/v1/stores/s1/billing?month=2026-13", 400, "YYYY-MM"),
        ("/api/v1/stores/s1/billing?month=March", 400, "YYYY-MM"),
        (
            "/api/v1/stores/s1/subscribers?from=2026-02-30&to=2026-03-01",
            400,
            "YYYY-MM-DD",
        ),
        (
            "/api/v1/stores/s1/subscribers?from=2026-03-01&to=tomorrow",
            400,
            "YYYY-MM-DD",
        ),
        (
            "/api/v1/stores/s1/subscribers?from=2026-03-05&to=2026-03-01",
            400,
            "from ≤ to",
        ),
        (
            "/api/v1/stores/s1/subscribers?from=2026-01-01&to=2026-03-01",
            400,
            "at most 40",
        ),
        ("/api/v1/stores/s1/campaigns?window=5m", 400, "1h, 1m"),
        (
            "/api/v1/stores/s1/campaigns/c-old?window=day",
            400,
            "1h, 1m",
        ),
        (
            "/api/v1/stores/s1/campaigns/c-old/chart.svg?width=wide",
            400,
            "CSS pixels",
        ),
        (
            "/api/v1/stores/s1/campaigns/nope",
            404,
            "has no campaign \"nope\"",
        ),
        (
            "/api/v1/stores/s1/campaigns/nope/chart.svg",
            404,
            "has no campaign",
        ),
        ("/api/v1/stores/s1/funnels", 404, "the API is"),
        ("/nothing/here", 404, "the API is"),
    ] {
        let (got, body) = d.get(path, Some(DEV)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(error(&body).contains(hint), "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_tells_whether_postgres_answers() {
    // Tables there: healthy, and the metrics count the requests.
    let d = Dashboard::start(&database_with(&[TABLES]).await).await;
    let body = d.healthz(200).await;
    assert_eq!(body["checks"]["dashboard.postgres"], "ok", "{body}");
    d.ok("/api/v1/stores/s1/campaigns").await;
    let (status, metrics) = d.get("/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("pushflow_dashboard_requests_total"),
        "{metrics}"
    );

    // A database without the components' tables yet: 503 naming them.
    let empty = Dashboard::start(&database_with(&[]).await).await;
    let (status, body) = empty.get("/api/v1/stores/s1/campaigns", Some(DEV)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("does not exist")
            && body["error"].as_str().unwrap().contains("analytics"),
        "{body}"
    );
    let (status, body) = empty.get("/api/v1/stores/s1/billing", Some(DEV)).await;
    assert_eq!(status, 503, "{body}");

    // Postgres unreachable: /healthz says so, and the API answers 503.
    let closed = format!(
        "postgres://postgres@127.0.0.1:{}/nothing",
        pushflow_testkit::free_port()
    );
    let down = Dashboard::start(&closed).await;
    let body = down.healthz(503).await;
    assert!(
        body["checks"]["dashboard.postgres"]
            .as_str()
            .is_some_and(|s| s != "ok"),
        "{body}"
    );
    let (status, body) = down.get("/api/v1/stores/s1/campaigns", Some(DEV)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("postgres"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_the_page_and_svg_charts() {
    let d = Dashboard::start(&database_with(&[TABLES, FIGURES]).await).await;
    let page = d.http.get(format!("{}/", d.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("content=\"1000\""),
        "refresh_interval filled in"
    );
    assert!(html.contains("content=\"1h,1m\""), "windows filled in");
    assert!(!html.contains("__"), "no placeholder left");
    for (asset, kind) in [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ] {
        ok_body(d.http.get(format!("{}/assets/{asset}", d.url)), kind).await;
    }

    let chart = d.http.get(format!(
        "{}/api/v1/stores/s1/campaigns/c-old/chart.svg?window=1m&width=390",
        d.url
    ));
    let svg = ok_body(chart.bearer_auth(DEV), "image/svg+xml").await;
    assert!(
        svg.starts_with("<svg") && svg.contains("width=\"390\""),
        "{svg}"
    );
    assert_eq!(svg.matches("data-kind=\"delivered\"").count(), 3);
    assert!(svg.contains("data-value=\"30\""));
    let (status, svg) = d
        .get(
            "/api/v1/stores/s1/subscribers/chart.svg?from=2026-03-01&to=2026-03-05",
            Some(DEV),
        )
        .await;
    assert_eq!(status, 200);
    let svg = svg.as_str().unwrap();
    assert!(
        svg.contains("<polyline") && svg.contains("2026-03-05: 111 active"),
        "{svg}"
    );
}
