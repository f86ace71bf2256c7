//! The scheduler in-process against the real broker, Postgres and
//! registry: launches at send_at, once; cancels, reschedules, schedules
//! after a cancel, a direct launch that makes a schedule moot, two stores
//! with the same campaign id, bad records to the dead-letter topic; two
//! instances at once (one active).

mod common;

use common::{key, Env};
use pushflow_scheduler::schedule::{launch_event_id, State};
use pushflow_schemas::now_millis;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launches_at_send_at_once_and_never_a_cancelled_one() {
    let env = Env::new().await;
    let stop = pushflow_runtime::CancellationToken::new();
    // Two instances over the same database: one is active, the other
    // stands by; together they still launch each campaign once.
    let a = tokio::spawn(env.scheduler().run_until(stop.clone(), None));
    let b = tokio::spawn(env.scheduler().run_until(stop.clone(), None));

    let (s1, s2) = ("store-1", "store-2");
    let t0 = now_millis();
    let at = t0 + 3000;
    // "promo" in two stores: launched in s1, cancelled in s2 (ids are
    // unique per store only).
    env.schedule(s1, "promo", at, None).await;
    env.schedule(s2, "promo", at, Some(30)).await;
    env.cancel(s2, "promo").await;
    // Rescheduled later, with a throttle: the second schedule wins.
    env.schedule(s1, "moved", at, None).await;
    let moved = env.schedule(s1, "moved", at + 2000, Some(120)).await;
    // Cancelled, then scheduled again.
    env.schedule(s1, "again", at, None).await;
    env.cancel(s1, "again").await;
    let again = env.schedule(s1, "again", at + 1000, None).await;
    // Launched directly through the API: its schedule is moot.
    env.schedule(s1, "direct", at, None).await;
    let direct = env.launch_directly(s1, "direct").await;

    let launches = env
        .wait_launches(Duration::from_secs(30), "4 campaigns launched", |m| {
            m.contains_key(&key(s1, "promo"))
                && m.contains_key(&key(s1, "moved"))
                && m.contains_key(&key(s1, "again"))
                && m.contains_key(&key(s1, "direct"))
        })
        .await;
    let promo = &launches[&key(s1, "promo")][0];
    let fired = promo.event.occurred_at;
    assert!(
        fired >= at && promo.timestamp_ms >= at,
        "launched before send_at"
    );
    assert!(
        fired - at < 1500,
        "launched {} ms after send_at, expected within about a second",
        fired - at
    );
    let m = &launches[&key(s1, "moved")][0];
    assert!(
        m.event.occurred_at >= at + 2000,
        "the reschedule was ignored"
    );
    assert_eq!(m.event.throttle_per_minute, Some(120));
    assert_eq!(
        m.event.event_id,
        launch_event_id(&key(s1, "moved"), &moved.event_id)
    );
    let g = &launches[&key(s1, "again")][0];
    assert!(g.event.occurred_at >= at + 1000);
    assert_eq!(
        g.event.event_id,
        launch_event_id(&key(s1, "again"), &again.event_id)
    );
    assert_eq!(
        launches[&key(s1, "direct")][0].event.event_id,
        direct.event_id
    );

    // Past every send_at and a margin: still one launch each, none for the
    // cancelled campaign.
    let settle = (at + 2000 + 2500 - now_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(settle)).await;
    let launches = env.launches_by_key().await;
    assert_eq!(launches.len(), 4, "{:?}", launches.keys());
    for (k, l) in &launches {
        assert_eq!(l.len(), 1, "{k:?} launched {} times", l.len());
    }
    assert!(!launches.contains_key(&key(s2, "promo")));

    // The rows say so, with lateness for the scheduler's own launches.
    let promo_row = env.row(s1, "promo").await.unwrap();
    assert_eq!(promo_row.state, State::Launched);
    let l = promo_row.launch.unwrap();
    assert!(l.by_scheduler && l.lateness_ms.is_some_and(|ms| (0..1500).contains(&ms)));
    assert_eq!(env.row(s2, "promo").await.unwrap().state, State::Cancelled);
    let d = env.row(s1, "direct").await.unwrap();
    assert_eq!(d.state, State::Launched);
    assert!(!d.launch.unwrap().by_scheduler);

    // A cancel after the launch is too late and changes nothing.
    env.cancel(s1, "promo").await;
    let row = env
        .wait_row(s1, "promo", Duration::from_secs(10), |r| {
            r.cancelled_at.is_some()
        })
        .await;
    assert_eq!(row.state, State::Launched);

    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_records_go_to_the_dead_letter_topic_and_the_rest_goes_on() {
    let env = Env::new().await;
    let stop = pushflow_runtime::CancellationToken::new();
    let task = tokio::spawn(env.scheduler().run_until(stop.clone(), None));
    env.services
        .producer
        .send(&env.topics.scheduled, Some(b"x"), b"not avro", &[])
        .await
        .unwrap();
    env.schedule("s", "zero", now_millis(), Some(0)).await;
    let ok = env.schedule("s", "fine", now_millis() + 500, None).await;
    let launches = env
        .wait_launches(Duration::from_secs(30), "the good schedule", |m| {
            m.contains_key(&key("s", "fine"))
        })
        .await;
    assert_eq!(
        launches[&key("s", "fine")][0].event.event_id,
        launch_event_id(&key("s", "fine"), &ok.event_id)
    );
    assert!(!launches.contains_key(&key("s", "zero")));
    let dead = common::dead_letters(&env.topics.scheduled);
    assert_eq!(dead.len(), 2, "two dead letters");
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| {
            let h = d
                .headers
                .iter()
                .find(|(k, _)| k == "pushflow.dlq.error")
                .expect("reason header");
            String::from_utf8_lossy(&h.1).to_string()
        })
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("magic byte")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("throttle_per_minute")),
        "{reasons:?}"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
