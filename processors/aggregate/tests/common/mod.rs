//! Shared helpers of the aggregate's integration tests (real broker,
//! Postgres and schema registry).
#![allow(dead_code)]

use pushflow_aggregate::config::{AggregateSettings, WindowSetting};
use pushflow_aggregate::RunOptions;
use pushflow_runtime::codec::Codec;
use pushflow_runtime::topology::Pings;
use pushflow_schemas::{NotificationClicked, NotificationDelivered};
use pushflow_testkit::RunWorld;
use std::collections::{BTreeMap, BTreeSet};

/// A test's world: topics, registry, database.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct World {
    pub delivered: String,
    pub clicked: String,
    pub base: RunWorld,
}

pub const PARTITIONS: i32 = 3;

pub async fn world(prefix: &str) -> World {
    world_with(prefix, PARTITIONS).await
}

/// A world whose topics have `partitions` partitions.
pub async fn world_with(prefix: &str, partitions: i32) -> World {
    let p = pushflow_testkit::unique(prefix);
    let (delivered, clicked) = (
        format!("{p}.notification.delivered"),
        format!("{p}.notification.clicked"),
    );
    pushflow_testkit::create_topics_with_dead_letters(&[
        (delivered.clone(), partitions),
        (clicked.clone(), partitions),
    ])
    .await;
    World {
        delivered,
        clicked,
        base: RunWorld::start("aggregate_test").await,
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

/// Produces each ping with the given Kafka record time (ms), in order, one
/// at a time (so offsets follow the slice order per partition).
pub async fn produce_at(w: &mut World, pings: &[(P, i64)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let codec = Codec::for_registry(&w.base.registry).unwrap();
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", pushflow_testkit::brokers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for (x, at) in pings {
        let (topic, bytes) = encode(w, &codec, x).await;
        let rec = FutureRecord::to(&topic)
            .key(x.nid.as_bytes())
            .payload(&bytes)
            .timestamp(*at);
        let d = producer
            .send(rec, std::time::Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        w.base.ends.note([(
            topic,
            pushflow_runtime::kafka::Delivery {
                partition: d.partition,
                offset: d.offset,
            },
        )]);
    }
}

/// The topic and Avro value of a ping.
pub async fn encode(w: &World, codec: &Codec, x: &P) -> (String, Vec<u8>) {
    if x.clicked {
        (
            w.clicked.clone(),
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
            w.delivered.clone(),
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
    }
}

pub async fn produce(w: &mut World, pings: &[P]) {
    let codec = Codec::for_registry(&w.base.registry).unwrap();
    let mut records = Vec::new();
    for x in pings {
        let (topic, bytes) = encode(w, &codec, x).await;
        records.push((topic, x.nid.clone(), bytes));
    }
    pushflow_testkit::records::send_all(&pushflow_testkit::producer(), records, &mut w.base.ends)
        .await;
}

pub fn settings(max_batch: usize) -> pushflow_aggregate::config::Validated {
    settings_with(max_batch, &Pings::default())
}

/// As [`settings`] with the topology's `pings:` (the dedup horizon).
pub fn settings_with(max_batch: usize, pings: &Pings) -> pushflow_aggregate::config::Validated {
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
        dedup_horizon: None,
        max_batch,
        schema: "aggregate".into(),
        commit_connections: 2,
        commit_interval: "250ms".into(),
    }
    .validate_with(pings)
    .unwrap()
}

/// Options that stop once everything produced so far is committed.
pub fn options(w: &World, max_batch: usize) -> RunOptions {
    w.base.run_options(
        "aggregate-test",
        vec![w.delivered.clone(), w.clicked.clone()],
        settings(max_batch),
    )
}

pub async fn client(url: &str) -> tokio_postgres::Client {
    pushflow_testkit::connect(url).await
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
