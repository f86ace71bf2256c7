//! A throttled launch (`throttle_per_minute = 240`, 120 subscribers) over
//! real HTTP to push-sim, with two dispatch instances of one group, both
//! stopped in turn mid-campaign and a third started in between (so the
//! releaser moves to another instance at least once): the campaign's sends are
//! paced at no more than 240 per minute (measured on the
//! notification.dispatched times and, independently, on when push-sim
//! got each push), every subscriber gets it exactly once, and an
//! unthrottled campaign launched meanwhile is not held up.

mod common;

use common::Env;
use pushflow_dispatch::{notification_id, VapidKey};
use pushflow_push_sim::Behaviour;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const N: i32 = 240;
const AUDIENCE: usize = 120;

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

/// Checks the pacing of `times` (ms, any order); returns the measured
/// rate per minute.
fn check_pacing(what: &str, times: &[i64]) -> f64 {
    let mut t = times.to_vec();
    t.sort();
    assert_eq!(t.len(), AUDIENCE, "{what}");
    // Never more than N in any minute.
    let per_minute = max_in_window(&t, 60_000);
    assert!(
        per_minute <= N as usize,
        "{what}: {per_minute} sends in one minute, throttle {N}"
    );
    // Finer: sends are spaced 60.5 s / N apart, so with a send's jitter up
    // to the 0.5 s guard any 10 s hold at most 10.5 s / spacing + 1 (42
    // at N = 240); unthrottled, all 120 would be in one.
    let spacing_ms = 60_500.0 / N as f64;
    let per_10s = max_in_window(&t, 10_000);
    let bound = (10_500.0 / spacing_ms) as usize + 1;
    assert!(
        per_10s <= bound,
        "{what}: {per_10s} sends in 10 s, paced at most {bound}"
    );
    // Evenly: the whole campaign takes at least (audience - 1) sends'
    // spacing (60.5 s / N each), less a second of slack; (audience − N) / N
    // minutes, the bound any N-per-minute sender must meet, is below that.
    let span = t[t.len() - 1] - t[0];
    let floor = ((AUDIENCE - 1) as f64 * spacing_ms) as i64 - 1000;
    assert!(
        span >= floor,
        "{what}: took {span} ms, paced it takes at least {floor} ms"
    );
    assert!(span as f64 >= (AUDIENCE as f64 - N as f64) / N as f64 * 60_000.0);
    let rate = (AUDIENCE - 1) as f64 * 60_000.0 / span as f64;
    eprintln!("{what}: {} sends over {:.1} s = {rate:.1} per minute (throttle {N}); max {per_minute} in any 60 s, {per_10s} in any 10 s", t.len(), span as f64 / 1000.0);
    rate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttled_campaign_keeps_its_rate_across_instances_and_a_restart() {
    if std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_ansi(false)
            .try_init();
    }
    let env = Env::new().await;
    let sim = env.sim(Behaviour::default()).await;
    let (slow, fast) = (
        pushflow_testkit::unique("store"),
        pushflow_testkit::unique("store"),
    );
    let slow_subs = sim.state.add_subscribers(&slow, AUDIENCE);
    sim.state.publish(&slow_subs).await.unwrap();
    let fast_subs = sim.state.add_subscribers(&fast, 300);
    sim.state.publish(&fast_subs).await.unwrap();
    let out = env.collect();

    // Two instances of one group (same VAPID key), a third later.
    let key = VapidKey::generate().private_b64();
    let group = pushflow_testkit::unique("g");
    let start = |stop: &pushflow_runtime::CancellationToken| {
        let d = env.dispatch(
            Env::settings(),
            VapidKey::from_base64url(&key).unwrap(),
            &group,
        );
        tokio::spawn(d.run_until(stop.clone(), None))
    };
    let (stop1, stop2, stop3) = (
        pushflow_runtime::CancellationToken::new(),
        pushflow_runtime::CancellationToken::new(),
        pushflow_runtime::CancellationToken::new(),
    );
    let first = start(&stop1);
    let second = start(&stop2);
    env.wait_active(&slow, AUDIENCE as i64, Duration::from_secs(60))
        .await;
    env.wait_active(&fast, 300, Duration::from_secs(60)).await;

    // When push-sim got each push, watched independently of dispatch.
    let seen: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let watching = pushflow_runtime::CancellationToken::new();
    {
        let (state, seen, watching) = (sim.state.clone(), seen.clone(), watching.clone());
        tokio::spawn(async move {
            while !watching.is_cancelled() {
                let now = pushflow_schemas::now_millis();
                let counts = state.received_counts();
                {
                    let mut s = seen.lock().unwrap();
                    for (sub, n) in counts {
                        if n > 0 {
                            s.entry(sub).or_insert(now);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
    }

    let campaign = env
        .launch_with(
            &slow,
            &pushflow_testkit::unique("camp"),
            "Slow drip",
            Some(N),
        )
        .await;
    let launched = Instant::now();

    // An unthrottled campaign launched meanwhile goes out at once.
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.decided(&campaign.campaign_id) < 10 {
        assert!(
            Instant::now() < deadline,
            "the throttled campaign did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = env.launch(&fast).await;
    let other_at = Instant::now();
    out.wait_decided(&other.campaign_id, 300, Duration::from_secs(30))
        .await;
    let other_took = other_at.elapsed();
    let slow_then = out.decided(&campaign.campaign_id);
    assert!(
        slow_then < AUDIENCE,
        "the throttled campaign finished before the unthrottled one ({slow_then})"
    );
    eprintln!("unthrottled campaign of 300 done in {other_took:?} while the throttled one had {slow_then} of {AUDIENCE}");
    // Its events were not held back behind the throttled campaign's
    // transactions either (wait_decided's own 0.5 s included).
    assert!(
        other_took < Duration::from_secs(8),
        "the unthrottled campaign took {other_took:?}"
    );

    // Stop the first instance at a third of the campaign (it drains its
    // batch) and start a third one; stop the second at two thirds. Whichever
    // held the releaser's lock, it moves at least once.
    let reach = |n: usize| {
        let (out, id) = (out.clone(), campaign.campaign_id.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while out.decided(&id) < n {
                assert!(Instant::now() < deadline, "the throttled campaign stalled");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    reach(AUDIENCE / 3).await;
    stop1.cancel();
    first.await.unwrap().unwrap();
    let third = start(&stop3);
    eprintln!(
        "instance 1 stopped at {} decided; instance 3 started",
        out.decided(&campaign.campaign_id)
    );
    reach(2 * AUDIENCE / 3).await;
    stop2.cancel();
    second.await.unwrap().unwrap();
    eprintln!(
        "instance 2 stopped at {} decided",
        out.decided(&campaign.campaign_id)
    );

    out.wait_decided(&campaign.campaign_id, AUDIENCE, Duration::from_secs(90))
        .await;
    eprintln!(
        "throttled campaign done {:?} after its launch",
        launched.elapsed()
    );
    watching.cancel();

    // Every subscriber exactly once: one dispatched event each, one push.
    let dispatched: Vec<_> = out
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .filter(|d| d.campaign_id == campaign.campaign_id)
        .cloned()
        .collect();
    assert!(out
        .failed
        .lock()
        .unwrap()
        .iter()
        .all(|f| f.campaign_id != campaign.campaign_id));
    let subs: HashSet<&str> = dispatched
        .iter()
        .map(|d| d.subscriber_id.as_str())
        .collect();
    assert_eq!(dispatched.len(), AUDIENCE, "one event per subscriber");
    assert_eq!(subs.len(), AUDIENCE);
    for d in &dispatched {
        assert_eq!(
            d.notification_id,
            notification_id(&slow, &campaign.campaign_id, &d.subscriber_id)
        );
    }
    let counts = sim.state.received_counts();
    assert!(slow_subs
        .iter()
        .all(|s| counts.get(&s.subscriber_id) == Some(&1)));

    // The rate, on dispatch's decision times and on push-sim's side.
    let times: Vec<i64> = dispatched.iter().map(|d| d.occurred_at).collect();
    let rate = check_pacing("notification.dispatched occurred_at", &times);
    let observed: Vec<i64> = {
        let seen = seen.lock().unwrap();
        slow_subs.iter().map(|s| seen[&s.subscriber_id]).collect()
    };
    check_pacing("received by push-sim", &observed);
    assert!(
        rate > N as f64 * 0.8,
        "paced far below the throttle: {rate:.1}/min"
    );

    stop3.cancel();
    third.await.unwrap().unwrap();
}
