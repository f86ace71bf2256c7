//! kill -9 and restarts: the scheduler runs in a child process (this test
//! binary re-executed) and is killed with SIGKILL while many schedules fall
//! due, or aborts at a failpoint (between the Kafka produce and commit,
//! and between the Kafka commit and the Postgres update), or is down at
//! send_at. Afterwards an independent read_committed reader counts
//! campaign.launched per (store, campaign): exactly one each, none for the
//! cancelled ones; a launch that came late says how late.

mod common;

use common::{key, Env, Launched};
use pushflow_scheduler::schedule::{launch_event_id, CampaignKey, State};
use pushflow_schemas::now_millis;
use pushflow_testkit::crash::{child_settings, ChildTest, CrashChild};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PUSHFLOW_SCHEDULER_CRASH_CHILD";

/// The child: runs the scheduler until killed, with /metrics and /healthz
/// on the port the parent gave. Does nothing unless [`CHILD_ENV`] is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the crash tests as a child process"]
async fn crash_child_runs_scheduler() {
    let Some(cfg) = child_settings::<serde_json::Value>(CHILD_ENV) else {
        return;
    };
    let s = |k: &str| cfg[k].as_str().unwrap().to_string();
    let health = pushflow_runtime::http::Health::default();
    let listener = pushflow_runtime::http::bind(&format!("127.0.0.1:{}", cfg["admin_port"]))
        .await
        .unwrap();
    let stop = pushflow_runtime::CancellationToken::new();
    tokio::spawn(pushflow_runtime::http::serve(
        listener,
        pushflow_runtime::http::admin_router(health.clone()),
        stop.clone(),
    ));
    let scheduler = pushflow_scheduler::Scheduler {
        name: "scheduler".into(),
        settings: Env::settings().validate().unwrap(),
        topics: pushflow_scheduler::Topics::prefixed(&s("prefix")),
        brokers: pushflow_testkit::brokers(),
        kafka: Default::default(),
        database_url: s("database_url"),
        registry_url: s("registry"),
        group: s("group"),
    };
    scheduler.run_until(stop, Some(health)).await.unwrap();
}

/// A child scheduler; killed (SIGKILL) when dropped. Its stderr is echoed
/// and kept.
struct Child9 {
    child: CrashChild,
    log: Arc<Mutex<Vec<String>>>,
    admin_port: u16,
}

impl Child9 {
    fn spawn(env: &Env, failpoint: Option<&str>) -> Child9 {
        let admin_port = pushflow_testkit::free_port();
        let cfg = serde_json::json!({
            "prefix": env.prefix,
            "registry": env.services.registry,
            "database_url": env.services.database_url,
            "group": env.group,
            "admin_port": admin_port,
        });
        let mut test = ChildTest::new("crash_child_runs_scheduler").settings(CHILD_ENV, &cfg);
        let cmd = test.command();
        cmd.env_remove("PUSHFLOW_FAILPOINT").stderr(Stdio::piped());
        if let Some(f) = failpoint {
            cmd.env("PUSHFLOW_FAILPOINT", f);
        }
        let mut child = test.spawn();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stderr, sink) = (child.take_stderr().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[child] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Child9 {
            child,
            log,
            admin_port,
        }
    }

    fn kill(&mut self) {
        self.child.kill();
    }

    /// Waits until the child exits on its own (a failpoint aborted it).
    async fn wait_exit(&mut self, within: Duration) {
        let status = self
            .child
            .wait_exit(within, "the failpoint did not stop the child")
            .await;
        assert!(!status.success(), "the child exited cleanly: {status}");
    }

    fn logged(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

/// Checks the topic holds exactly one launch for each of `want` (with its
/// expected event id) and none for any other campaign.
fn exactly_once(
    launches: &HashMap<CampaignKey, Vec<Launched>>,
    want: &HashMap<CampaignKey, String>,
    cancelled: &HashSet<CampaignKey>,
) {
    for k in cancelled {
        assert!(
            !launches.contains_key(k),
            "cancelled {k:?} was launched: {:?}",
            launches[k]
        );
    }
    for (k, id) in want {
        let l = launches
            .get(k)
            .unwrap_or_else(|| panic!("{k:?} never launched"));
        assert_eq!(l.len(), 1, "{k:?} launched {} times: {l:?}", l.len());
        assert_eq!(&l[0].event.event_id, id, "{k:?}");
    }
    assert_eq!(launches.len(), want.len(), "unexpected launches");
    let ids: HashSet<&str> = launches
        .values()
        .flatten()
        .map(|l| l.event.event_id.as_str())
        .collect();
    assert_eq!(ids.len(), want.len(), "an event_id is on the topic twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_kill_9_while_schedules_fall_due() {
    let env = Env::new().await;
    let mut child = Child9::spawn(&env, None);
    // 240 campaigns over 6 stores ("c-<i>" in every store), due over 6 s
    // from 2 s on; every fifth one cancelled before it is due.
    let t0 = now_millis();
    let mut want = HashMap::new();
    let mut cancelled = HashSet::new();
    for i in 0..240 {
        let store = format!("store-{}", i % 6);
        let campaign = format!("c-{}", i / 6);
        let e = env
            .schedule(&store, &campaign, t0 + 2000 + i * 25, None)
            .await;
        if i % 5 == 0 {
            cancelled.insert(key(&store, &campaign));
        } else {
            want.insert(
                key(&store, &campaign),
                launch_event_id(&key(&store, &campaign), &e.event_id),
            );
        }
    }
    for k in &cancelled {
        env.cancel(&k.store_id, &k.campaign_id).await;
    }
    // Kill it while launches are going out, twice, restarting at once.
    let mut kills = Vec::new();
    for round in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(40);
        let floor = 30 + round * 60;
        loop {
            let n = env.launched().await.len();
            if n >= floor {
                kills.push(n);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "launches did not get going ({n})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill();
        child = Child9::spawn(&env, None);
    }
    assert!(
        kills.iter().all(|n| *n < want.len()),
        "a kill came after every launch: {kills:?}"
    );
    let launches = env
        .wait_launches(Duration::from_secs(60), "every campaign launched", |m| {
            want.keys().all(|k| m.contains_key(k))
        })
        .await;
    drop(launches);
    // A moment for a duplicate, if any, to show; then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let launches = env.launches_by_key().await;
    exactly_once(&launches, &want, &cancelled);
    for k in want.keys().take(20) {
        let row = env.row(&k.store_id, &k.campaign_id).await.unwrap();
        assert_eq!(row.state, State::Launched, "{k:?}");
    }
    eprintln!(
        "killed at {kills:?} launches; {} launched once each, {} cancelled never",
        want.len(),
        cancelled.len()
    );
}

/// Schedules `n` campaigns due at `at`; returns their expected launch ids.
async fn schedule_many(env: &Env, n: usize, at: i64) -> HashMap<CampaignKey, String> {
    let mut want = HashMap::new();
    for i in 0..n {
        let k = key("store", &format!("f-{i}"));
        let e = env.schedule(&k.store_id, &k.campaign_id, at, None).await;
        want.insert(k.clone(), launch_event_id(&k, &e.event_id));
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_between_kafka_commit_and_postgres_update_launches_once() {
    let env = Env::new().await;
    let mut child = Child9::spawn(&env, Some("scheduler.after_commit"));
    let want = schedule_many(&env, 50, now_millis() + 1500).await;
    child.wait_exit(Duration::from_secs(40)).await;
    // The launches are committed on the topic, the rows still pending.
    let launches = env.launches_by_key().await;
    assert_eq!(launches.len(), 50, "the round committed before the abort");
    let k = want.keys().next().unwrap();
    assert_eq!(
        env.row(&k.store_id, &k.campaign_id).await.unwrap().state,
        State::Pending
    );
    // Restarted: it reads them back, marks the rows, fires nothing again.
    let _second = Child9::spawn(&env, None);
    for k in want.keys() {
        let row = env
            .wait_row(&k.store_id, &k.campaign_id, Duration::from_secs(30), |r| {
                r.state == State::Launched
            })
            .await;
        let l = row.launch.unwrap();
        assert!(l.by_scheduler && l.lateness_ms.is_some(), "{l:?}");
        assert_eq!(&l.event_id, &want[k]);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    exactly_once(&env.launches_by_key().await, &want, &HashSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_before_the_kafka_commit_launches_once() {
    let env = Env::new().await;
    let mut child = Child9::spawn(&env, Some("scheduler.before_commit"));
    let want = schedule_many(&env, 50, now_millis() + 1500).await;
    child.wait_exit(Duration::from_secs(40)).await;
    // Its transaction is open (not committed): nothing to read yet, the
    // rows pending. The restart fences it, aborting it, and fires again
    // with the same event ids.
    let _second = Child9::spawn(&env, None);
    env.wait_launches(Duration::from_secs(40), "all 50 launched", |m| {
        want.keys().all(|k| m.contains_key(k))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    exactly_once(&env.launches_by_key().await, &want, &HashSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn down_at_send_at_launches_on_start_late_and_says_how_late() {
    let env = Env::new().await;
    let mut child = Child9::spawn(&env, None);
    let send_at = now_millis() + 3000;
    let e = env.schedule("store", "late", send_at, Some(600)).await;
    // Once the schedule is in Postgres, the scheduler goes down until
    // well after send_at.
    env.wait_row("store", "late", Duration::from_secs(30), |r| {
        r.state == State::Pending
    })
    .await;
    child.kill();
    let down_until = send_at + 3000;
    tokio::time::sleep(Duration::from_millis(
        (down_until - now_millis()).max(0) as u64
    ))
    .await;
    assert!(env.launched().await.is_empty(), "launched while down");
    let second = Child9::spawn(&env, None);
    let launches = env
        .wait_launches(Duration::from_secs(30), "the late launch", |m| {
            !m.is_empty()
        })
        .await;
    let l = &launches[&key("store", "late")];
    assert_eq!(l.len(), 1);
    assert_eq!(
        l[0].event.event_id,
        launch_event_id(&key("store", "late"), &e.event_id)
    );
    assert_eq!(l[0].event.throttle_per_minute, Some(600));
    let late_ms = l[0].event.occurred_at - send_at;
    assert!(late_ms >= 3000, "launched only {late_ms} ms after send_at");
    // The row keeps the lateness; the log says it at WARN; the metrics
    // count it.
    let row = env
        .wait_row("store", "late", Duration::from_secs(10), |r| {
            r.state == State::Launched
        })
        .await;
    assert_eq!(row.launch.unwrap().lateness_ms, Some(late_ms));
    let warned = second.logged("launched late");
    assert!(
        warned
            .iter()
            .any(|l| l.contains("WARN") && l.contains(&format!("late_ms={late_ms}"))),
        "no WARN with late_ms: {warned:?}"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", second.admin_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
    };
    assert_eq!(value("pushflow_scheduler_late_launches_total"), 1.0);
    assert_eq!(
        value("pushflow_scheduler_launch_lateness_seconds_count"),
        1.0
    );
    assert!(value("pushflow_scheduler_launch_lateness_seconds_sum") >= 3.0);
    let health = reqwest::get(format!("http://127.0.0.1:{}/healthz", second.admin_port))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.launched().await.len(), 1);
}
