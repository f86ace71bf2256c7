//! kill -9 in the middle of a run: after a restart the lake holds every
//! record exactly once (no duplicate, no gap). The sink runs in a child
//! process (this test binary re-executed), so the kill is a real one.
#![cfg(feature = "query")]

mod common;

use common::*;
use pushflow_runtime::codec::Codec;
use pushflow_s3_parquet::{query, Lake};
use pushflow_testkit::crash::{child_settings, ChildTest, CrashChild};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PUSHFLOW_LAKE_CRASH_CHILD";

/// The child: runs the sink until killed. Ignored unless re-executed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn crash_child() {
    let Some(v) = child_settings::<serde_json::Value>(CHILD_ENV) else {
        return;
    };
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    let sink = start_sink(
        &s("registry"),
        &s("group"),
        &[s("topic")],
        &s("lake"),
        &[],
        test_config(300),
    );
    // Report the replay skips to the parent until killed (or 2 minutes).
    let stats_file = s("stats");
    for _ in 0..1200 {
        let skipped = sink
            .stats
            .skipped
            .load(std::sync::atomic::Ordering::Relaxed);
        // Write then rename, so a kill never leaves a torn file.
        std::fs::write(format!("{stats_file}.tmp"), skipped.to_string()).unwrap();
        std::fs::rename(format!("{stats_file}.tmp"), &stats_file).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A sink in a child process; killed (SIGKILL) when dropped.
fn spawn_child(args: &serde_json::Value) -> CrashChild {
    ChildTest::new("crash_child")
        .settings(CHILD_ENV, args)
        .log_to("pf-crash-child.log")
        .spawn()
}

async fn count(lake: &Lake, table: &str) -> (i64, i64) {
    let sql = format!("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM \"{table}\"");
    let batches = match query::query(lake, &sql).await {
        Ok(b) => b,
        Err(_) => return (0, 0), // no table folder yet
    };
    let col = |i: usize| {
        batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    (col(0), col(1))
}

fn files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += files(&p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_kill_9_without_duplicates_or_gaps() {
    let registry = pushflow_testkit::start_registry().await;
    let codec = Codec::for_registry(&registry).unwrap();
    let u = pushflow_testkit::unique("crash").replace('-', "_");
    let topic = format!("{u}.notification.delivered");
    pushflow_testkit::create_topics(&[(&topic, 3), (&format!("{topic}.dlq"), 1)]).await;
    let dir = std::env::temp_dir().join(&u);
    let lake_url = format!("file://{}", dir.display());
    let args = serde_json::json!({
        "registry": registry,
        "group": pushflow_testkit::unique("crash-group"),
        "topic": topic,
        "lake": lake_url,
        "stats": std::env::temp_dir().join(format!("{u}.skipped")).display().to_string(),
    });
    let total = 8_000u64;
    let first: Vec<_> = (0..total / 2).map(delivered).collect();
    // Multi-record producer batches: the kill lands inside them.
    produce(&topic, &encoded(&codec, &first).await).await;

    // Kill the first sink as soon as it has written a few files.
    let mut child = spawn_child(&args);
    let started = Instant::now();
    while files(&dir) < 4 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sink wrote nothing"
        );
        child.assert_running("the child stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill(); // SIGKILL
    let lake = Lake::open(&lake_url, &[]).unwrap();
    let table = format!("{u}_notification_delivered");
    let (at_kill, _) = count(&lake, &table).await;
    assert!(
        at_kill < total as i64,
        "killed too late to test anything ({at_kill} rows)"
    );

    let second: Vec<_> = (total / 2..total).map(delivered).collect();
    produce(&topic, &encoded(&codec, &second).await).await;
    let mut child = spawn_child(&args);
    let started = Instant::now();
    let mut last = (0, 0);
    while last.1 < total as i64 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = count(&lake, &table).await;
    }
    // Let it run a little longer: a late duplicate would show now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (n, distinct) = count(&lake, &table).await;
    child.kill();
    assert_eq!(
        distinct, total as i64,
        "missing rows (rows at kill: {at_kill})"
    );
    assert_eq!(n, total as i64, "duplicate rows (rows at kill: {at_kill})");
    // The restart did replay records already in files (and skipped them).
    let stats = args["stats"].as_str().unwrap();
    let skipped: u64 = std::fs::read_to_string(stats)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        skipped > 0,
        "the restart replayed nothing already written: the crash tested nothing"
    );
    let _ = std::fs::remove_file(stats);
    let _ = std::fs::remove_dir_all(&dir);
}
