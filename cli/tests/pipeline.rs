//! The whole pipeline, end to end: `pushflow demo` at a small size on its
//! own broker (the real topic names, no other test's records), a fresh
//! database and a fresh lake; then checked from outside: the broker's
//! record counts against the lake's rows read by DuckDB, the dead-letter
//! topics, and the billing view read straight from Postgres.

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBSCRIBERS: u64 = 400;

/// Every topic of the catalogue.
fn topics() -> impl Iterator<Item = &'static str> {
    pushflow_schemas::CATALOGUE.iter().map(|t| t.name)
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_the_whole_pipeline_exactly_once() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let broker = pushflow_testkit::PrivateBroker::start();
    let (_, database_url) = pushflow_testkit::fresh_database("pipeline");
    let registry_addr = free_addr();
    let lake = std::env::temp_dir().join(pushflow_testkit::unique("pipeline-lake"));
    let envs = [
        ("PUSHFLOW_BROKERS", broker.addr.clone()),
        ("PUSHFLOW_DATABASE_URL", database_url.clone()),
        ("PUSHFLOW_REGISTRY_ADDR", registry_addr.clone()),
        ("PUSHFLOW_REGISTRY_URL", format!("http://{registry_addr}")),
        ("PUSHFLOW_METRICS_ADDR", free_addr()),
        ("PUSHFLOW_INGEST_ADDR", free_addr()),
        ("PUSHFLOW_DASHBOARD_ADDR", free_addr()),
        ("PUSHFLOW_LAKE_URL", format!("file://{}", lake.display())),
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_pushflow"))
        .current_dir(&repo)
        .args(["demo", "--json", "--phase-timeout", "3m"])
        .args(["--subscribers", &SUBSCRIBERS.to_string()])
        // Most notifications pinged and many clicked, so every check
        // has figures to compare (the defaults are the seed's peak hour).
        .args(["--delivered", "0.97", "--clicked", "0.12"])
        .envs(envs.iter().cloned())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let started = Instant::now();
    while !waiter.is_finished() {
        if started.elapsed() > Duration::from_secs(600) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("pushflow demo did not finish within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = waiter.join().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "demo printed no JSON report ({e}); exit {:?}; stdout:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert!(out.status.success(), "demo failed: {report:#}");
    for check in report["checks"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "demo check failed: {check}");
    }

    // The broker's records, per topic, counted by another Kafka client.
    let mut args: Vec<String> = vec![broker.addr.clone()];
    args.extend(topics().map(|t| t.to_string()));
    args.extend(topics().map(|t| format!("{t}.dlq")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let records: BTreeMap<String, i64> =
        serde_json::from_str(&pushflow_testkit::python("topic_counts.py", &args)).unwrap();
    let dead: Vec<_> = records
        .iter()
        .filter(|(t, n)| t.ends_with(".dlq") && **n != 0)
        .collect();
    assert!(dead.is_empty(), "dead letters: {dead:?}");

    // The lake, read by DuckDB: every record of every topic exactly once.
    let lake_dir = lake.display().to_string();
    let counted: Value =
        serde_json::from_str(&pushflow_testkit::python("lake_counts.py", &[&lake_dir])).unwrap();
    for topic in topics() {
        let table = topic.replace('.', "_");
        let rows = counted[&table]["rows"].as_i64().unwrap_or(0);
        let distinct = counted[&table]["distinct_event_ids"].as_i64().unwrap_or(0);
        assert_eq!(
            rows, records[topic],
            "{table}: lake rows vs {topic} records"
        );
        assert_eq!(rows, distinct, "{table}: an event stored twice");
    }
    let n = SUBSCRIBERS as i64;
    assert_eq!(records["subscription.created"], n);
    assert_eq!(records["notification.failed"], 0);
    let dispatched = &counted["notification_dispatched"];
    assert_eq!(dispatched["rows"], n, "one outcome per subscriber");
    assert_eq!(dispatched["distinct_subscribers"], n);
    assert_eq!(dispatched["distinct_notifications"], n);

    // Billing, straight from the view, equals the distinct pings sent.
    let (client, conn) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT impressions, clicks FROM billing_monthly_impressions WHERE store_id = $1",
            &[&report["store_id"].as_str().unwrap()],
        )
        .await
        .unwrap();
    let (impressions, clicks): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        impressions,
        report["pings"]["distinct_delivered"].as_i64().unwrap()
    );
    assert_eq!(
        clicks,
        report["pings"]["distinct_clicked"].as_i64().unwrap()
    );
    assert_eq!(
        counted["notification_delivered"]["distinct_notifications"].as_i64(),
        Some(impressions)
    );
    assert!(
        impressions > n / 2,
        "most notifications were pinged delivered"
    );
    let repeated = report["pings"]["on_time"]["delivered"].as_i64().unwrap()
        + report["pings"]["late"]["delivered"].as_i64().unwrap()
        - impressions;
    assert!(repeated > 0, "some delivered pings were repeated");
    let _ = std::fs::remove_dir_all(&lake);
}
