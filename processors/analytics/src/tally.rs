//! The core, shared by the live component and `replay analytics`: a batch
//! of decoded records is *staged* (offsets, in-batch dedup, campaign
//! patches merged), the `seen` table says which of its keys are new, and
//! only those become *deltas* (window, total and day counts). No I/O: the
//! transaction that asks `seen` and writes the deltas is
//! [`crate::store::commit`]; the unit tests below use an in-memory double
//! of the tables instead.

use pushflow_runtime::kafka::PartitionKey;
pub use pushflow_runtime::windows::WindowKey;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::facts::{CampaignPatch, Change, Fact, NotificationOutcome, Outcome, SubscriberChange};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day of `ms` (days since 1970-01-01).
pub fn day_of(ms: i64) -> i32 {
    ms.div_euclid(DAY_MS) as i32
}

/// What a row of `seen` stands for (its `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// A notification's outcome (id = notification_id; once ever, whatever
    /// the outcome, so each notification counts once among the three).
    Outcome = 0,
    /// A subscriber's `subscription.created` on a UTC day (id = subscriber_id).
    Subscribed = 1,
    /// A subscriber's `subscription.expired` on a UTC day (id = subscriber_id).
    Expired = 2,
}

impl KeyKind {
    /// The value stored in `seen.kind`.
    pub fn code(self) -> i16 {
        self as i16
    }
}

/// A dedup key: a row of `seen`. Every key holds its store (ids are unique
/// per store only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeenKey {
    /// Merchant.
    pub store_id: String,
    /// What the key stands for.
    pub kind: KeyKind,
    /// Notification or subscriber id.
    pub id: String,
    /// UTC day for subscriber keys; 0 (1970-01-01) for outcomes, whose key
    /// holds forever.
    pub day: i32,
}

/// A counted fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Countable {
    /// A notification outcome.
    Notification(NotificationOutcome),
    /// A subscriber change.
    Subscriber(SubscriberChange),
}

impl Countable {
    /// Its dedup key.
    pub fn key(&self) -> SeenKey {
        match self {
            Countable::Notification(n) => SeenKey {
                store_id: n.store_id.clone(),
                kind: KeyKind::Outcome,
                id: n.notification_id.clone(),
                day: 0,
            },
            Countable::Subscriber(s) => SeenKey {
                store_id: s.store_id.clone(),
                kind: match s.change {
                    Change::Subscribed => KeyKind::Subscribed,
                    Change::Expired => KeyKind::Expired,
                },
                id: s.subscriber_id.clone(),
                day: day_of(s.occurred_at),
            },
        }
    }
}

/// A fact whose key is new in the batch; `seen` decides whether it is new
/// ever.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The key (`fact.key()`).
    pub key: SeenKey,
    /// The fact.
    pub fact: Countable,
}

/// A (store, campaign) pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignKey {
    /// Merchant.
    pub store_id: String,
    /// Campaign.
    pub campaign_id: String,
}

/// A batch staged against the committed positions.
#[derive(Debug, Default)]
pub struct Staged {
    /// Next offset per partition touched (past every record admitted,
    /// dead letters and campaign events included).
    pub positions: BTreeMap<PartitionKey, i64>,
    /// Countable facts with a key not seen earlier in the batch, in record
    /// order (so the first outcome of a notification wins).
    pub candidates: Vec<Candidate>,
    /// Campaign patches, merged per campaign.
    pub campaigns: BTreeMap<CampaignKey, CampaignPatch>,
    /// Records skipped as already committed (offset below the stored one).
    pub skipped: u64,
    /// Keys repeated within the batch.
    pub duplicates: u64,
    in_batch: HashSet<SeenKey>,
}

impl Staged {
    /// Whether the record at `offset` of `part` is past what is committed
    /// (`committed`: the stored next offsets; absent counts as 0); if so
    /// the staged position moves past it. Call for EVERY record, dead
    /// letters too.
    pub fn admit(
        &mut self,
        committed: &HashMap<PartitionKey, i64>,
        part: &PartitionKey,
        offset: i64,
    ) -> bool {
        let next = self
            .positions
            .entry(part.clone())
            .or_insert_with(|| committed.get(part).copied().unwrap_or(0));
        if offset < *next {
            self.skipped += 1;
            return false;
        }
        *next = offset + 1;
        true
    }

    /// Stages an admitted record's fact.
    pub fn stage(&mut self, fact: Fact) {
        let countable = match fact {
            Fact::Campaign {
                store_id,
                campaign_id,
                patch,
            } => {
                self.campaigns
                    .entry(CampaignKey {
                        store_id,
                        campaign_id,
                    })
                    .or_default()
                    .merge(patch);
                return;
            }
            Fact::Notification(n) => Countable::Notification(n),
            Fact::Subscriber(s) => Countable::Subscriber(s),
        };
        let key = countable.key();
        if !self.in_batch.insert(key.clone()) {
            self.duplicates += 1;
            return;
        }
        self.candidates.push(Candidate {
            key,
            fact: countable,
        });
    }
}

/// Dispatched, failed and expired notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// `notification.dispatched`.
    pub dispatched: i64,
    /// `notification.failed`, not `gone`.
    pub failed: i64,
    /// `notification.failed` of kind `gone`.
    pub expired: i64,
}

impl OutcomeCounts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Dispatched => self.dispatched += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Expired => self.expired += 1,
        }
    }

    /// Adds `other`.
    pub fn plus(&mut self, other: &OutcomeCounts) {
        self.dispatched += other.dispatched;
        self.failed += other.failed;
        self.expired += other.expired;
    }
}

/// Subscribed and expired subscribers of a store on a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCounts {
    /// Distinct subscribers with `subscription.created` that day.
    pub subscribed: i64,
    /// Distinct subscribers with `subscription.expired` that day.
    pub expired: i64,
}

/// A store's UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DayKey {
    /// Merchant.
    pub store_id: String,
    /// Days since 1970-01-01.
    pub day: i32,
}

/// What the new keys of a batch add (sorted maps: rows are written, and
/// locked, in key order, so two instances cannot deadlock on them).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deltas {
    /// Per campaign window.
    pub windows: BTreeMap<WindowKey, OutcomeCounts>,
    /// Per campaign.
    pub totals: BTreeMap<CampaignKey, OutcomeCounts>,
    /// Per store and day.
    pub days: BTreeMap<DayKey, DayCounts>,
    /// Facts counted (new keys).
    pub counted: u64,
}

/// Counts the candidates `seen` reported new (`is_new[i]` for
/// `staged.candidates[i]`) into window, total and day deltas. Windows are
/// tumbling, aligned to their size, by the event's `occurred_at`, with no
/// grace: every outcome is in one window of each size, so each size sums
/// to the total.
pub fn deltas(windows_ms: &[i64], staged: &Staged, is_new: &[bool]) -> Deltas {
    let mut d = Deltas::default();
    for (c, new) in staged.candidates.iter().zip(is_new) {
        if !new {
            continue;
        }
        d.counted += 1;
        match &c.fact {
            Countable::Notification(n) => {
                d.totals
                    .entry(CampaignKey {
                        store_id: n.store_id.clone(),
                        campaign_id: n.campaign_id.clone(),
                    })
                    .or_default()
                    .add(n.outcome);
                for size in windows_ms {
                    let window = WindowKey::of(&n.store_id, &n.campaign_id, *size, n.occurred_at);
                    d.windows.entry(window).or_default().add(n.outcome);
                }
            }
            Countable::Subscriber(s) => {
                let e = d
                    .days
                    .entry(DayKey {
                        store_id: s.store_id.clone(),
                        day: day_of(s.occurred_at),
                    })
                    .or_default();
                match s.change {
                    Change::Subscribed => e.subscribed += 1,
                    Change::Expired => e.expired += 1,
                }
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Schedule;

    /// The in-memory double of the tables: `seen` as a set, the counts as
    /// maps, `campaigns` as merged patches.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Tables {
        seen: HashSet<SeenKey>,
        committed: HashMap<PartitionKey, i64>,
        windows: BTreeMap<WindowKey, OutcomeCounts>,
        totals: BTreeMap<CampaignKey, OutcomeCounts>,
        days: BTreeMap<DayKey, DayCounts>,
        campaigns: BTreeMap<CampaignKey, CampaignPatch>,
    }

    const WINDOWS: [i64; 2] = [60_000, 3_600_000];

    impl Tables {
        /// One batch, as [`crate::store::commit`] makes it durable.
        fn commit(&mut self, batch: &[(PartitionKey, i64, Fact)]) -> Deltas {
            let mut st = Staged::default();
            for (part, offset, fact) in batch {
                if st.admit(&self.committed, part, *offset) {
                    st.stage(fact.clone());
                }
            }
            let is_new: Vec<bool> = st
                .candidates
                .iter()
                .map(|c| self.seen.insert(c.key.clone()))
                .collect();
            let d = deltas(&WINDOWS, &st, &is_new);
            for (k, v) in &d.windows {
                self.windows.entry(k.clone()).or_default().plus(v);
            }
            for (k, v) in &d.totals {
                self.totals.entry(k.clone()).or_default().plus(v);
            }
            for (k, v) in &d.days {
                let e = self.days.entry(k.clone()).or_default();
                e.subscribed += v.subscribed;
                e.expired += v.expired;
            }
            for (k, p) in std::mem::take(&mut st.campaigns) {
                self.campaigns.entry(k).or_default().merge(p);
            }
            for (p, next) in &st.positions {
                let e = self.committed.entry(p.clone()).or_insert(*next);
                *e = (*e).max(*next);
            }
            d
        }
    }

    fn outcome(store: &str, n: &str, o: Outcome, at: i64) -> Fact {
        Fact::Notification(NotificationOutcome {
            store_id: store.into(),
            campaign_id: "c".into(),
            notification_id: n.into(),
            outcome: o,
            occurred_at: at,
        })
    }

    fn sub(store: &str, who: &str, change: Change, at: i64) -> Fact {
        Fact::Subscriber(SubscriberChange {
            store_id: store.into(),
            subscriber_id: who.into(),
            change,
            occurred_at: at,
        })
    }

    fn part(topic: &str) -> PartitionKey {
        PartitionKey::new(topic, 0)
    }

    #[test]
    fn counts_each_notification_once_per_store_in_every_window() {
        let mut t = Tables::default();
        let (d, f) = (part("dispatched"), part("failed"));
        let d1 = t.commit(&[
            (
                d.clone(),
                0,
                outcome("s1", "n1", Outcome::Dispatched, 59_999),
            ),
            (
                d.clone(),
                1,
                outcome("s1", "n1", Outcome::Dispatched, 59_999),
            ),
            (
                d.clone(),
                2,
                outcome("s2", "n1", Outcome::Dispatched, 60_000),
            ),
            (
                f.clone(),
                0,
                outcome("s1", "n2", Outcome::Expired, 3_600_000),
            ),
            (f.clone(), 1, outcome("s1", "n3", Outcome::Failed, -1)),
        ]);
        assert_eq!((d1.counted, d1.totals.len()), (4, 2));
        // A redelivered batch (offsets already committed) and a late
        // duplicate in a new batch change nothing; the second outcome of
        // n1 loses to the first.
        let d2 = t.commit(&[
            (
                d.clone(),
                1,
                outcome("s1", "n1", Outcome::Dispatched, 59_999),
            ),
            (f.clone(), 2, outcome("s1", "n1", Outcome::Failed, 1)),
            (
                d.clone(),
                3,
                outcome("s2", "n1", Outcome::Dispatched, 60_000),
            ),
        ]);
        assert_eq!(d2, Deltas::default());
        assert_eq!(t.committed[&d], 4);
        let s1 = CampaignKey {
            store_id: "s1".into(),
            campaign_id: "c".into(),
        };
        assert_eq!(
            t.totals[&s1],
            OutcomeCounts {
                dispatched: 1,
                failed: 1,
                expired: 1
            }
        );
        let w = |store: &str, size_ms, start_ms| {
            t.windows[&WindowKey {
                store_id: store.into(),
                campaign_id: "c".into(),
                size_ms,
                start_ms,
            }]
        };
        assert_eq!(w("s1", 60_000, 0).dispatched, 1);
        assert_eq!(w("s1", 60_000, -60_000).failed, 1, "aligned below zero");
        assert_eq!(w("s1", 3_600_000, 3_600_000).expired, 1);
        assert_eq!(w("s2", 60_000, 60_000).dispatched, 1);
        // Each window size sums to the totals.
        for size in WINDOWS {
            let mut sum = OutcomeCounts::default();
            for (k, v) in &t.windows {
                if k.size_ms == size && k.store_id == "s1" {
                    sum.plus(v);
                }
            }
            assert_eq!(sum, t.totals[&s1], "size {size}");
        }
    }

    #[test]
    fn counts_subscribers_once_per_store_and_day() {
        let mut t = Tables::default();
        let p = part("subs");
        let day = DAY_MS;
        t.commit(&[
            (p.clone(), 0, sub("s", "u1", Change::Subscribed, day + 5)),
            (p.clone(), 1, sub("s", "u1", Change::Subscribed, day + 9)),
            (p.clone(), 2, sub("t", "u1", Change::Subscribed, day + 9)),
            (p.clone(), 3, sub("s", "u2", Change::Subscribed, day - 1)),
        ]);
        t.commit(&[
            (p.clone(), 4, sub("s", "u1", Change::Expired, 2 * day)),
            (p.clone(), 5, sub("s", "u1", Change::Expired, 2 * day + 1)),
            (p.clone(), 6, sub("s", "u1", Change::Subscribed, 3 * day)),
            (p.clone(), 7, sub("s", "u1", Change::Subscribed, day + 1)),
        ]);
        let get = |store: &str, d: i32| {
            t.days
                .get(&DayKey {
                    store_id: store.into(),
                    day: d,
                })
                .copied()
                .unwrap_or_default()
        };
        let counts = |subscribed, expired| DayCounts {
            subscribed,
            expired,
        };
        assert_eq!(get("s", 0), counts(1, 0));
        assert_eq!(get("s", 1), counts(1, 0));
        assert_eq!(get("t", 1), counts(1, 0));
        assert_eq!(get("s", 2), counts(0, 1));
        assert_eq!(get("s", 3), counts(1, 0), "a resubscription counts again");
    }

    /// A workload staged in different batchings and orders across
    /// partitions gives the same tables, and redelivering it changes nothing.
    #[test]
    fn tables_do_not_depend_on_batching_order_or_redelivery() {
        let mut records: Vec<(PartitionKey, i64, Fact)> = Vec::new();
        let mut next: HashMap<PartitionKey, i64> = HashMap::new();
        let mut push = |topic: &str, fact: Fact| {
            let p = part(topic);
            let o = next.entry(p.clone()).or_insert(0);
            records.push((p, *o, fact));
            *o += 1;
        };
        for i in 0..60i64 {
            let store = ["a", "b", "c"][(i % 3) as usize];
            // One outcome per notification (dispatch emits exactly one),
            // some delivered twice.
            let o = [Outcome::Dispatched, Outcome::Failed, Outcome::Expired][(i % 5 % 3) as usize];
            let topic = if o == Outcome::Dispatched { "d" } else { "f" };
            for _ in 0..1 + i64::from(i % 4 == 0) {
                push(topic, outcome(store, &format!("n{i}"), o, i * 7_777));
            }
            push(
                "s",
                sub(
                    store,
                    &format!("u{}", i / 4),
                    Change::Subscribed,
                    i * 3_000_000,
                ),
            );
            push(
                "c",
                Fact::Campaign {
                    store_id: store.into(),
                    campaign_id: "c".into(),
                    patch: CampaignPatch {
                        scheduled: Some(Schedule {
                            occurred_at: i % 7,
                            send_at: i,
                            throttle_per_minute: None,
                        }),
                        launched_at: Some(1_000 - i),
                        ..Default::default()
                    },
                },
            );
        }
        let build = |order: &[(PartitionKey, i64, Fact)], batch: usize| {
            let mut t = Tables::default();
            for chunk in order.chunks(batch) {
                t.commit(chunk);
            }
            t
        };
        let want = build(&records, records.len());
        assert!(want.totals.values().any(|c| c.failed > 0 && c.expired > 0));
        // Other interleavings across partitions keep each partition's order.
        let by_topic = |topics: &[&str]| -> Vec<(PartitionKey, i64, Fact)> {
            topics
                .iter()
                .flat_map(|t| records.iter().filter(move |r| r.0.topic == *t).cloned())
                .collect()
        };
        for order in [
            by_topic(&["d", "f", "s", "c"]),
            by_topic(&["c", "s", "f", "d"]),
        ] {
            for batch in [1, 7, 50] {
                let mut got = build(&order, batch);
                assert_eq!(got, want, "batch {batch}");
                // Redelivered from the start: skipped by offset.
                for chunk in records.chunks(13) {
                    assert_eq!(got.commit(chunk), Deltas::default());
                }
                // The same facts again at new offsets: dropped by `seen`.
                let mut seen_again = Tables {
                    seen: got.seen.clone(),
                    ..Default::default()
                };
                for chunk in records.chunks(11) {
                    assert_eq!(seen_again.commit(chunk).counted, 0);
                }
            }
        }
    }
}
