//! kill -9 mid-campaign: dispatch runs in a child process (this test
//! binary re-executed), is killed with SIGKILL while pushes are in flight
//! (inside an open transaction, with multi-record producer batches),
//! restarted, and the campaign completes with exactly one outcome per
//! subscriber and no event_id twice on any output topic; only sends whose
//! outcome was not yet recorded repeat.

mod common;

use common::Env;
use pushflow_dispatch::{notification_id, Dispatch, Topics, VapidKey};
use pushflow_push_sim::{Behaviour, RandomRule, Rule};
use pushflow_runtime::token::PingKeys;
use pushflow_testkit::crash::{child_settings, ChildTest, CrashChild};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PUSHFLOW_DISPATCH_CRASH_CHILD";

/// The child: runs dispatch until killed. Does nothing unless the parent
/// set [`CHILD_ENV`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by survives_kill_9_mid_campaign as a child process"]
async fn crash_child_runs_dispatch() {
    let Some(cfg) = child_settings::<serde_json::Value>(CHILD_ENV) else {
        return;
    };
    let s = |k: &str| cfg[k].as_str().unwrap().to_string();
    let mut settings = Env::settings();
    settings.concurrency_per_origin = 16;
    // The parent's bound on repeated sends is parallel_batches × batch_size.
    settings.parallel_batches = 4;
    let d = Dispatch {
        name: "dispatch".into(),
        settings: settings.check().unwrap(),
        topics: Topics::prefixed(&s("prefix")),
        vapid: Arc::new(VapidKey::from_base64url(&s("vapid")).unwrap()),
        ping: PingKeys::from_env().unwrap(),
        allow_insecure: true,
        brokers: pushflow_testkit::brokers(),
        kafka: BTreeMap::new(),
        database_url: s("database_url"),
        registry_url: s("registry"),
        group: s("group"),
    };
    d.run_until(pushflow_runtime::CancellationToken::new(), None)
        .await
        .unwrap();
}

/// A child running dispatch with `cfg`; killed (SIGKILL) when dropped.
fn spawn_child(cfg: &serde_json::Value) -> CrashChild {
    ChildTest::new("crash_child_runs_dispatch")
        .settings(CHILD_ENV, cfg)
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_kill_9_mid_campaign() {
    let env = Env::new().await;
    // Every push takes 40 ms at the push service, so the campaign is
    // still in flight when the kill comes.
    let slow = Rule {
        status: 201,
        retry_after: None,
        delay_ms: Some(40),
        times: None,
    };
    let sim = env
        .sim(Behaviour {
            random: vec![RandomRule {
                fraction: 1.0,
                rule: slow,
            }],
            ..Behaviour::default()
        })
        .await;
    let store_id = pushflow_testkit::unique("store");
    let subs = sim.state.add_subscribers(&store_id, 2000);
    sim.state.publish(&subs).await.unwrap();
    let out = env.collect();
    let cfg = serde_json::json!({
        "prefix": env.prefix,
        "registry": env.services.registry,
        "database_url": env.services.database_url,
        "group": pushflow_testkit::unique("g"),
        "vapid": VapidKey::generate().private_b64(),
    });

    let mut first = spawn_child(&cfg);
    env.wait_active(&store_id, 2000, Duration::from_secs(60))
        .await;
    let campaign = env.launch(&store_id).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.state.stats()["accepted"].as_u64().unwrap() < 600 {
        assert!(Instant::now() < deadline, "dispatch did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill(); // SIGKILL
    let at_kill = sim.state.stats()["accepted"].as_u64().unwrap();
    assert!(
        at_kill < 2000,
        "the kill came after the campaign finished ({at_kill} accepted)"
    );

    let second = spawn_child(&cfg);
    eprintln!("killed at {at_kill} accepted; restarted");
    out.wait_decided(&campaign.campaign_id, 2000, Duration::from_secs(120))
        .await;
    drop(second);

    // Exactly one outcome per subscriber: every event of a notification is
    // the same event (a replayed publish repeats its event_id, never a new
    // decision), and all 2000 were dispatched.
    let dispatched = out.dispatched.lock().unwrap().clone();
    assert!(out
        .failed
        .lock()
        .unwrap()
        .iter()
        .all(|f| f.campaign_id != campaign.campaign_id));
    let mut events: HashMap<String, HashSet<String>> = HashMap::new();
    for d in dispatched
        .iter()
        .filter(|d| d.campaign_id == campaign.campaign_id)
    {
        assert_eq!(
            d.notification_id,
            notification_id(&campaign.store_id, &campaign.campaign_id, &d.subscriber_id)
        );
        events
            .entry(d.subscriber_id.clone())
            .or_default()
            .insert(d.event_id.clone());
    }
    assert_eq!(events.len(), 2000, "every subscriber has an outcome");
    assert!(
        events.values().all(|ids| ids.len() == 1),
        "a notification got two different outcomes"
    );

    // Every event once: no event_id twice on any output topic (the internal
    // batches included), counted by an independent client that reads only
    // committed transactions, and none twice in what the collector saw.
    let t = Topics::prefixed(&env.prefix);
    let outputs = [
        &t.dispatched,
        &t.failed,
        &t.subscription_expired,
        &t.batches,
    ];
    let brokers = pushflow_testkit::brokers();
    let mut args = vec![brokers.as_str(), env.services.registry.as_str()];
    args.extend(outputs.iter().map(|s| s.as_str()));
    let counted: serde_json::Value =
        serde_json::from_str(&pushflow_testkit::python("event_ids.py", &args)).unwrap();
    eprintln!("event ids on the output topics: {counted}");
    for topic in outputs {
        let c = &counted[topic.as_str()];
        assert_eq!(
            c["records"], c["distinct_event_ids"],
            "{topic} holds an event_id twice: {c}"
        );
    }
    assert_eq!(counted[t.dispatched.as_str()]["records"], 2000);
    let mut seen = HashSet::new();
    assert!(
        dispatched.iter().all(|d| seen.insert(d.event_id.clone())),
        "the collector read a notification.dispatched event twice"
    );

    // Nobody got the notification twice, except sends in flight at the kill
    // (at most parallel_batches × batch_size = 4 × 100 of them).
    let counts = sim.state.received_counts();
    let twice = counts.values().filter(|n| **n > 1).count();
    assert!(subs
        .iter()
        .all(|s| counts.get(&s.subscriber_id).copied().unwrap_or(0) >= 1));
    assert!(counts.values().all(|n| *n <= 2));
    assert!(
        twice <= 400,
        "{twice} subscribers were sent the notification twice"
    );
    eprintln!("killed at {at_kill} accepted; {twice} sends repeated after the restart");
}

/// The most times of `sorted` (ms) inside any half-open window of `w` ms.
fn max_in_window(sorted: &[i64], w: i64) -> usize {
    let (mut best, mut lo) = (0, 0);
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= w {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// kill -9 mid throttled campaign (paced loop, releaser and their open
/// transactions all in the killed process): after the restart every
/// subscriber has exactly one outcome, no batch record or event is on a
/// topic twice (the releaser's outbox), and the pace held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_kill_9_mid_throttled_campaign() {
    const N: i32 = 240;
    const AUDIENCE: usize = 120;
    let env = Env::new().await;
    let sim = env.sim(Behaviour::default()).await;
    let store_id = pushflow_testkit::unique("store");
    let subs = sim.state.add_subscribers(&store_id, AUDIENCE);
    sim.state.publish(&subs).await.unwrap();
    let out = env.collect();
    let cfg = serde_json::json!({
        "prefix": env.prefix,
        "registry": env.services.registry,
        "database_url": env.services.database_url,
        "group": pushflow_testkit::unique("g"),
        "vapid": VapidKey::generate().private_b64(),
    });
    let mut first = spawn_child(&cfg);
    env.wait_active(&store_id, AUDIENCE as i64, Duration::from_secs(60))
        .await;
    let campaign = env
        .launch_with(
            &store_id,
            &pushflow_testkit::unique("camp"),
            "Slow drip",
            Some(N),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.state.stats()["accepted"].as_u64().unwrap() < 30 {
        assert!(Instant::now() < deadline, "dispatch did not get going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill(); // SIGKILL
    let at_kill = sim.state.stats()["accepted"].as_u64().unwrap();
    let second = spawn_child(&cfg);
    eprintln!("killed at {at_kill} accepted; restarted");
    out.wait_decided(&campaign.campaign_id, AUDIENCE, Duration::from_secs(120))
        .await;
    drop(second);

    let dispatched: Vec<_> = out
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.campaign_id == campaign.campaign_id)
        .cloned()
        .collect();
    let by_sub: HashMap<&str, HashSet<&str>> =
        dispatched.iter().fold(HashMap::new(), |mut m, d| {
            m.entry(d.subscriber_id.as_str())
                .or_default()
                .insert(d.event_id.as_str());
            m
        });
    assert_eq!(by_sub.len(), AUDIENCE, "every subscriber has an outcome");
    assert!(by_sub.values().all(|ids| ids.len() == 1));

    let t = Topics::prefixed(&env.prefix);
    let outputs = [&t.dispatched, &t.failed, &t.batches];
    let brokers = pushflow_testkit::brokers();
    let mut args = vec![brokers.as_str(), env.services.registry.as_str()];
    args.extend(outputs.iter().map(|s| s.as_str()));
    let counted: serde_json::Value =
        serde_json::from_str(&pushflow_testkit::python("event_ids.py", &args)).unwrap();
    eprintln!("event ids on the output topics: {counted}");
    for topic in outputs {
        let c = &counted[topic.as_str()];
        assert_eq!(
            c["records"], c["distinct_event_ids"],
            "{topic} holds an event_id twice: {c}"
        );
    }
    // 120 subscribers at 4 per batch: 30 batch records, each once.
    assert_eq!(counted[t.batches.as_str()]["records"], 30);
    assert_eq!(counted[t.dispatched.as_str()]["records"], AUDIENCE);

    // The pace held across the kill: sends 60.5 s / N apart, so any 10 s
    // hold at most 10.5 s / spacing + 1 (jitter up to the 0.5 s guard).
    let mut times: Vec<i64> = by_sub
        .keys()
        .map(|s| {
            dispatched
                .iter()
                .find(|d| d.subscriber_id == *s)
                .unwrap()
                .occurred_at
        })
        .collect();
    times.sort();
    let spacing_ms = 60_500.0 / N as f64;
    let bound = (10_500.0 / spacing_ms) as usize + 1;
    let per_10s = max_in_window(&times, 10_000);
    assert!(
        per_10s <= bound,
        "{per_10s} sends in 10 s, paced at most {bound}"
    );
    assert!(max_in_window(&times, 60_000) <= N as usize);
    let counts = sim.state.received_counts();
    let twice = counts.values().filter(|n| **n > 1).count();
    assert!(subs
        .iter()
        .all(|s| counts.get(&s.subscriber_id).copied().unwrap_or(0) >= 1));
    // Only sends in flight at the kill repeat: one batch of 4.
    assert!(twice <= 4, "{twice} subscribers were sent it twice");
    let span = times[times.len() - 1] - times[0];
    eprintln!(
        "killed at {at_kill} accepted; {twice} sends repeated; {AUDIENCE} over {:.1} s, max {per_10s} in any 10 s",
        span as f64 / 1000.0
    );
}
