//! Shared helpers of the analytics integration tests (real broker,
//! Postgres and schema registry): a world of prefixed topics, a workload
//! of events with its ground truth computed here, independently of the
//! crate, and the tables read back for comparison.

use pushflow_analytics::config::{AnalyticsSettings, Validated};
use pushflow_analytics::facts::Input;
use pushflow_analytics::RunOptions;
use pushflow_runtime::codec::Codec;
use pushflow_schemas::{
    CampaignCancelled, CampaignCreated, CampaignLaunched, CampaignScheduled, Event, FailureKind,
    NotificationDispatched, NotificationFailed, SubscriptionCreated, SubscriptionExpired,
};
use pushflow_testkit::RunWorld;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// A test's world: prefixed topics, registry, database.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct World {
    pub prefix: String,
    pub base: RunWorld,
}

pub const PARTITIONS: i32 = 3;

pub async fn world(prefix: &str) -> World {
    let prefix = pushflow_testkit::unique(prefix);
    let topics: Vec<(String, i32)> = Input::ALL
        .iter()
        .map(|i| (format!("{prefix}.{}", i.topic()), PARTITIONS))
        .collect();
    pushflow_testkit::create_topics_with_dead_letters(&topics).await;
    World {
        prefix,
        base: RunWorld::start("analytics_test").await,
    }
}

impl World {
    pub fn topic(&self, input: Input) -> String {
        format!("{}.{}", self.prefix, input.topic())
    }

    pub fn inputs(&self) -> Vec<String> {
        Input::ALL.iter().map(|i| self.topic(*i)).collect()
    }

    pub fn total(&self) -> i64 {
        self.base.ends.total()
    }
}

/// One produced event.
#[derive(Debug, Clone)]
pub enum Ev {
    Created(CampaignCreated),
    Scheduled(CampaignScheduled),
    Cancelled(CampaignCancelled),
    Launched(CampaignLaunched),
    Subscribed(SubscriptionCreated),
    Unsubscribed(SubscriptionExpired),
    Dispatched(NotificationDispatched),
    Failed(NotificationFailed),
}

impl Ev {
    fn input(&self) -> Input {
        match self {
            Ev::Created(_) => Input::CampaignCreated,
            Ev::Scheduled(_) => Input::CampaignScheduled,
            Ev::Cancelled(_) => Input::CampaignCancelled,
            Ev::Launched(_) => Input::CampaignLaunched,
            Ev::Subscribed(_) => Input::SubscriptionCreated,
            Ev::Unsubscribed(_) => Input::SubscriptionExpired,
            Ev::Dispatched(_) => Input::NotificationDispatched,
            Ev::Failed(_) => Input::NotificationFailed,
        }
    }

    pub async fn encode(&self, codec: &Codec) -> (String, Vec<u8>) {
        let (key, bytes) = match self {
            Ev::Created(e) => (e.key().to_string(), codec.encode(e).await),
            Ev::Scheduled(e) => (e.key().to_string(), codec.encode(e).await),
            Ev::Cancelled(e) => (e.key().to_string(), codec.encode(e).await),
            Ev::Launched(e) => (e.key().to_string(), codec.encode(e).await),
            Ev::Subscribed(e) => (e.key().to_string(), codec.encode(e).await),
            Ev::Unsubscribed(e) => (e.key().to_string(), codec.encode(e).await),
            Ev::Dispatched(e) => (e.key().to_string(), codec.encode(e).await),
            Ev::Failed(e) => (e.key().to_string(), codec.encode(e).await),
        };
        (key, bytes.unwrap())
    }
}

/// 2026-03-01T22:30:00Z: the outcomes cross hours and midnight.
pub const BASE: i64 = 1_772_404_200_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// A workload for `stores` stores that all use the SAME campaign,
/// subscriber and notification ids: every campaign event kind (some
/// campaigns with no `campaign.created`, rescheduled, cancelled, launched
/// twice), subscriptions over several days (repeats, expiries,
/// resubscriptions), one outcome per notification of every kind, and
/// about one in ten events sent twice; shuffled, so topics and event times
/// arrive out of order.
pub fn workload(stores: usize, subscribers: usize, seed: u64) -> Vec<Ev> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let id = pushflow_schemas::new_event_id;
    let mut out = Vec::new();
    let kinds = [
        FailureKind::Rejected,
        FailureKind::Unauthorized,
        FailureKind::PayloadTooLarge,
        FailureKind::RetriesExhausted,
        FailureKind::Timeout,
        FailureKind::InvalidSubscription,
        FailureKind::Other,
    ];
    for s in 0..stores {
        let store = format!("store-{s}");
        for c in 0..4 {
            let campaign = format!("camp-{c}");
            let created = BASE - DAY + rng.random_range(0..HOUR);
            if c != 2 {
                // camp-2's row comes from its other events only.
                out.push(Ev::Created(CampaignCreated {
                    event_id: id(),
                    occurred_at: created,
                    store_id: store.clone(),
                    campaign_id: campaign.clone(),
                    title: format!("Sale {s}/{c}"),
                    body: "b".into(),
                    url: "https://shop.invalid/".into(),
                    icon: None,
                    ttl_seconds: 3600,
                    urgency: Default::default(),
                }));
            }
            for k in 0..1 + (c % 2) as i64 {
                out.push(Ev::Scheduled(CampaignScheduled {
                    event_id: id(),
                    occurred_at: created + 1_000 + k * 60_000,
                    store_id: store.clone(),
                    campaign_id: campaign.clone(),
                    send_at: BASE + rng.random_range(0..HOUR),
                    throttle_per_minute: (k == 0).then_some(100 + s as i32),
                }));
            }
            if c == 3 {
                for k in 0..2 {
                    out.push(Ev::Cancelled(CampaignCancelled {
                        event_id: id(),
                        occurred_at: created + 300_000 - k * 1_000,
                        store_id: store.clone(),
                        campaign_id: campaign.clone(),
                    }));
                }
            } else {
                for k in 0..1 + i64::from(c == 0) {
                    out.push(Ev::Launched(CampaignLaunched {
                        event_id: id(),
                        occurred_at: BASE + 10_000 - k * 5_000,
                        store_id: store.clone(),
                        campaign_id: campaign.clone(),
                        throttle_per_minute: None,
                    }));
                }
            }
            if c == 3 {
                continue; // cancelled: nothing sent
            }
            for u in 0..subscribers {
                let e = NotificationDispatched {
                    event_id: id(),
                    occurred_at: BASE + rng.random_range(0..3 * HOUR),
                    store_id: store.clone(),
                    notification_id: format!("n-{c}-{u}"),
                    campaign_id: campaign.clone(),
                    subscriber_id: format!("sub-{u}"),
                };
                let roll = rng.random_range(0..100);
                out.push(if roll < 70 {
                    Ev::Dispatched(e)
                } else {
                    let gone = roll < 85;
                    Ev::Failed(NotificationFailed {
                        event_id: e.event_id,
                        occurred_at: e.occurred_at,
                        store_id: e.store_id,
                        notification_id: e.notification_id,
                        campaign_id: e.campaign_id,
                        subscriber_id: e.subscriber_id,
                        error: "push service said no".into(),
                        kind: if gone {
                            FailureKind::Gone
                        } else {
                            kinds[rng.random_range(0..kinds.len())]
                        },
                        retryable: !gone,
                        status_code: gone.then_some(410),
                    })
                });
            }
        }
        for u in 0..subscribers / 3 {
            let subscriber = format!("sub-{u}");
            let at = BASE - 2 * DAY + rng.random_range(0..3 * DAY);
            let sub = |at| {
                Ev::Subscribed(SubscriptionCreated {
                    event_id: id(),
                    occurred_at: at,
                    store_id: store.clone(),
                    subscriber_id: subscriber.clone(),
                    endpoint: format!("https://push.invalid/{u}"),
                    p256dh: "k".into(),
                    auth: "a".into(),
                })
            };
            out.push(sub(at));
            if rng.random_range(0..5) == 0 {
                // Subscribed again the same day (the browser re-registered).
                out.push(sub(at + 1_000));
            }
            if rng.random_range(0..3) == 0 {
                let gone = at + rng.random_range(HOUR..30 * HOUR);
                for k in 0..1 + i64::from(rng.random_range(0..4) == 0) {
                    out.push(Ev::Unsubscribed(SubscriptionExpired {
                        event_id: id(),
                        occurred_at: gone + k,
                        store_id: store.clone(),
                        subscriber_id: subscriber.clone(),
                        reason: "410 Gone".into(),
                    }));
                }
                if rng.random_range(0..3) == 0 {
                    out.push(sub(gone + 2 * DAY));
                }
            }
        }
    }
    // The same event delivered twice (a producer's retry).
    let dups: Vec<Ev> = out
        .iter()
        .filter(|_| rng.random_range(0..10) == 0)
        .cloned()
        .collect();
    out.extend(dups);
    out.shuffle(&mut rng);
    out
}

/// A campaign row as the test expects it (times in ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub title: Option<String>,
    pub created_at: Option<i64>,
    pub scheduled_at: Option<i64>,
    pub throttle_per_minute: Option<i32>,
    pub cancelled_at: Option<i64>,
    pub launched_at: Option<i64>,
}

/// (store, campaign, window size ms, window start ms).
pub type WindowKey = (String, String, i64, i64);
/// (dispatched, failed, expired).
pub type Outcomes = (i64, i64, i64);
/// A `campaign.scheduled`: (occurred_at, send_at, throttle).
type ScheduleSeen = (i64, i64, Option<i32>);

/// Every analytics table, as maps.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub campaigns: BTreeMap<(String, String), Row>,
    /// (store, campaign, size ms, start ms) → (dispatched, failed, expired)
    pub windows: BTreeMap<WindowKey, Outcomes>,
    pub totals: BTreeMap<(String, String), Outcomes>,
    /// (store, days since epoch) → (subscribed, expired)
    pub days: BTreeMap<(String, i32), (i64, i64)>,
}

pub const WINDOWS: [i64; 2] = [60_000, HOUR];

/// The ground truth, computed from what was produced with nothing of the
/// crate: distinct sets and plain minimum / maximum over each campaign's
/// events.
pub fn truth(events: &[Ev]) -> Tables {
    let mut t = Tables::default();
    let mut outcome_seen = BTreeSet::new();
    let mut day_seen = BTreeSet::new();
    let mut created: BTreeMap<(String, String), Vec<(i64, String)>> = BTreeMap::new();
    let mut scheduled: BTreeMap<(String, String), Vec<ScheduleSeen>> = BTreeMap::new();
    let mut cancelled: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    let mut launched: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    let key = |s: &str, c: &str| (s.to_string(), c.to_string());
    for e in events {
        match e {
            Ev::Created(e) => created
                .entry(key(&e.store_id, &e.campaign_id))
                .or_default()
                .push((e.occurred_at, e.title.clone())),
            Ev::Scheduled(e) => scheduled
                .entry(key(&e.store_id, &e.campaign_id))
                .or_default()
                .push((e.occurred_at, e.send_at, e.throttle_per_minute)),
            Ev::Cancelled(e) => cancelled
                .entry(key(&e.store_id, &e.campaign_id))
                .or_default()
                .push(e.occurred_at),
            Ev::Launched(e) => launched
                .entry(key(&e.store_id, &e.campaign_id))
                .or_default()
                .push(e.occurred_at),
            _ => {}
        }
        let (store, at, slot) = match e {
            Ev::Dispatched(n) => (&n.store_id, n.occurred_at, 0),
            Ev::Failed(n) if n.kind == FailureKind::Gone => (&n.store_id, n.occurred_at, 2),
            Ev::Failed(n) => (&n.store_id, n.occurred_at, 1),
            Ev::Subscribed(s) => {
                let day = s.occurred_at.div_euclid(DAY) as i32;
                if day_seen.insert((s.store_id.clone(), s.subscriber_id.clone(), 'c', day)) {
                    t.days.entry((s.store_id.clone(), day)).or_default().0 += 1;
                }
                continue;
            }
            Ev::Unsubscribed(s) => {
                let day = s.occurred_at.div_euclid(DAY) as i32;
                if day_seen.insert((s.store_id.clone(), s.subscriber_id.clone(), 'x', day)) {
                    t.days.entry((s.store_id.clone(), day)).or_default().1 += 1;
                }
                continue;
            }
            _ => continue,
        };
        let (nid, campaign) = match e {
            Ev::Dispatched(n) => (&n.notification_id, &n.campaign_id),
            Ev::Failed(n) => (&n.notification_id, &n.campaign_id),
            _ => unreachable!(),
        };
        if !outcome_seen.insert((store.clone(), nid.clone())) {
            continue;
        }
        let bump = |c: &mut Outcomes| match slot {
            0 => c.0 += 1,
            1 => c.1 += 1,
            _ => c.2 += 1,
        };
        bump(t.totals.entry(key(store, campaign)).or_default());
        for size in WINDOWS {
            let start = at - at.rem_euclid(size);
            bump(
                t.windows
                    .entry((store.clone(), campaign.clone(), size, start))
                    .or_default(),
            );
        }
    }
    let keys: BTreeSet<(String, String)> = created
        .keys()
        .chain(scheduled.keys())
        .chain(cancelled.keys())
        .chain(launched.keys())
        .cloned()
        .collect();
    for k in keys {
        let first = created.get(&k).and_then(|v| v.iter().min().cloned());
        let last = scheduled.get(&k).and_then(|v| v.iter().max().copied());
        t.campaigns.insert(
            k.clone(),
            Row {
                title: first.as_ref().map(|f| f.1.clone()),
                created_at: first.map(|f| f.0),
                scheduled_at: last.map(|l| l.1),
                throttle_per_minute: last.and_then(|l| l.2),
                cancelled_at: cancelled.get(&k).and_then(|v| v.iter().min().copied()),
                launched_at: launched.get(&k).and_then(|v| v.iter().min().copied()),
            },
        );
    }
    t
}

/// Produces `events` (each encoded once: a repeated event is the same
/// bytes twice) and notes the log ends.
pub async fn produce(w: &mut World, events: &[Ev]) {
    let codec = Codec::for_registry(&w.base.registry).unwrap();
    let mut records = Vec::new();
    for e in events {
        let (key, bytes) = e.encode(&codec).await;
        records.push((w.topic(e.input()), key, bytes));
    }
    pushflow_testkit::records::send_all(&pushflow_testkit::producer(), records, &mut w.base.ends)
        .await;
}

/// Sends raw bytes (a bad record) to `input`'s topic.
pub async fn produce_raw(w: &mut World, input: Input, key: &str, bytes: &[u8]) {
    let topic = w.topic(input);
    let d = pushflow_testkit::producer()
        .send(&topic, Some(key.as_bytes()), bytes, &[])
        .await
        .unwrap();
    w.base.ends.note([(topic, d)]);
}

pub fn settings(max_batch: usize) -> Validated {
    AnalyticsSettings {
        max_batch,
        ..AnalyticsSettings::default()
    }
    .validate()
    .unwrap()
}

/// Options that stop once everything produced so far is committed.
pub fn options(w: &World, max_batch: usize) -> RunOptions {
    w.base
        .run_options("analytics-test", w.inputs(), settings(max_batch))
}

pub async fn client(url: &str) -> tokio_postgres::Client {
    pushflow_runtime::postgres::connect(url).await.unwrap()
}

const MS: &str = "(extract(epoch FROM {}) * 1000)::bigint";

fn ms(col: &str) -> String {
    MS.replace("{}", col)
}

/// Every table of `schema`, read back.
pub async fn tables(url: &str, schema: &str) -> Tables {
    let c = client(url).await;
    let mut t = Tables::default();
    let q = format!(
        "SELECT store_id, campaign_id, title, {}, {}, throttle_per_minute, {}, {} FROM {schema}.campaigns",
        ms("created_at"),
        ms("scheduled_at"),
        ms("cancelled_at"),
        ms("launched_at")
    );
    for r in c.query(&q, &[]).await.unwrap() {
        t.campaigns.insert(
            (r.get(0), r.get(1)),
            Row {
                title: r.get(2),
                created_at: r.get(3),
                scheduled_at: r.get(4),
                throttle_per_minute: r.get(5),
                cancelled_at: r.get(6),
                launched_at: r.get(7),
            },
        );
    }
    let q = format!(
        "SELECT store_id, campaign_id, {}, {}, dispatched, failed, expired FROM {schema}.campaign_windows",
        ms("window_size"),
        ms("window_start")
    );
    for r in c.query(&q, &[]).await.unwrap() {
        t.windows.insert(
            (r.get(0), r.get(1), r.get(2), r.get(3)),
            (r.get(4), r.get(5), r.get(6)),
        );
    }
    let q = format!(
        "SELECT store_id, campaign_id, dispatched, failed, expired FROM {schema}.campaign_totals"
    );
    for r in c.query(&q, &[]).await.unwrap() {
        t.totals
            .insert((r.get(0), r.get(1)), (r.get(2), r.get(3), r.get(4)));
    }
    let q = format!(
        "SELECT store_id, (day - date '1970-01-01')::int, subscribed, expired FROM {schema}.store_days"
    );
    for r in c.query(&q, &[]).await.unwrap() {
        t.days.insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
    }
    t
}

/// Compares two table sets map by map, naming the first difference.
pub fn assert_tables_eq(got: &Tables, want: &Tables) {
    fn first<K: std::fmt::Debug + Ord, V: std::fmt::Debug + PartialEq>(
        name: &str,
        got: &BTreeMap<K, V>,
        want: &BTreeMap<K, V>,
    ) {
        for (k, v) in want {
            assert_eq!(got.get(k), Some(v), "{name} {k:?}");
        }
        for k in got.keys() {
            assert!(want.contains_key(k), "{name} {k:?} should not exist");
        }
    }
    first("campaigns", &got.campaigns, &want.campaigns);
    first("campaign_windows", &got.windows, &want.windows);
    first("campaign_totals", &got.totals, &want.totals);
    first("store_days", &got.days, &want.days);
}

/// Sum of the next offsets stored in `schema.offsets` (0 before the
/// first commit).
pub async fn committed(c: &tokio_postgres::Client, schema: &str) -> i64 {
    c.query_one(
        &format!("SELECT coalesce(sum(next_offset), 0)::bigint FROM {schema}.offsets"),
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or(0)
}
