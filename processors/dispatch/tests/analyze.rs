//! Before a launch is planned, dispatch vacuums and analyses its
//! subscriptions (a freshly imported audience must not look tiny to the
//! planner, and its scan must be index-only), but a table lock held
//! elsewhere — a vacuum, another instance vacuuming — never holds a launch
//! up for longer than `ANALYZE_LOCK_WAIT`: it is then planned with the
//! statistics there are. The audience is then read in id order.

use pushflow_dispatch::store::{Store, ANALYZE_LOCK_WAIT};
use std::time::{Duration, Instant};

/// Manual analyses and vacuums of `dispatch.subscriptions`.
async fn manual_analyses(c: &tokio_postgres::Client) -> (i64, i64) {
    let r = c
        .query_one(
            "SELECT analyze_count, vacuum_count FROM pg_stat_user_tables WHERE schemaname = 'dispatch' AND relname = 'subscriptions'",
            &[],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test]
async fn statistics_are_refreshed_and_a_locked_table_only_delays_by_the_lock_wait() {
    let (_, url) = pushflow_testkit::fresh_database("dispatch_analyze");
    let store = Store::connect(&url).await.unwrap();
    let watcher = pushflow_runtime::postgres::connect(&url).await.unwrap();

    let before = manual_analyses(&watcher).await;
    store.analyze_audience().await.unwrap();
    // The statistics collector reports with a short delay.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = manual_analyses(&watcher).await;
        if now.0 > before.0 && now.1 > before.1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "VACUUM (ANALYZE) did not run: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Another session holds the lock VACUUM (ANALYZE) needs (as a vacuum
    // would).
    let holder = pushflow_runtime::postgres::connect(&url).await.unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE dispatch.subscriptions IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let refreshed = tokio::time::timeout(ANALYZE_LOCK_WAIT * 10, store.analyze_audience()).await;
    let waited = started.elapsed();
    assert!(
        matches!(refreshed, Ok(Ok(()))),
        "planning must go on without fresh statistics: {refreshed:?}"
    );
    // Postgres times `lock_timeout` with its own clock from when the wait
    // began; a CI run saw it end 4 ms short of 2 s on this side's monotonic
    // clock. Without the lock, ANALYZE returns in milliseconds.
    assert!(
        waited >= ANALYZE_LOCK_WAIT * 9 / 10,
        "returned after {waited:?}, before the lock wait ran out: did it wait for the lock at all?"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
}

/// The audience is read in id order, the store's active subscribers only,
/// across pages, and the connection serves other statements afterwards.
#[tokio::test]
async fn the_audience_is_the_stores_active_subscribers_in_id_order() {
    use pushflow_schemas::{SubscriptionCreated, SubscriptionExpired};
    let (_, url) = pushflow_testkit::fresh_database("dispatch_audience");
    let store = Store::connect(&url).await.unwrap();
    let sub = |s: &str, i: usize| SubscriptionCreated {
        event_id: format!("e-{s}-{i}"),
        occurred_at: 0,
        store_id: s.into(),
        subscriber_id: format!("sub-{i:04}"),
        endpoint: format!("https://push.example/{i}"),
        p256dh: "k".into(),
        auth: "a".into(),
    };
    let subs: Vec<_> = (0..1050)
        .rev()
        .map(|i| sub("a", i))
        .chain((0..7).map(|i| sub("b", i)))
        .collect();
    store.add_subscriptions(&subs).await.unwrap();
    let expired: Vec<_> = (0..1050)
        .step_by(10)
        .map(|i| SubscriptionExpired {
            event_id: format!("x-{i}"),
            occurred_at: 0,
            store_id: "a".into(),
            subscriber_id: format!("sub-{i:04}"),
            reason: "gone".into(),
        })
        .collect();
    store.expire_subscriptions(&expired).await.unwrap();
    store.analyze_audience().await.unwrap();

    let mut audience = store.audience("a").await.unwrap();
    let mut pages = Vec::new();
    loop {
        let page = audience.page(400).await.unwrap();
        if page.is_empty() {
            break;
        }
        pages.push(page);
    }
    drop(audience);
    let want: Vec<String> = (0..1050)
        .filter(|i| i % 10 != 0)
        .map(|i| format!("sub-{i:04}"))
        .collect();
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![400, 400, 145]
    );
    assert_eq!(pages.concat(), want);
    assert_eq!(store.active_count("a").await.unwrap(), 945);
}
