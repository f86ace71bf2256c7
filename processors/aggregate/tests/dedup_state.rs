//! The in-memory dedup state, its changelog and the fenced offsets against
//! the real broker and Postgres: a partition moving between instances, a
//! stale instance's commit refused, keys past the horizon forgotten.

mod common;

use common::*;
use pushflow_aggregate::run;
use pushflow_aggregate::store;
use pushflow_aggregate::tally::{Core, Staged};
use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::topology::Pings;
use pushflow_runtime::CancellationToken;
use std::time::Duration;

/// `n` notifications, then a third of them again (repeats whose first ping
/// was long before, on whichever instance held the partition then).
fn with_late_repeats(n: usize, seed: u64) -> Vec<P> {
    let first = workload(n, seed);
    let mut out = first.clone();
    out.extend(first.iter().step_by(3).cloned());
    out
}

async fn committed(url: &str) -> i64 {
    client(url)
        .await
        .query_one(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM aggregate.offsets",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}

/// Waits until every offset written so far is committed in Postgres.
async fn until_committed(w: &World, within: Duration) {
    // The database and tables exist before the instances made them.
    let mut db = store::connect(&w.base.database_url).await.unwrap();
    store::migrate(&mut db, "aggregate").await.unwrap();
    let total = w.base.ends.total();
    let start = std::time::Instant::now();
    while committed(&w.base.database_url).await < total {
        assert!(
            start.elapsed() < within,
            "{} of {total} offsets committed after {within:?}",
            committed(&w.base.database_url).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moving_between_two_instances_keeps_exact_totals() {
    let mut w = world("agg-move").await;
    let pings = with_late_repeats(3000, 11);
    let chunks: Vec<&[P]> = pings.chunks(pings.len() / 4 + 1).collect();
    let group = pushflow_testkit::unique("agg-move");
    let instance = |w: &World| {
        let mut o = options(w, 50);
        o.group = group.clone();
        o.stop_at = None;
        o
    };
    produce(&mut w, chunks[0]).await;
    let (a_stop, b_stop) = (CancellationToken::new(), CancellationToken::new());
    let a = tokio::spawn(run(instance(&w), a_stop.clone()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    produce(&mut w, chunks[1]).await;
    // B joins while records flow: the group rebalances, partitions move.
    let b = tokio::spawn(run(instance(&w), b_stop.clone()));
    produce(&mut w, chunks[2]).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    // A leaves: B takes its partitions, with their state from Postgres.
    a_stop.cancel();
    let a = a.await.unwrap().unwrap();
    produce(&mut w, chunks[3]).await;
    until_committed(&w, Duration::from_secs(90)).await;
    b_stop.cancel();
    let b = b.await.unwrap().unwrap();
    assert!(a.records > 0 && b.records > 0, "both worked: {a:?} {b:?}");
    assert_eq!(billed(&w.base.database_url).await, truth(&pings));
}

/// Two instances in DIFFERENT groups read every partition at once and
/// commit into the same tables: every batch races, only the fenced save
/// decides; the loser reloads and reads again from the winner's offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_are_fenced_and_count_nothing_twice() {
    let mut w = world("agg-race").await;
    let pings = with_late_repeats(2000, 12);
    produce(&mut w, &pings).await;
    let (a_stop, b_stop) = (CancellationToken::new(), CancellationToken::new());
    let a = tokio::spawn(run(
        {
            let mut o = options(&w, 40);
            o.stop_at = None;
            o
        },
        a_stop.clone(),
    ));
    let b = tokio::spawn(run(
        {
            let mut o = options(&w, 40);
            o.stop_at = None;
            o
        },
        b_stop.clone(),
    ));
    until_committed(&w, Duration::from_secs(120)).await;
    a_stop.cancel();
    b_stop.cancel();
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert!(a.reloads + b.reloads > 0, "no fence happened: {a:?} {b:?}");
    assert_eq!(billed(&w.base.database_url).await, truth(&pings));
}

/// A stale instance (it loaded the partition, then another instance
/// committed past that) has its commit refused as a whole; after a reload
/// it goes on from the stored state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_commit_is_refused_and_nothing_is_double_counted() {
    let w = world("agg-fence").await;
    let url = &w.base.database_url;
    let mut db = store::connect(url).await.unwrap();
    store::migrate(&mut db, "aggregate").await.unwrap();
    let s = settings(100);
    let horizon = s.dedup_horizon_ms;
    let part = PartitionKey::new(w.delivered.clone(), 0);
    let ping = |n: &str| pushflow_aggregate::tally::Ping {
        kind: pushflow_aggregate::tally::PingKind::Delivered,
        notification_id: n.into(),
        store_id: "s".into(),
        campaign_id: "c".into(),
        occurred_at: 1_769_902_200_000,
    };
    let stage = |core: &mut Core, from: i64, names: &[&str]| {
        let mut st = Staged::default();
        for (i, n) in names.iter().enumerate() {
            let off = from + i as i64;
            if let Some(slot) = core.admit(&mut st, &part.topic, 0, off) {
                core.stage(&mut st, slot, off, Some(1_769_902_200_000), ping(n));
            }
        }
        core.apply(&mut st);
        st
    };
    let (mut a, mut b) = (
        Core::new(s.windows.clone(), horizon),
        Core::new(s.windows.clone(), horizon),
    );
    // Both load the partition before either commits (a rebalance).
    a.assign(part.clone(), load_one(&mut db, &part, horizon).await, 0);
    b.assign(part.clone(), load_one(&mut db, &part, horizon).await, 0);
    let batch = ["n1", "n2", "n1"];
    let st = stage(&mut a, 0, &batch);
    store::commit(&mut db, "aggregate", &s.windows, &st)
        .await
        .unwrap();
    // B's commit of the same records is refused: the stored offset moved.
    let st = stage(&mut b, 0, &batch);
    let e = store::commit(&mut db, "aggregate", &s.windows, &st)
        .await
        .unwrap_err();
    assert_eq!(e.fenced(), Some(std::slice::from_ref(&part)), "{e}");
    assert!(
        !e.is_retryable(),
        "retrying the same transaction cannot help"
    );
    // A's next commit goes on; B reloads and goes on after it.
    let st = stage(&mut a, 3, &["n3"]);
    store::commit(&mut db, "aggregate", &s.windows, &st)
        .await
        .unwrap();
    b.revoke(&part);
    b.assign(part.clone(), load_one(&mut db, &part, horizon).await, 0);
    let st = stage(&mut b, 0, &["n1", "n2", "n1", "n3", "n2", "n4"]);
    assert_eq!(st.skipped, 4, "below the stored offset");
    assert_eq!(st.candidates.len(), 1, "n2 is known from the changelog");
    store::commit(&mut db, "aggregate", &s.windows, &st)
        .await
        .unwrap();
    let row = db
        .query_one(
            "SELECT sum(impressions)::bigint FROM aggregate.monthly_totals",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 4, "n1 n2 n3 n4 once each");
}

async fn load_one(
    db: &mut tokio_postgres::Client,
    part: &PartitionKey,
    horizon: i64,
) -> pushflow_aggregate::tally::Loaded {
    store::load(db, "aggregate", std::slice::from_ref(part), horizon)
        .await
        .unwrap()
        .remove(part)
        .unwrap()
}

/// Keys past `pings.token_ttl + pings.clock_skew` (record time) are dropped
/// from memory and from the changelog; within it they survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_past_the_horizon_leave_memory_and_the_changelog() {
    let mut w = world_with("agg-prune", 1).await;
    let pings = Pings {
        token_ttl: Duration::from_secs(3600),
        clock_skew: Duration::ZERO,
    };
    let opts = |w: &World| {
        let mut o = options(w, 1);
        o.settings = settings_with(1, &pings);
        o
    };
    let t0: i64 = 1_769_904_000_000; // 2026-02-01T00:00:00Z
    let at = |n: &str, t: i64| (p(false, n, "s", t), t);
    let min = 60_000;
    // First run: a and c at t0, a again at t0 + 30 min (a duplicate).
    produce_at(&mut w, &[at("a", t0), at("c", t0), at("a", t0 + 30 * min)]).await;
    let first = run(opts(&w), CancellationToken::new()).await.unwrap();
    assert_eq!((first.counted, first.duplicates), (2, 1), "{first:?}");
    // Second run (state loaded from the changelog): a at t0 + 50 min is
    // still a duplicate; b at t0 + 2 h moves the record time past the
    // horizon of a and c, which are forgotten; a again counts.
    produce_at(
        &mut w,
        &[
            at("a", t0 + 50 * min),
            at("b", t0 + 120 * min),
            at("a", t0 + 120 * min + 1_000),
        ],
    )
    .await;
    let second = run(opts(&w), CancellationToken::new()).await.unwrap();
    assert_eq!((second.counted, second.duplicates), (2, 1), "{second:?}");
    assert_eq!(second.keys_in_memory, 2, "c is forgotten: {second:?}");
    let c = client(&w.base.database_url).await;
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE max_record_ms + 3600000 < $1),
                    (coalesce(sum(length(keys)), 0) / 16)::bigint, count(*)
             FROM aggregate.dedup_log",
            &[&(t0 + 120 * min)],
        )
        .await
        .unwrap();
    let (dead_rows, keys, rows): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(dead_rows, 0, "rows past the horizon are deleted");
    assert_eq!(keys, 2, "the log holds b and the second a");
    assert!(rows >= 1);
    assert_eq!(
        billed(&w.base.database_url).await,
        std::collections::BTreeMap::from([(("s".to_string(), "2026-02-01".to_string()), (4, 0))])
    );
}
