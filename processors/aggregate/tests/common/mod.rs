//! Shared helpers of the aggregate's integration tests (real broker,
//! Postgres and schema registry).
#![allow(dead_code)]

use pushflow_aggregate::config::{AggregateSettings, WindowSetting};
use pushflow_aggregate::core::Part;
use pushflow_aggregate::{RunOptions, StartAt};
use pushflow_runtime::codec::Codec;
use pushflow_runtime::kafka::Producer;
use pushflow_schemas::{NotificationClicked, NotificationDelivered};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// A test's world: topics, registry, database.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct World {
    pub delivered: String,
    pub clicked: String,
    pub registry: String,
    pub database_url: String,
    /// Log end per input partition, from the producer's acknowledgements.
    pub ends: Vec<(String, i32, i64)>,
}

pub const PARTITIONS: i32 = 3;

pub async fn world(prefix: &str) -> World {
    let registry = pushflow_testkit::start_registry().await;
    let p = pushflow_testkit::unique(prefix);
    let (delivered, clicked) = (
        format!("{p}.notification.delivered"),
        format!("{p}.notification.clicked"),
    );
    let dlq = (format!("{delivered}.dlq"), format!("{clicked}.dlq"));
    pushflow_testkit::create_topics(&[
        (&delivered, PARTITIONS),
        (&clicked, PARTITIONS),
        (&dlq.0, 1),
        (&dlq.1, 1),
    ])
    .await;
    let (_, database_url) = pushflow_testkit::fresh_database("aggregate_test");
    World {
        delivered,
        clicked,
        registry,
        database_url,
        ends: Vec::new(),
    }
}

/// One ping of a test workload.
#[derive(Debug, Clone)]
pub struct P {
    pub clicked: bool,
    pub nid: String,
    pub store: String,
    pub campaign: String,
    pub at: i64,
}

pub fn p(clicked: bool, nid: &str, store: &str, at: i64) -> P {
    P {
        clicked,
        nid: nid.into(),
        store: store.into(),
        campaign: format!("camp-{}", nid.len() % 3),
        at,
    }
}

/// Ground truth computed independently: distinct (nid, kind) per
/// (store, first day of the UTC month) → (impressions, clicks).
pub fn truth(pings: &[P]) -> BTreeMap<(String, String), (i64, i64)> {
    let mut seen = BTreeSet::new();
    let mut out: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for x in pings {
        if !seen.insert((x.nid.clone(), x.clicked)) {
            continue;
        }
        let secs = x.at.div_euclid(1000);
        // Civil-from-days (Howard Hinnant), independent of chrono.
        let z = secs.div_euclid(86_400) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
        let e = out
            .entry((x.store.clone(), format!("{y:04}-{m:02}-01")))
            .or_default();
        if x.clicked {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }
    out
}

pub async fn produce(w: &mut World, pings: &[P]) {
    let codec = Codec::for_registry(&w.registry).unwrap();
    let producer = Producer::new(
        &pushflow_testkit::brokers(),
        &BTreeMap::new(),
        Duration::from_secs(30),
    )
    .unwrap();
    let mut sends = Vec::new();
    for x in pings {
        let (topic, bytes) = if x.clicked {
            (
                &w.clicked,
                codec
                    .encode(&NotificationClicked {
                        event_id: pushflow_schemas::new_event_id(),
                        occurred_at: x.at,
                        store_id: x.store.clone(),
                        notification_id: x.nid.clone(),
                        campaign_id: x.campaign.clone(),
                    })
                    .await
                    .unwrap(),
            )
        } else {
            (
                &w.delivered,
                codec
                    .encode(&NotificationDelivered {
                        event_id: pushflow_schemas::new_event_id(),
                        occurred_at: x.at,
                        store_id: x.store.clone(),
                        notification_id: x.nid.clone(),
                        campaign_id: x.campaign.clone(),
                    })
                    .await
                    .unwrap(),
            )
        };
        let producer = producer.clone();
        let (topic, key) = (topic.clone(), x.nid.clone());
        sends.push(async move {
            (
                topic.clone(),
                producer
                    .send(&topic, Some(key.as_bytes()), &bytes, &[])
                    .await
                    .unwrap(),
            )
        });
        if sends.len() >= 2000 {
            let done = futures::future::join_all(std::mem::take(&mut sends)).await;
            w.note(done);
        }
    }
    let done = futures::future::join_all(sends).await;
    w.note(done.into_iter().map(|d| (d.0, d.1)));
}

impl World {
    /// Records acknowledged (topic, delivery) pairs as log ends.
    pub fn note(
        &mut self,
        deliveries: impl IntoIterator<Item = (String, pushflow_runtime::kafka::Delivery)>,
    ) {
        for (t, d) in deliveries {
            match self
                .ends
                .iter_mut()
                .find(|e| e.0 == t && e.1 == d.partition)
            {
                Some(e) => e.2 = e.2.max(d.offset + 1),
                None => self.ends.push((t, d.partition, d.offset + 1)),
            }
        }
    }
}

/// End offsets of every input partition written so far.
pub fn ends(w: &World) -> HashMap<Part, i64> {
    w.ends
        .iter()
        .map(|(t, p, e)| ((t.clone(), *p), *e))
        .collect()
}

pub fn settings(max_batch: usize) -> pushflow_aggregate::config::Validated {
    AggregateSettings {
        windows: vec![
            WindowSetting {
                size: "1m".into(),
                grace: "2m".into(),
            },
            WindowSetting {
                size: "1h".into(),
                grace: "10m".into(),
            },
        ],
        dedup_horizon: "30m".into(),
        max_batch,
        schema: "aggregate".into(),
        commit_connections: 2,
    }
    .validate()
    .unwrap()
}

pub fn passthrough() -> BTreeMap<String, String> {
    BTreeMap::from([("session.timeout.ms".to_string(), "6000".to_string())])
}

/// Options that stop once everything produced so far is committed.
pub fn options(w: &World, max_batch: usize) -> RunOptions {
    RunOptions {
        name: "aggregate-test".into(),
        brokers: pushflow_testkit::brokers(),
        passthrough: passthrough(),
        group: pushflow_testkit::unique("aggregate-test"),
        inputs: vec![w.delivered.clone(), w.clicked.clone()],
        database_url: w.database_url.clone(),
        settings: settings(max_batch),
        codec: Arc::new(Codec::for_registry(&w.registry).unwrap()),
        start: StartAt::Beginning,
        stop_at: Some(ends(w)),
        progress: None,
    }
}

pub async fn client(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

/// The billing view as the truth map.
pub async fn billed(url: &str) -> BTreeMap<(String, String), (i64, i64)> {
    let c = client(url).await;
    c.query(
        "SELECT store_id, month::text, impressions, clicks FROM public.billing_monthly_impressions",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
    .collect()
}

/// A workload: duplicates, out of order, across a month boundary, some far
/// past any grace.
pub fn workload(n: usize, seed: u64) -> Vec<P> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // 2026-01-31T23:30:00Z: the run crosses into February.
    let base: i64 = 1_769_902_200_000;
    let mut out = Vec::new();
    for i in 0..n {
        let nid = format!("n-{seed}-{i}");
        let store = format!("store-{}", i % 4);
        let at = base + (i as i64) * 3_600_000 / n as i64 + rng.random_range(-30_000..30_000);
        out.push(p(false, &nid, &store, at));
        if rng.random_range(0..10) == 0 {
            out.push(p(false, &nid, &store, at)); // retrying service worker
        }
        if rng.random_range(0..8) == 0 {
            out.push(p(true, &nid, &store, at + rng.random_range(1_000..120_000)));
        }
        if rng.random_range(0..40) == 0 {
            // Far past any grace: 5 hours before, in January.
            out.push(p(
                false,
                &format!("late-{seed}-{i}"),
                &store,
                base - 5 * 3_600_000,
            ));
        }
    }
    out
}
