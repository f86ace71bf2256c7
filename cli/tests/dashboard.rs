//! The merchant API and the dashboard page, end to end on the real
//! pipeline: `pushflow demo --serve` (a few hundred subscribers, a campaign
//! through push-sim with pings, a second campaign scheduled for tomorrow)
//! on its own broker, database and ports, kept running after its report.
//! Then:
//!
//! 1. Ground truth computed independently of pushflow: tests/python/
//!    store_truth.py reads the store's events from Kafka with another
//!    client and Avro reader and counts distinct ids; every number of every
//!    API call must equal it — the campaigns (titles, statuses, times,
//!    dispatched / failed / expired / delivered / clicked, CTR), the hourly
//!    and the per-minute series (which sum to the totals, late pings aside,
//!    read from `aggregate.late_events`), subscribers per day with the
//!    running `active`, billing — and billing equals
//!    `billing_monthly_impressions` read straight from Postgres. 401 without
//!    a token, 403 with a token scoped to another store
//!    (`PUSHFLOW_DASHBOARD_TOKENS`).
//! 2. The page in Debian's headless Chromium (DevTools protocol): the
//!    numbers it shows equal the API's, both SVG charts are drawn, the
//!    scheduled campaign is listed with its time; screenshots are saved
//!    (wide, and 390 px wide with no horizontal overflow, the token then
//!    coming from the browser's storage instead of the URL).
//! 3. Refresh: more clicks arrive (signed pings minted with the demo's
//!    ping key, posted to ingest); the open page shows the new count
//!    without a reload, and the API again equals the recomputed truth.
//! 4. SIGTERM stops the served demo, which exits 0 (its checks passed).

use pushflow_runtime::token::{PingClaims, PingKeys};
use pushflow_testkit::browser::{Cdp, Chromium};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SUBSCRIBERS: u64 = 300;
const DEV_TOKEN: &str = "pushflow-dev-token";
const OTHER_TOKEN: &str = "other-store-token";
/// New clicks sent while the page is open.
const MORE_CLICKS: usize = 5;

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The served demo; killed if the test ends early.
struct Served {
    child: Option<Child>,
}

impl Served {
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits (at most `within`) for the exit status.
    fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the served demo did not stop within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        pushflow_testkit::kill(&mut self.child);
    }
}

/// Reads the demo's stdout until the pretty JSON report is complete.
fn read_report(lines: &mpsc::Receiver<String>, within: Duration) -> Value {
    let started = Instant::now();
    let mut text = String::new();
    loop {
        let left = within.saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => {
                text.push_str(&line);
                text.push('\n');
                if line == "}" {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("demo report is not JSON ({e}):\n{text}"));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("pushflow demo printed no report within {within:?}; stdout so far:\n{text}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("pushflow demo exited before its report; stdout:\n{text}")
            }
        }
    }
}

struct Api {
    base: String,
    store: String,
    http: reqwest::Client,
}

impl Api {
    async fn get_with(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut r = self
            .http
            .get(format!("{}/api/v1/stores/{}{path}", self.base, self.store));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.get_with(path, Some(DEV_TOKEN)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{v} is not an integer"))
}

/// `{start: (delivered, clicked)}` of an API series.
fn api_series(c: &Value) -> BTreeMap<String, (i64, i64)> {
    pushflow_testkit::http::chart_series(c)
        .into_iter()
        .map(|(start, delivered, clicked)| (start, (delivered, clicked)))
        .collect()
}

fn truth_series(t: &Value) -> BTreeMap<String, (i64, i64)> {
    t.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), (int(&v["delivered"]), int(&v["clicked"]))))
        .collect()
}

/// The series equals the truth's windows, except pings the aggregate found
/// late for this window size (`late` = (delivered, clicked)): those are in
/// no window, so the series sums to the totals minus them.
fn check_series(
    what: &str,
    api: &BTreeMap<String, (i64, i64)>,
    truth: &BTreeMap<String, (i64, i64)>,
    totals: (i64, i64),
    late: (i64, i64),
) {
    let sum =
        |s: &BTreeMap<String, (i64, i64)>| s.values().fold((0, 0), |(d, c), (a, b)| (d + a, c + b));
    assert_eq!(
        sum(api),
        (totals.0 - late.0, totals.1 - late.1),
        "{what}: the series sums to the totals {totals:?} minus the late pings {late:?}"
    );
    if late == (0, 0) {
        assert_eq!(api, truth, "{what}: every window as counted from the log");
    } else {
        for (start, (d, c)) in api {
            let (td, tc) = truth.get(start).copied().unwrap_or((0, 0));
            assert!(
                *d <= td && *c <= tc,
                "{what} {start}: ({d}, {c}) beyond the log's ({td}, {tc})"
            );
        }
    }
}

/// Checks every number the API answers against `truth`; returns the demo
/// campaign's API answer.
async fn check_api(
    api: &Api,
    truth: &Value,
    pg: &tokio_postgres::Client,
    campaign_id: &str,
) -> Value {
    let list = api.get("/campaigns").await;
    let listed: Vec<&Value> = list["campaigns"].as_array().unwrap().iter().collect();
    let truth_campaigns = truth["campaigns"].as_object().unwrap();
    assert_eq!(
        listed.len(),
        truth_campaigns.len(),
        "one entry per campaign of the store: {list}"
    );
    let late_rows = pg
        .query(
            "SELECT campaign_id, window_size::text, kind, count(*) FROM aggregate.late_events
             WHERE store_id = $1 GROUP BY 1, 2, 3",
            &[&api.store],
        )
        .await
        .unwrap();
    let late = |campaign: &str, window: &str| {
        let mut out = (0, 0);
        for r in &late_rows {
            let (c, w, kind, n): (String, String, i16, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if c == campaign && w == window {
                match kind {
                    0 => out.0 += n,
                    _ => out.1 += n,
                }
            }
        }
        out
    };
    let mut demo = Value::Null;
    for (id, t) in truth_campaigns {
        let c = api.get(&format!("/campaigns/{id}")).await;
        let status = match (
            t["launched_at"].is_null(),
            t["cancelled_at"].is_null(),
            t["scheduled_at"].is_null(),
        ) {
            (false, _, _) => "launched",
            (true, false, _) => "cancelled",
            (true, true, false) => "scheduled",
            _ => "draft",
        };
        assert_eq!(c["status"], status, "{id}: {c}");
        for f in [
            "title",
            "created_at",
            "scheduled_at",
            "launched_at",
            "cancelled_at",
            "throttle_per_minute",
            "dispatched",
            "failed",
            "expired",
            "delivered",
            "clicked",
        ] {
            assert_eq!(c[f], t[f], "{id}: {f} (API {c}, log {t})");
        }
        assert_eq!(
            t["outcome_overlap"], 0,
            "{id}: one outcome per notification"
        );
        let (d, k) = (int(&t["delivered"]), int(&t["clicked"]));
        assert_eq!(
            int(&c["audience"]),
            int(&t["dispatched"]) + int(&t["failed"]) + int(&t["expired"])
        );
        let ctr = c["ctr"].as_f64().unwrap();
        let want = if d == 0 { 0.0 } else { k as f64 / d as f64 };
        assert!((ctr - want).abs() < 1e-12, "{id}: ctr {ctr} vs {want}");
        assert_eq!(c["window"], "1h");
        check_series(
            &format!("{id} hourly"),
            &api_series(&c),
            &truth_series(&t["hourly"]),
            (d, k),
            late(id, "01:00:00"),
        );
        let m = api.get(&format!("/campaigns/{id}?window=1m")).await;
        assert_eq!((int(&m["delivered"]), int(&m["clicked"])), (d, k));
        check_series(
            &format!("{id} per minute"),
            &api_series(&m),
            &truth_series(&t["minutely"]),
            (d, k),
            late(id, "00:01:00"),
        );
        let mut from_list = (*listed
            .iter()
            .find(|l| l["campaign_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} is not listed")))
        .clone();
        from_list["ctr"] = c["ctr"].clone();
        assert_eq!(from_list, c, "{id}: the list holds the same campaign");
        if id == campaign_id {
            demo = c;
        }
    }
    // Newest first: the scheduled campaign was created after the launched one.
    let created: Vec<&str> = listed
        .iter()
        .map(|c| c["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");

    // Subscribers per UTC day, active summed from the store's first day.
    let days = truth["days"].as_object().unwrap();
    let first = days
        .keys()
        .next()
        .expect("the store has subscribers")
        .clone();
    let today = chrono::Utc::now().date_naive().to_string();
    let answer = api
        .get(&format!("/subscribers?from={first}&to={today}"))
        .await;
    let mut active = 0;
    let mut seen_days = 0;
    for d in answer["days"].as_array().unwrap() {
        let day = d["day"].as_str().unwrap();
        let (s, e) = days
            .get(day)
            .map_or((0, 0), |t| (int(&t["subscribed"]), int(&t["expired"])));
        active += s - e;
        assert_eq!(
            (int(&d["subscribed"]), int(&d["expired"]), int(&d["active"])),
            (s, e, active),
            "{day}"
        );
        seen_days += days.contains_key(day) as usize;
    }
    assert_eq!(
        seen_days,
        days.len(),
        "every day of the log is in the range"
    );

    // Billing: the log's distinct pings, and the view billing reads.
    let month = today[..7].to_string();
    let b = api.get(&format!("/billing?month={month}")).await;
    let t = &truth["months"][&month];
    assert_eq!(
        (int(&b["impressions"]), int(&b["clicks"])),
        (int(&t["impressions"]), int(&t["clicks"])),
        "billing vs the log"
    );
    let row = pg
        .query_one(
            "SELECT impressions, clicks FROM billing_monthly_impressions
             WHERE store_id = $1 AND month = $2::text::date",
            &[&api.store, &format!("{month}-01")],
        )
        .await
        .unwrap();
    assert_eq!(
        (int(&b["impressions"]), int(&b["clicks"])),
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        "billing vs billing_monthly_impressions"
    );
    assert_eq!(b["month"], month.as_str());
    demo
}

/// What the page shows, once it has rendered at least `min_refreshes`
/// times (`null` before).
fn page_state(min_refreshes: u64) -> String {
    format!(
        r#"(() => {{
  const b = document.querySelector('[data-testid="board"]');
  if (!b || b.hidden || !(Number(b.dataset.refreshes) >= {min_refreshes})) return null;
  const t = (id) => document.querySelector(`[data-testid="${{id}}"]`);
  const text = (id) => t(id).textContent;
  const chart = (id) => ({{
    svg: t(id).querySelector('svg') !== null,
    bars: t(id).querySelectorAll('rect[data-kind]').length,
    width: t(id).querySelector('svg') ? Number(t(id).querySelector('svg').getAttribute('width')) : 0,
  }});
  return {{
    refreshes: Number(b.dataset.refreshes),
    marker: window.__pushflowMarker || null,
    campaign_id: document.getElementById('campaign').dataset.campaignId,
    title: text('campaign-title'),
    status: text('campaign-status'),
    numbers: Object.fromEntries(['dispatched', 'delivered', 'clicked', 'audience', 'failed', 'expired']
      .map((f) => [f, text('campaign-' + f)])),
    ctr: {{ text: text('campaign-ctr'), value: Number(t('campaign-ctr').dataset.value) }},
    billing: {{ month: text('billing-month'), impressions: text('billing-impressions'), clicks: text('billing-clicks') }},
    subscribers: {{ active: text('subscribers-active') }},
    rows: [...document.querySelectorAll('[data-testid="campaign-row"]')].map((li) => ({{
      id: li.dataset.campaignId,
      title: li.querySelector('.title').textContent,
      status: li.querySelector('.pill').textContent,
      dispatched: li.querySelector('[data-field="dispatched"]').textContent,
      delivered: li.querySelector('[data-field="delivered"]').textContent,
      clicked: li.querySelector('[data-field="clicked"]').textContent,
    }})),
    scheduled: [...document.querySelectorAll('[data-testid="scheduled-row"]')].map((li) => ({{
      id: li.dataset.campaignId, at: li.dataset.scheduledAt, text: li.textContent,
    }})),
    charts: {{ campaign: chart('campaign-chart'), subscribers: chart('subscribers-chart') }},
    scroll_width: document.documentElement.scrollWidth,
    inner_width: window.innerWidth,
  }};
}})()"#
    )
}

/// A number as the page writes it (`1,234`).
fn shown(text: &Value) -> i64 {
    let s = text.as_str().unwrap_or_default();
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{text} shows no number"))
}

/// The page's numbers equal the API's answers.
fn check_page(page: &Value, campaign: &Value, list: &Value, billing: &Value, active: i64) {
    assert_eq!(page["campaign_id"], campaign["campaign_id"], "{page}");
    assert_eq!(page["title"], campaign["title"]);
    assert_eq!(page["status"], campaign["status"]);
    for f in [
        "dispatched",
        "delivered",
        "clicked",
        "audience",
        "failed",
        "expired",
    ] {
        assert_eq!(
            shown(&page["numbers"][f]),
            int(&campaign[f]),
            "the page's {f}: {page}"
        );
    }
    let ctr = campaign["ctr"].as_f64().unwrap();
    assert!((page["ctr"]["value"].as_f64().unwrap() - ctr).abs() < 1e-12);
    let ctr_text: f64 = page["ctr"]["text"]
        .as_str()
        .unwrap()
        .trim_end_matches(" %")
        .parse()
        .unwrap();
    assert!((ctr_text - ctr * 100.0).abs() <= 0.05 + 1e-9, "{page}");
    assert_eq!(page["billing"]["month"], billing["month"]);
    assert_eq!(
        shown(&page["billing"]["impressions"]),
        int(&billing["impressions"])
    );
    assert_eq!(shown(&page["billing"]["clicks"]), int(&billing["clicks"]));
    assert_eq!(shown(&page["subscribers"]["active"]), active);
    let rows = page["rows"].as_array().unwrap();
    let listed = list["campaigns"].as_array().unwrap();
    assert_eq!(rows.len(), listed.len(), "{page}");
    for (row, c) in rows.iter().zip(listed) {
        assert_eq!(row["id"], c["campaign_id"], "same order as the API");
        assert_eq!(row["title"], c["title"]);
        assert_eq!(row["status"], c["status"]);
        for f in ["dispatched", "delivered", "clicked"] {
            assert_eq!(shown(&row[f]), int(&c[f]), "{f} of {row}");
        }
    }
    let scheduled: Vec<&Value> = listed
        .iter()
        .filter(|c| c["status"] == "scheduled")
        .collect();
    let rows = page["scheduled"].as_array().unwrap();
    assert_eq!(rows.len(), scheduled.len(), "{page}");
    for (row, c) in rows.iter().zip(&scheduled) {
        assert_eq!(row["id"], c["campaign_id"]);
        assert_eq!(row["at"], c["scheduled_at"], "with its time");
        assert!(
            row["text"]
                .as_str()
                .unwrap()
                .contains(c["title"].as_str().unwrap()),
            "{row}"
        );
    }
    for chart in ["campaign", "subscribers"] {
        assert_eq!(page["charts"][chart]["svg"], true, "{chart} chart: {page}");
        assert!(
            int(&page["charts"][chart]["bars"]) > 0,
            "{chart} chart has bars: {page}"
        );
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn save_screenshot(cdp: &Cdp, page: &str, name: &str) {
    let png = cdp.screenshot(page, true).await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_path(name);
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {} ({} bytes)", path.display(), png.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_exactly_what_the_log_holds() {
    let started = Instant::now();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let broker = pushflow_testkit::PrivateBroker::start();
    let (_, database_url) = pushflow_testkit::fresh_database("dashboard_e2e");
    let registry_addr = free_addr();
    let ingest_addr = free_addr();
    let dashboard_addr = free_addr();
    let lake = std::env::temp_dir().join(pushflow_testkit::unique("dashboard-lake"));
    let ping_keys = format!("k1:{}", pushflow_testkit::unique("dashboard-ping-key"));
    let envs = [
        ("PUSHFLOW_BROKERS", broker.addr.clone()),
        ("PUSHFLOW_DATABASE_URL", database_url.clone()),
        ("PUSHFLOW_REGISTRY_ADDR", registry_addr.clone()),
        ("PUSHFLOW_REGISTRY_URL", format!("http://{registry_addr}")),
        ("PUSHFLOW_METRICS_ADDR", free_addr()),
        ("PUSHFLOW_INGEST_ADDR", ingest_addr.clone()),
        ("PUSHFLOW_DASHBOARD_ADDR", dashboard_addr.clone()),
        (
            "PUSHFLOW_DASHBOARD_TOKENS",
            format!("dev:{DEV_TOKEN}; other:{OTHER_TOKEN}:another-store"),
        ),
        ("PUSHFLOW_PING_KEYS", ping_keys.clone()),
        ("PUSHFLOW_LAKE_URL", format!("file://{}", lake.display())),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .current_dir(&repo)
        .args(["demo", "--json", "--serve", "--phase-timeout", "3m"])
        .args(["--subscribers", &SUBSCRIBERS.to_string()])
        // Most notifications pinged and many clicked, so every check
        // has figures to compare (the defaults are the seed's peak hour).
        .args(["--delivered", "0.97", "--clicked", "0.12"])
        .envs(envs.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut served = Served { child: Some(child) };
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let report = tokio::task::block_in_place(|| read_report(&lines, Duration::from_secs(600)));
    for check in report["checks"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "demo check failed: {check}");
    }
    println!("demo report after {:?}", started.elapsed());
    let store = report["store_id"].as_str().unwrap().to_string();
    let campaign_id = report["campaign_id"].as_str().unwrap().to_string();
    let scheduled_id = report["scheduled_campaign"]["campaign_id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("http://{dashboard_addr}");
    let url = format!("{base}/?store={store}&campaign={campaign_id}&token={DEV_TOKEN}");
    assert_eq!(report["dashboard"]["url"], url.as_str(), "the report's URL");

    let api = Api {
        base: base.clone(),
        store: store.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    };
    let health = pushflow_testkit::http::get_json(&api.http, &format!("{base}/healthz")).await;
    assert_eq!(health["checks"]["dashboard.postgres"], "ok", "{health}");

    // Scoped tokens.
    let (status, body) = api.get_with("/campaigns", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = api.get_with("/billing", Some("wrong-token-123")).await;
    assert_eq!(status, 401, "{body}");
    for path in [
        "/campaigns",
        &format!("/campaigns/{campaign_id}"),
        "/subscribers",
        "/billing",
    ] {
        let (status, body) = api.get_with(path, Some(OTHER_TOKEN)).await;
        assert_eq!(status, 403, "{path} with another store's token: {body}");
        assert!(body["error"].as_str().unwrap().contains(&store), "{body}");
    }

    // 1. Every number against the log.
    let (pg, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let registry_url = format!("http://{registry_addr}");
    let truth_of = || -> Value {
        serde_json::from_str(&pushflow_testkit::python(
            "store_truth.py",
            &[&broker.addr, &registry_url, &store],
        ))
        .unwrap()
    };
    let truth = tokio::task::block_in_place(truth_of);
    assert_eq!(
        truth["campaigns"].as_object().map(|c| c.len()),
        Some(2),
        "the launched and the scheduled campaign: {truth}"
    );
    assert_eq!(
        int(&truth["campaigns"][&campaign_id]["dispatched"]),
        SUBSCRIBERS as i64
    );
    assert!(truth["campaigns"][&scheduled_id]["scheduled_at"].is_string());
    let campaign = check_api(&api, &truth, &pg, &campaign_id).await;
    assert!(int(&campaign["delivered"]) > SUBSCRIBERS as i64 / 2);
    let scheduled = api.get(&format!("/campaigns/{scheduled_id}")).await;
    assert_eq!(scheduled["status"], "scheduled");
    assert_eq!(
        scheduled["scheduled_at"].as_str(),
        report["scheduled_campaign"]["send_at"].as_str()
    );
    println!("API = log after {:?}", started.elapsed());

    // 2. The page shows the API's numbers. Analytics may still be counting
    // the last subscription events when the campaign numbers already equal
    // the log: the page is read once the API's subscriber count settled
    // (asserted below), so both show the same moment.
    let today = chrono::Utc::now().date_naive().to_string();
    let settled = Instant::now() + Duration::from_secs(60);
    let days = loop {
        let d = api
            .get(&format!("/subscribers?from={today}&to={today}"))
            .await;
        let done = d["days"][0]["active"].as_i64() == Some(SUBSCRIBERS as i64);
        if done || Instant::now() > settled {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let chromium = Chromium::launch();
    let cdp = chromium.connect().await;
    let page = cdp.new_page().await;
    cdp.set_viewport(&page, 1280, 900, false).await;
    cdp.navigate(&page, &url).await;
    let state = cdp
        .wait_for(
            &page,
            "the page renders",
            Duration::from_secs(60),
            &page_state(1),
        )
        .await;
    let list = api.get("/campaigns").await;
    let billing = api.get("/billing").await;
    let active = int(&days["days"][0]["active"]);
    assert_eq!(active, SUBSCRIBERS as i64);
    check_page(&state, &campaign, &list, &billing, active);
    let location = cdp.evaluate(&page, "location.search").await;
    assert!(
        !location.as_str().unwrap().contains("token"),
        "the token leaves the address bar: {location}"
    );
    save_screenshot(&cdp, &page, "dashboard-wide.png").await;

    // On a phone: 390 px wide, no sideways scrolling; the token now comes
    // from the browser's storage.
    cdp.set_viewport(&page, 390, 844, true).await;
    cdp.navigate(
        &page,
        &format!("{base}/?store={store}&campaign={campaign_id}"),
    )
    .await;
    let narrow = cdp
        .wait_for(
            &page,
            "the page renders narrow",
            Duration::from_secs(60),
            &page_state(1),
        )
        .await;
    check_page(&narrow, &campaign, &list, &billing, active);
    assert!(
        int(&narrow["scroll_width"]) <= int(&narrow["inner_width"]),
        "no horizontal overflow at 390 px: {narrow}"
    );
    assert!(
        int(&narrow["charts"]["campaign"]["width"]) <= 390,
        "the chart is drawn for the phone's width: {narrow}"
    );
    save_screenshot(&cdp, &page, "dashboard-narrow.png").await;

    // 3. More clicks arrive; the open page follows without a reload.
    cdp.evaluate(&page, "window.__pushflowMarker = 'same page'; true")
        .await;
    let before = cdp
        .wait_for(
            &page,
            "the page state",
            Duration::from_secs(10),
            &page_state(1),
        )
        .await;
    let keys = PingKeys::parse(&ping_keys).unwrap();
    let now = chrono::Utc::now().timestamp();
    let targets: Vec<&Value> = truth["delivered_not_clicked"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t[1] == campaign_id.as_str())
        .take(MORE_CLICKS)
        .collect();
    assert_eq!(targets.len(), MORE_CLICKS, "enough unclicked notifications");
    for t in &targets {
        let token = keys.mint(&PingClaims {
            notification_id: t[0].as_str().unwrap().into(),
            campaign_id: t[1].as_str().unwrap().into(),
            store_id: store.clone(),
            subscriber_id: t[2].as_str().unwrap().into(),
            exp: now + 3600,
            iat: Some(now - 60),
        });
        let r = api
            .http
            .post(format!("http://{ingest_addr}/v1/pings"))
            .json(&json!({"type": "clicked", "token": token, "at": pushflow_schemas::now_millis()}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
    }
    let want = int(&campaign["clicked"]) + MORE_CLICKS as i64;
    let expression = format!(
        "(() => {{ const s = {}; return s && Number(s.numbers.clicked.replace(/[^0-9]/g, '')) === {want} ? s : null; }})()",
        page_state(int(&before["refreshes"]) as u64 + 1)
    );
    let after = cdp
        .wait_for(
            &page,
            "the page shows the new clicks",
            Duration::from_secs(90),
            &expression,
        )
        .await;
    assert_eq!(after["marker"], "same page", "no reload: {after}");
    assert!(int(&after["refreshes"]) > int(&before["refreshes"]));
    let truth = tokio::task::block_in_place(truth_of);
    let campaign = check_api(&api, &truth, &pg, &campaign_id).await;
    assert_eq!(int(&campaign["clicked"]), want, "the API, as the log");
    let list = api.get("/campaigns").await;
    let billing = api.get("/billing").await;
    let state = cdp
        .wait_for(
            &page,
            "the page state",
            Duration::from_secs(10),
            &page_state(1),
        )
        .await;
    check_page(&state, &campaign, &list, &billing, active);
    save_screenshot(&cdp, &page, "dashboard-refreshed.png").await;
    drop(cdp);
    drop(chromium);

    // 4. SIGTERM stops the served demo cleanly.
    let status = tokio::task::block_in_place(|| served.terminate(Duration::from_secs(90)));
    assert!(status.success(), "the served demo exited with {status}");
    let _ = std::fs::remove_dir_all(&lake);
    println!("done in {:?}", started.elapsed());
}
