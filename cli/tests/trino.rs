//! Trino reads the lake: a real Trino server (`scripts/trino`: Hive
//! connector, file metastore, native S3) over the lake that `pushflow demo`
//! writes to an S3-compatible server (moto), on its own broker and
//! database. Every statement `pushflow lake ddl` prints for Trino is run as
//! printed (schema, tables, partition sync), then the analysts' queries are
//! checked against ground truth read elsewhere: rows per table against the
//! records on each topic (another Kafka client), distinct delivered and
//! clicked notifications per store and month against the billing view in
//! Postgres, and every delivered event's time, to the millisecond in UTC,
//! against the topic's records decoded by another Avro reader.
//!
//! Trino's JVM runs in a zone far from UTC and statements are sent with
//! session zones of UTC and of Kathmandu: the times must read back as
//! stored, in UTC, either way (the catalog's `hive.parquet.time-zone`).
//!
//! Besides the demo's merchant, a fixture merchant's pings are produced
//! first with chosen times (zero-padded hours, month ends, milliseconds),
//! so the partitions and timestamps checked do not depend on when the test
//! runs.

use pushflow_runtime::codec::Codec;
use pushflow_schemas::{Event, NotificationDelivered};
use pushflow_testkit::{S3_KEY, S3_REGION};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SUBSCRIBERS: u64 = 300;

/// Every topic of the catalogue.
fn topics() -> impl Iterator<Item = &'static str> {
    pushflow_schemas::CATALOGUE.iter().map(|t| t.name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The last `n` lines of a log file, for failure messages.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` to its end, killed and failed after `within`.
async fn run_bounded(cmd: &mut Command, within: Duration, what: &str) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let started = Instant::now();
    while !waiter.is_finished() {
        if started.elapsed() > within {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{what} did not finish within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = waiter.join().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// How long Trino may take to start, its first fetch with Maven included.
const TRINO_START: Duration = Duration::from_secs(420);

/// Polls `GET /v1/info` until Trino says it is no longer starting: how long
/// that took, or `None` after [`TRINO_START`].
async fn wait_trino_ready(base: String) -> Option<Duration> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < TRINO_START {
        if let Ok(r) = http.get(format!("{base}/v1/info")).send().await {
            if let Ok(info) = r.json::<Value>().await {
                if info["starting"] == false {
                    return Some(started.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// A client of Trino's HTTP protocol: POST the statement, follow `nextUri`
/// until there is none, collecting `data`.
struct Trino {
    http: reqwest::Client,
    base: String,
    /// The session time zone sent with every statement.
    time_zone: &'static str,
}

impl Trino {
    /// One request of the protocol; 502, 503 and 504 mean "send it again".
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Value, String> {
        loop {
            let r = request
                .try_clone()
                .expect("a request without a streamed body")
                .send()
                .await
                .map_err(|e| format!("Trino: {e}"))?;
            let status = r.status();
            if !matches!(status.as_u16(), 502..=504) {
                return r
                    .json()
                    .await
                    .map_err(|e| format!("{status}: not JSON: {e}"));
            }
            if Instant::now() > deadline {
                return Err(format!("Trino answered {status} until the deadline"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs one statement to its end: its rows, or Trino's error.
    async fn run(&self, sql: &str) -> Result<Vec<Vec<Value>>, String> {
        let deadline = Instant::now() + Duration::from_secs(180);
        let post = self
            .http
            .post(format!("{}/v1/statement", self.base))
            .header("X-Trino-User", "pushflow-test")
            .header("X-Trino-Time-Zone", self.time_zone)
            .body(sql.to_string());
        let mut page = self.send(post, deadline).await?;
        let mut rows = Vec::new();
        loop {
            if let Some(error) = page.get("error") {
                return Err(format!(
                    "{}: {}",
                    error["errorName"].as_str().unwrap_or("?"),
                    error["message"].as_str().unwrap_or("?")
                ));
            }
            if let Some(data) = page.get("data").and_then(Value::as_array) {
                for row in data {
                    rows.push(row.as_array().cloned().unwrap_or_default());
                }
            }
            let Some(next) = page.get("nextUri").and_then(Value::as_str) else {
                return Ok(rows);
            };
            if Instant::now() > deadline {
                return Err("no answer within 180 s".into());
            }
            page = self.send(self.http.get(next), deadline).await?;
        }
    }

    async fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        self.run(sql)
            .await
            .unwrap_or_else(|e| panic!("Trino refused {sql}\n{e}"))
    }
}

/// The statements of the Trino part of `pushflow lake ddl`: from its
/// `-- Trino` line on, comment lines dropped, split at `;` ending a line.
fn trino_statements(ddl: &str) -> Vec<String> {
    let start = ddl
        .find("\n-- Trino")
        .unwrap_or_else(|| panic!("no `-- Trino` section in:\n{ddl}"));
    pushflow_s3_parquet::ddl::statements(&ddl[start..])
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{v} is not an integer"))
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is not a string"))
        .to_string()
}

/// `YYYY-MM-DD HH:MM:SS.mmm` of `ms` in UTC, as Trino shows a timestamp(3).
fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// The fixture merchant's pings: (notification, time in ms). Hours with a
/// leading zero, the last millisecond of a month and the first of the next,
/// a notification pinged twice in one hour (one impression).
fn fixture() -> Vec<(&'static str, i64)> {
    vec![
        ("fx-1", 1_767_330_428_001), // 2026-01-02 05:07:08.001
        ("fx-2", 1_767_333_599_999), // 2026-01-02 05:59:59.999
        ("fx-2", 1_767_333_500_123), // 2026-01-02 05:58:20.123, again
        ("fx-3", 1_769_903_999_999), // 2026-01-31 23:59:59.999
        ("fx-4", 1_769_904_000_000), // 2026-02-01 00:00:00.000
        ("fx-5", 1_769_907_661_042), // 2026-02-01 01:01:01.042
    ]
}

async fn produce_fixture(brokers: &str, registry: &str, store: &str) -> Vec<NotificationDelivered> {
    let codec = Codec::for_registry(registry).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let mut events = Vec::new();
    for (notification, at) in fixture() {
        let e = NotificationDelivered {
            event_id: uuid::Uuid::new_v4().to_string(),
            occurred_at: at,
            store_id: store.to_string(),
            notification_id: notification.to_string(),
            campaign_id: "fx-campaign".into(),
        };
        let payload = codec.encode(&e).await.unwrap();
        producer
            .send(
                FutureRecord::to(NotificationDelivered::TOPIC)
                    .key(e.key())
                    .payload(&payload),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("the fixture ping is acknowledged");
        events.push(e);
    }
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn trino_runs_the_printed_ddl_and_agrees_with_topics_and_billing() {
    let test_started = Instant::now();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pushflow = env!("CARGO_BIN_EXE_pushflow");
    let work: PathBuf = std::env::temp_dir().join(pushflow_testkit::unique("trino-test"));
    std::fs::create_dir_all(&work).unwrap();

    // 1. Trino first: it takes half a minute to start, meanwhile the rest runs.
    let (s3, _moto) = pushflow_testkit::s3_endpoint();
    let trino_port = free_port();
    let trino_log = work.join("trino.log");
    let log = std::fs::File::create(&trino_log).unwrap();
    let mut trino_child = Killed(
        Command::new(repo.join("scripts/trino"))
            .arg("run")
            .arg(work.join("trino"))
            .arg(trino_port.to_string())
            .arg(&s3)
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_KEY)
            .env("AWS_REGION", S3_REGION)
            // A JVM zone far from UTC: the lake's times must read back in
            // UTC because the catalog says so, not because the machine is.
            .env("PUSHFLOW_TRINO_TIMEZONE", "Asia/Kathmandu")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start scripts/trino (Maven and Java 25 needed)"),
    );
    // Polled from now on, so the time it took to start is measured.
    let trino_base = format!("http://127.0.0.1:{trino_port}");
    let trino_started = tokio::spawn(wait_trino_ready(trino_base.clone()));

    // 2. A bucket, a broker and a database of the test's own.
    let bucket = pushflow_testkit::unique("trino").to_lowercase();
    pushflow_testkit::python("lake_s3_check.py", &["create", &s3, &bucket]);
    let lake = format!("s3://{bucket}/lake");
    let broker = pushflow_testkit::PrivateBroker::start();
    let (db_name, database_url) = pushflow_testkit::fresh_database("trino");
    pushflow_testkit::create_database(&db_name).await;

    // 3. A registry over that database for the fixture and the decoder,
    //    beside the demo's own (same database, so the same schema ids).
    let registry_addr = free_addr();
    let registry_url = format!("http://{registry_addr}");
    let _registry = Killed(
        Command::new(pushflow)
            .current_dir(&repo)
            .arg("registry")
            .env("PUSHFLOW_DATABASE_URL", &database_url)
            .env("PUSHFLOW_REGISTRY_ADDR", &registry_addr)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    while !http
        .get(format!("{registry_url}/subjects"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "pushflow registry did not answer on {registry_addr} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let demo_registry_addr = free_addr();
    let envs: Vec<(&str, String)> = vec![
        ("PUSHFLOW_BROKERS", broker.addr.clone()),
        ("PUSHFLOW_DATABASE_URL", database_url.clone()),
        ("PUSHFLOW_REGISTRY_ADDR", demo_registry_addr.clone()),
        (
            "PUSHFLOW_REGISTRY_URL",
            format!("http://{demo_registry_addr}"),
        ),
        ("PUSHFLOW_METRICS_ADDR", free_addr()),
        ("PUSHFLOW_INGEST_ADDR", free_addr()),
        ("PUSHFLOW_DASHBOARD_ADDR", free_addr()),
        ("PUSHFLOW_LAKE_URL", lake.clone()),
        ("PUSHFLOW_ALLOW_INSECURE_PUSH", "1".into()),
        ("AWS_ENDPOINT_URL", s3.clone()),
        ("AWS_ACCESS_KEY_ID", S3_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", S3_KEY.into()),
        ("AWS_REGION", S3_REGION.into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ];
    run_bounded(
        Command::new(pushflow)
            .current_dir(&repo)
            .args(["topology", "apply"])
            .envs(envs.iter().cloned())
            .env("PUSHFLOW_REGISTRY_URL", &registry_url),
        Duration::from_secs(120),
        "pushflow topology apply",
    )
    .await;

    // 4. The fixture merchant's pings, then the demo's whole pipeline.
    let fixture_store = pushflow_testkit::unique("fixture-store");
    let fixture_events = produce_fixture(&broker.addr, &registry_url, &fixture_store).await;
    let out = run_bounded(
        Command::new(pushflow)
            .current_dir(&repo)
            .args(["demo", "--json", "--phase-timeout", "3m"])
            .args(["--subscribers", &SUBSCRIBERS.to_string()])
            // Most notifications pinged and many clicked, so every check
            // has figures to compare (the defaults are the seed's peak hour).
            .args(["--delivered", "0.97", "--clicked", "0.12"])
            .envs(envs.iter().cloned()),
        Duration::from_secs(600),
        "pushflow demo",
    )
    .await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "demo printed no JSON report ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    for check in report["checks"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "demo check failed: {check}");
    }
    let demo_store = text(&report["store_id"]);
    let demo_done = test_started.elapsed();

    // 5. Trino up: /v1/info says it is no longer starting.
    while !trino_started.is_finished() {
        if let Some(status) = trino_child.0.try_wait().unwrap() {
            panic!("scripts/trino exited ({status}):\n{}", tail(&trino_log, 40));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some(trino_ready) = trino_started.await.unwrap() else {
        panic!(
            "Trino did not start within {TRINO_START:?} (the first start fetches it with Maven):\n{}",
            tail(&trino_log, 40)
        );
    };
    let trino = Trino {
        http: http.clone(),
        base: trino_base,
        time_zone: "UTC",
    };

    // 6. Every Trino statement of `pushflow lake ddl`, as printed, in order;
    //    twice (an analyst re-runs it to register new hours).
    let ddl = run_bounded(
        Command::new(pushflow)
            .current_dir(&repo)
            .args(["lake", "ddl", "--location", &lake])
            .envs(envs.iter().cloned()),
        Duration::from_secs(60),
        "pushflow lake ddl",
    )
    .await;
    let ddl = String::from_utf8(ddl.stdout).unwrap();
    let statements = trino_statements(&ddl);
    assert!(
        statements[0].starts_with("CREATE SCHEMA"),
        "the schema comes first: {statements:?}"
    );
    let creates = statements
        .iter()
        .filter(|s| s.starts_with("CREATE TABLE"))
        .count();
    let calls = statements
        .iter()
        .filter(|s| s.starts_with("CALL") && s.contains("sync_partition_metadata"))
        .count();
    assert_eq!(
        (creates, calls),
        (topics().count(), topics().count()),
        "a table and a partition sync per topic: {statements:#?}"
    );
    for round in 0..2 {
        for s in &statements {
            if let Err(e) = trino.run(s).await {
                panic!(
                    "round {round}: Trino refused a statement of `pushflow lake ddl`:\n{s}\n{e}"
                );
            }
        }
    }
    let table = |t: &str| format!("lake.pushflow.{}", t.replace('.', "_"));

    // 7. Rows per table = records on the topic (read by another client).
    let mut args: Vec<String> = vec![broker.addr.clone()];
    args.extend(topics().map(|t| t.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let records: BTreeMap<String, i64> =
        serde_json::from_str(&pushflow_testkit::python("topic_counts.py", &args)).unwrap();
    let mut rows = BTreeMap::new();
    for topic in topics() {
        let r = trino
            .query(&format!("SELECT count(*) FROM {}", table(topic)))
            .await;
        rows.insert(topic.to_string(), int(&r[0][0]));
    }
    assert_eq!(
        rows, records,
        "Trino's rows per table vs the topics' records"
    );
    assert_eq!(
        records["subscription.created"], SUBSCRIBERS as i64,
        "the demo's subscribers"
    );
    assert!(
        records["notification.delivered"] > fixture().len() as i64,
        "{records:?}"
    );

    // 8. Distinct delivered and clicked per store and month = billing.
    let (pg, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut billing: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for row in pg
        .query(
            "SELECT store_id, month::text, impressions, clicks FROM billing_monthly_impressions",
            &[],
        )
        .await
        .unwrap()
    {
        billing.insert((row.get(0), row.get(1)), (row.get(2), row.get(3)));
    }
    let mut lake_totals: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for (t, clicks) in [
        ("notification.delivered", false),
        ("notification.clicked", true),
    ] {
        for r in trino
            .query(&format!(
                "SELECT store_id, CAST(CAST(date_trunc('month', occurred_at) AS date) AS varchar), \
                 count(DISTINCT notification_id) FROM {} GROUP BY 1, 2",
                table(t)
            ))
            .await
        {
            let e = lake_totals.entry((text(&r[0]), text(&r[1]))).or_default();
            if clicks {
                e.1 = int(&r[2]);
            } else {
                e.0 = int(&r[2]);
            }
        }
    }
    assert_eq!(
        lake_totals, billing,
        "Trino's distinct delivered/clicked per (store, month) vs billing_monthly_impressions"
    );
    assert_eq!(
        billing.get(&(fixture_store.clone(), "2026-01-01".into())),
        Some(&(3, 0)),
        "{billing:?}"
    );
    assert_eq!(
        billing.get(&(fixture_store.clone(), "2026-02-01".into())),
        Some(&(2, 0)),
        "{billing:?}"
    );
    // Per campaign, as an analyst asks it: the demo's one campaign.
    let per_campaign = trino
        .query(&format!(
            "SELECT campaign_id, count(DISTINCT notification_id) FROM {} \
             WHERE store_id = '{demo_store}' GROUP BY 1",
            table("notification.delivered")
        ))
        .await;
    let billed: i64 = billing
        .iter()
        .filter(|((s, _), _)| *s == demo_store)
        .map(|(_, (i, _))| i)
        .sum();
    assert_eq!(per_campaign.len(), 1, "{per_campaign:?}");
    assert_eq!(text(&per_campaign[0][0]), text(&report["campaign_id"]));
    assert_eq!(int(&per_campaign[0][1]), billed, "demo campaign vs billing");

    // 9. Every delivered event's time, to the millisecond, in UTC, against
    //    the topic decoded by another Avro reader; dt/hour are its UTC hour.
    //    Read with a session zone far from UTC: a timestamp(3) is shown as
    //    stored, the UTC wall clock.
    let produced: BTreeMap<String, i64> = serde_json::from_str(&pushflow_testkit::python(
        "topic_timestamps.py",
        &[&broker.addr, &registry_url, "notification.delivered"],
    ))
    .unwrap();
    for e in &fixture_events {
        assert_eq!(produced.get(&e.event_id), Some(&e.occurred_at), "{e:?}");
    }
    for time_zone in ["UTC", "Asia/Kathmandu"] {
        let trino = Trino {
            http: http.clone(),
            base: trino.base.clone(),
            time_zone,
        };
        let mut read = BTreeMap::new();
        for r in trino
            .query(&format!(
                "SELECT event_id, date_diff('millisecond', TIMESTAMP '1970-01-01 00:00:00', occurred_at), \
                 CAST(occurred_at AS varchar), dt, hour FROM {}",
                table("notification.delivered")
            ))
            .await
        {
            let (id, ms) = (text(&r[0]), int(&r[1]));
            assert_eq!(text(&r[2]), utc(ms), "{time_zone}: {r:?}");
            assert_eq!(text(&r[3]), utc(ms)[..10], "dt is the UTC date: {r:?}");
            assert_eq!(int(&r[4]), utc(ms)[11..13].parse::<i64>().unwrap(), "{r:?}");
            assert!(read.insert(id, ms).is_none(), "an event read twice: {r:?}");
        }
        assert_eq!(
            read, produced,
            "{time_zone}: event times in Trino vs on the topic"
        );
    }
    // The partitions the sync registered are the UTC hours of the events.
    let hours: BTreeSet<(String, i64)> = produced
        .values()
        .map(|ms| {
            let u = utc(*ms);
            (u[..10].to_string(), u[11..13].parse().unwrap())
        })
        .collect();
    let partitions: BTreeSet<(String, i64)> = trino
        .query("SELECT dt, hour FROM lake.pushflow.\"notification_delivered$partitions\"")
        .await
        .iter()
        .map(|r| (text(&r[0]), int(&r[1])))
        .collect();
    assert_eq!(
        partitions, hours,
        "registered partitions vs the events' hours"
    );
    assert!(
        partitions.contains(&("2026-01-02".into(), 5)),
        "{partitions:?}"
    );
    assert!(
        partitions.contains(&("2026-02-01".into(), 0)),
        "{partitions:?}"
    );

    let rss = std::fs::read_to_string(format!("/proc/{}/status", trino_child.0.id()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        .unwrap_or_default();
    println!(
        "trino: ready {:.1} s after spawn, RSS {rss} after the queries; demo done at {:.1} s; test {:.1} s",
        trino_ready.as_secs_f64(),
        demo_done.as_secs_f64(),
        test_started.elapsed().as_secs_f64()
    );
    drop(trino_child);
    let _ = std::fs::remove_dir_all(&work);
}
