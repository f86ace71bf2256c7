//! On Apache Kafka a member that holds no partition (more members than
//! partitions) must not leave and rejoin its group: every join makes the
//! whole group rebalance and pauses every working member. Thirteen members
//! of one group on twelve partitions run for two minutes while records
//! keep arriving; after the first stable assignment nobody's partitions
//! change.

use async_trait::async_trait;
use pushflow_runtime::kafka::{
    run_consumer, ConsumerSettings, Durable, Handler, PartitionKey, Producer, Record,
};
use pushflow_runtime::{CancellationToken, RuntimeError};
use pushflow_testkit::{brokers, create_topics, unique};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MEMBERS: usize = 13;
const PARTITIONS: i32 = 12;
const WATCH: Duration = Duration::from_secs(120);

/// What one member saw.
#[derive(Default)]
struct Seen {
    /// Assignment and revocation callbacks (each rebalance gives one).
    rebalances: AtomicU64,
    records: AtomicU64,
    owned: Mutex<Vec<i32>>,
}

struct Counting(Arc<Seen>);

#[async_trait]
impl Handler for Counting {
    async fn assigned(
        &mut self,
        partitions: &[PartitionKey],
    ) -> Result<Vec<pushflow_runtime::kafka::Position>, RuntimeError> {
        self.0.rebalances.fetch_add(1, Ordering::SeqCst);
        self.0
            .owned
            .lock()
            .unwrap()
            .extend(partitions.iter().map(|p| p.partition));
        Ok(Vec::new())
    }

    async fn revoked(&mut self, partitions: &[PartitionKey]) -> Result<(), RuntimeError> {
        self.0.rebalances.fetch_add(1, Ordering::SeqCst);
        self.0
            .owned
            .lock()
            .unwrap()
            .retain(|p| !partitions.iter().any(|r| r.partition == *p));
        Ok(())
    }

    async fn process(&mut self, batch: &[Record]) -> Result<Durable, RuntimeError> {
        self.0
            .records
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        Ok(Durable::All)
    }
}

fn rebalances(seen: &[Arc<Seen>]) -> Vec<u64> {
    seen.iter()
        .map(|s| s.rebalances.load(Ordering::SeqCst))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_member_never_forces_a_rebalance() {
    let topic = unique("rebalance");
    create_topics(&[(&topic, PARTITIONS)]).await;
    let group = unique("rebalance-group");
    let stop = CancellationToken::new();
    let seen: Vec<Arc<Seen>> = (0..MEMBERS).map(|_| Arc::default()).collect();
    let mut members = Vec::new();
    for (i, s) in seen.iter().enumerate() {
        let settings = ConsumerSettings::new(
            &format!("member-{i}"),
            &brokers(),
            &group,
            vec![topic.clone()],
        );
        let (stop, s) = (stop.clone(), s.clone());
        members.push(tokio::spawn(async move {
            run_consumer(&settings, &mut Counting(s), stop).await
        }));
    }

    // Records keep arriving on every partition throughout.
    let producer = Producer::new(&brokers(), &BTreeMap::new(), Duration::from_secs(30)).unwrap();
    let feeding = stop.child_token();
    let feeder = {
        let (topic, feeding) = (topic.clone(), feeding.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !feeding.is_cancelled() {
                let key = format!("k-{n}");
                producer
                    .send(&topic, Some(key.as_bytes()), b"x", &[])
                    .await
                    .unwrap();
                n += 1;
                if n.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            n
        })
    };

    let (b, g) = (brokers(), group.clone());
    tokio::task::spawn_blocking(move || {
        pushflow_testkit::wait_group_stable(
            &b,
            &g,
            MEMBERS,
            PARTITIONS as usize,
            Duration::from_secs(120),
        )
    })
    .await
    .unwrap();
    // The members apply the assignment at their next poll (≤ 1 s).
    let settle = Instant::now();
    while seen
        .iter()
        .map(|s| s.owned.lock().unwrap().len())
        .sum::<usize>()
        != PARTITIONS as usize
    {
        assert!(
            settle.elapsed() < Duration::from_secs(15),
            "members did not take the stable assignment"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rebalances(&seen);
    let owned_before: Vec<Vec<i32>> = seen
        .iter()
        .map(|s| s.owned.lock().unwrap().clone())
        .collect();
    let idle = owned_before.iter().filter(|o| o.is_empty()).count();
    assert_eq!(idle, 1, "one member must be idle: {owned_before:?}");
    let records_before: u64 = seen.iter().map(|s| s.records.load(Ordering::SeqCst)).sum();

    tokio::time::sleep(WATCH).await;

    let after = rebalances(&seen);
    let owned_after: Vec<Vec<i32>> = seen
        .iter()
        .map(|s| s.owned.lock().unwrap().clone())
        .collect();
    let records_after: u64 = seen.iter().map(|s| s.records.load(Ordering::SeqCst)).sum();
    feeding.cancel();
    let produced = feeder.await.unwrap();
    stop.cancel();
    for m in members {
        m.await.unwrap().unwrap();
    }
    eprintln!(
        "{MEMBERS} members, {PARTITIONS} partitions, {WATCH:?}: rebalance callbacks {before:?} -> {after:?}; \
         {} records consumed while watched, {produced} produced",
        records_after - records_before
    );
    assert_eq!(
        before, after,
        "a rebalance happened after the first stable assignment"
    );
    assert_eq!(owned_before, owned_after);
    assert!(
        records_after > records_before,
        "the working members consumed nothing"
    );
}
