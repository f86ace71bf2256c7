//! The tally shared by the live processor, `replay aggregate` and the
//! bench: decode → dedup → window, with no I/O of its own.
//!
//! A batch is *staged* against the per-partition state (next offset,
//! event-time watermark, in-memory dedup set) without changing it; the
//! caller then [`Core::apply`]s it and hands it to the commit (one Postgres
//! transaction, see [`crate::store`] and [`crate::pipeline`]), which runs
//! batches strictly in order and retries the same staged batch until it
//! commits, or stops the processor.
//!
//! Lateness is decided per record against the watermark of its partition
//! *before* the record (max event time seen so far, stored with the
//! offsets), so the outcome does not depend on batch boundaries or restarts.

use chrono::{DateTime, Datelike};
use pushflow_runtime::codec::{Codec, CodecError};
use pushflow_runtime::kafka::PartitionKey;
use pushflow_runtime::windows::window_start;
pub use pushflow_runtime::windows::WindowKey;
use pushflow_schemas::{NotificationClicked, NotificationDelivered};
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::Window;

/// Which ping a record is (the catalogue's mapping of pings to topics;
/// [`PingKind::code`] is what `seen.kind` and `late_events.kind` store).
pub use pushflow_schemas::PingKind;

/// A decoded ping, the only fields the aggregate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// Delivered or clicked.
    pub kind: PingKind,
    /// Notification id (the dedup key with `kind`).
    pub notification_id: String,
    /// Merchant.
    pub store_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Event time, ms since the epoch.
    pub occurred_at: i64,
}

/// Decodes a record value of an input topic of `kind`.
pub async fn decode(codec: &Codec, kind: PingKind, bytes: &[u8]) -> Result<Ping, CodecError> {
    // The two events carry the same fields.
    let ping = |notification_id, store_id, campaign_id, occurred_at| Ping {
        kind,
        notification_id,
        store_id,
        campaign_id,
        occurred_at,
    };
    Ok(match kind {
        PingKind::Delivered => {
            let e: NotificationDelivered = codec.decode(bytes).await?;
            ping(e.notification_id, e.store_id, e.campaign_id, e.occurred_at)
        }
        PingKind::Clicked => {
            let e: NotificationClicked = codec.decode(bytes).await?;
            ping(e.notification_id, e.store_id, e.campaign_id, e.occurred_at)
        }
    })
}

pub use crate::dedup::{Dedup, SeenKey};

/// Committed state of one input partition.
#[derive(Debug)]
pub struct PartitionState {
    /// Next offset to count (records below it are already in Postgres).
    pub next_offset: i64,
    /// Max event time seen (i64::MIN when none).
    pub watermark: i64,
    /// Recently committed pairs.
    pub dedup: Dedup,
}

/// Where a partition stands: what a batch moves and the offsets table keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionPosition {
    /// Next offset to count.
    pub next_offset: i64,
    /// Max event time seen (i64::MIN when none).
    pub watermark: i64,
}

/// A ping not known to be a duplicate; Postgres decides.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The ping.
    pub ping: Ping,
    /// Sizes (ms) of the windows it is late for.
    pub late_for: Vec<i64>,
    /// Source partition.
    pub part: usize,
    /// Source offset.
    pub offset: i64,
}

/// A batch staged against the committed state.
#[derive(Debug, Default)]
pub struct Staged {
    /// Partitions touched, in first-seen order.
    pub parts: Vec<PartitionKey>,
    /// New position per entry of `parts`.
    pub positions: Vec<PartitionPosition>,
    /// Pings to check against `seen`.
    pub candidates: Vec<Candidate>,
    /// Records skipped as already committed (offset below the stored one).
    pub skipped: u64,
    /// Duplicates found in memory (the dedup set or earlier in the batch).
    pub duplicates: u64,
    in_batch: HashSet<SeenKey>,
}

impl Staged {
    /// Splits the batch into `lanes` independent batches, entry `i` for
    /// the partitions numbered `i` modulo `lanes`, each committed on its
    /// lane's own connection. A (notification_id, kind) pair always comes
    /// from the same partition, so no two lanes ever stage the same pair;
    /// each lane carries its partitions' positions, so each lane's
    /// transaction is exactly-once on its own. Lanes without a partition
    /// come back empty (no `parts`); the in-memory tallies (`skipped`,
    /// `duplicates`) go to the first lane with partitions.
    pub fn split(self, lanes: usize) -> Vec<Staged> {
        if lanes <= 1 {
            return vec![self];
        }
        let lane_of = |p: &PartitionKey| p.partition.rem_euclid(lanes as i32) as usize;
        let mut out: Vec<Staged> = (0..lanes).map(|_| Staged::default()).collect();
        // Where each of `self.parts` lands: (lane, index in that lane).
        let mut moved = Vec::with_capacity(self.parts.len());
        for (i, part) in self.parts.into_iter().enumerate() {
            let lane = &mut out[lane_of(&part)];
            moved.push((lane_of(&part), lane.parts.len()));
            lane.parts.push(part);
            lane.positions.push(self.positions[i]);
        }
        for mut c in self.candidates {
            let (lane, at) = moved[c.part];
            c.part = at;
            out[lane].candidates.push(c);
        }
        if let Some(first) = out.iter_mut().find(|s| !s.parts.is_empty()) {
            first.skipped = self.skipped;
            first.duplicates = self.duplicates;
        }
        out
    }
}

/// One month's or window's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Delivered (impressions).
    pub delivered: i64,
    /// Clicked.
    pub clicked: i64,
}

impl Counts {
    fn add(&mut self, kind: PingKind) {
        match kind {
            PingKind::Delivered => self.delivered += 1,
            PingKind::Clicked => self.clicked += 1,
        }
    }
}

/// A row of `monthly_totals`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonthKey {
    /// Merchant.
    pub store_id: String,
    /// First day of the UTC month, `YYYY-MM-01`.
    pub month: String,
}

/// A candidate too late for one of its windows (a row of `late_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// Index of the candidate in [`Staged::candidates`].
    pub candidate: usize,
    /// Size of the window, ms.
    pub size_ms: i64,
}

/// What the new pings of a batch add (sorted maps: rows are locked in key
/// order, so two instances cannot deadlock).
#[derive(Debug, Default)]
pub struct Deltas {
    /// Window (a row of `window_stats`) → counts.
    pub windows: BTreeMap<WindowKey, Counts>,
    /// Store and month → counts.
    pub monthly: BTreeMap<MonthKey, Counts>,
    /// Candidates late for a window.
    pub late: Vec<Late>,
    /// Pings counted.
    pub counted: u64,
}

/// First day of the UTC month of `ms`, as `YYYY-MM-01`.
pub fn month_of(ms: i64) -> String {
    let d = DateTime::from_timestamp_millis(ms).unwrap_or_default();
    format!("{:04}-{:02}-01", d.year(), d.month())
}

/// Counts the candidates Postgres reported new (`is_new[i]` for
/// `staged.candidates[i]`) into window, monthly and late deltas.
pub fn deltas(windows: &[Window], staged: &Staged, is_new: &[bool]) -> Deltas {
    let mut d = Deltas::default();
    for (i, c) in staged.candidates.iter().enumerate() {
        if !is_new[i] {
            continue;
        }
        let p = &c.ping;
        d.counted += 1;
        let month = MonthKey {
            store_id: p.store_id.clone(),
            month: month_of(p.occurred_at),
        };
        d.monthly.entry(month).or_default().add(p.kind);
        for w in windows {
            if c.late_for.contains(&w.size_ms) {
                d.late.push(Late {
                    candidate: i,
                    size_ms: w.size_ms,
                });
                continue;
            }
            let window = WindowKey::of(&p.store_id, &p.campaign_id, w.size_ms, p.occurred_at);
            d.windows.entry(window).or_default().add(p.kind);
        }
    }
    d
}

/// The windowing and dedup state of the partitions this process owns.
#[derive(Debug)]
pub struct Core {
    windows: Vec<Window>,
    horizon_ms: i64,
    parts: HashMap<PartitionKey, PartitionState>,
}

impl Core {
    /// A core with no partitions.
    pub fn new(windows: Vec<Window>, horizon_ms: i64) -> Core {
        Core {
            windows,
            horizon_ms,
            parts: HashMap::new(),
        }
    }

    /// The windows.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// Takes ownership of a partition at its stored position.
    pub fn assign(&mut self, part: PartitionKey, at: PartitionPosition) {
        self.parts.insert(
            part,
            PartitionState {
                next_offset: at.next_offset,
                watermark: at.watermark,
                dedup: Dedup::default(),
            },
        );
    }

    /// Drops a partition's state.
    pub fn revoke(&mut self, part: &PartitionKey) {
        self.parts.remove(part);
    }

    /// Whether the partition is loaded.
    pub fn owns(&self, part: &PartitionKey) -> bool {
        self.parts.contains_key(part)
    }

    /// State of a partition.
    pub fn partition(&self, part: &PartitionKey) -> Option<&PartitionState> {
        self.parts.get(part)
    }

    /// Pairs held in memory over all partitions, and their approximate bytes.
    pub fn dedup_size(&self) -> (usize, usize) {
        self.parts.values().fold((0, 0), |(n, b), p| {
            (n + p.dedup.len(), b + p.dedup.approx_bytes())
        })
    }

    fn slot(&self, staged: &mut Staged, topic: &str, partition: i32) -> usize {
        if let Some(i) = staged
            .parts
            .iter()
            .position(|p| p.topic == topic && p.partition == partition)
        {
            return i;
        }
        let part = PartitionKey::new(topic, partition);
        let pos = self.parts.get(&part).map_or(
            PartitionPosition {
                next_offset: 0,
                watermark: i64::MIN,
            },
            |s| PartitionPosition {
                next_offset: s.next_offset,
                watermark: s.watermark,
            },
        );
        staged.parts.push(part);
        staged.positions.push(pos);
        staged.parts.len() - 1
    }

    /// Whether the record at `offset` is new (not yet committed); if so the
    /// staged position moves past it. Call for EVERY record, dead letters too.
    pub fn admit(
        &self,
        staged: &mut Staged,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<usize> {
        let i = self.slot(staged, topic, partition);
        if offset < staged.positions[i].next_offset {
            staged.skipped += 1;
            return None;
        }
        staged.positions[i].next_offset = offset + 1;
        Some(i)
    }

    /// Stages an admitted ping: lateness, watermark, in-memory dedup.
    pub fn stage(&self, staged: &mut Staged, slot: usize, offset: i64, ping: Ping) {
        let watermark = staged.positions[slot].watermark;
        let late_for: Vec<i64> = self
            .windows
            .iter()
            .filter(|w| {
                let start = window_start(ping.occurred_at, w.size_ms);
                start.saturating_add(w.size_ms).saturating_add(w.grace_ms) <= watermark
            })
            .map(|w| w.size_ms)
            .collect();
        staged.positions[slot].watermark = watermark.max(ping.occurred_at);
        let key = (ping.notification_id.clone(), ping.kind);
        let known = self
            .parts
            .get(&staged.parts[slot])
            .is_some_and(|s| s.dedup.contains(&key));
        if known || !staged.in_batch.insert(key) {
            staged.duplicates += 1;
            return;
        }
        staged.candidates.push(Candidate {
            ping,
            late_for,
            part: slot,
            offset,
        });
    }

    /// Counts the candidates Postgres reported new (see [`deltas`]).
    pub fn deltas(&self, staged: &Staged, is_new: &[bool]) -> Deltas {
        deltas(&self.windows, staged, is_new)
    }

    /// Makes a staged batch the new state: positions, watermarks, and every
    /// candidate (new or already in `seen`) into the dedup sets. Called once
    /// the batch is handed to the (in-order) commit; if that commit can
    /// never succeed the processor stops, so the state never outlives it.
    pub fn apply(&mut self, staged: &Staged) {
        for (part, at) in staged.parts.iter().zip(&staged.positions) {
            let s = self
                .parts
                .entry(part.clone())
                .or_insert_with(|| PartitionState {
                    next_offset: 0,
                    watermark: i64::MIN,
                    dedup: Dedup::default(),
                });
            s.next_offset = s.next_offset.max(at.next_offset);
            s.watermark = s.watermark.max(at.watermark);
        }
        for c in &staged.candidates {
            let part = &staged.parts[c.part];
            if let Some(s) = self.parts.get_mut(part) {
                let key = (c.ping.notification_id.clone(), c.ping.kind);
                s.dedup.insert(c.ping.occurred_at, key);
            }
        }
        for s in self.parts.values_mut() {
            if s.watermark != i64::MIN {
                s.dedup
                    .evict_before(s.watermark.saturating_sub(self.horizon_ms));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(n: &str, kind: PingKind, t: i64) -> Ping {
        Ping {
            kind,
            notification_id: n.into(),
            store_id: "s".into(),
            campaign_id: "c".into(),
            occurred_at: t,
        }
    }

    fn core() -> Core {
        Core::new(
            vec![Window {
                size_ms: 60_000,
                grace_ms: 60_000,
            }],
            600_000,
        )
    }

    fn start(core: &mut Core, topic: &str, partition: i32) {
        let at = PartitionPosition {
            next_offset: 0,
            watermark: i64::MIN,
        };
        core.assign(PartitionKey::new(topic, partition), at);
    }

    fn run(core: &mut Core, recs: &[(i64, Ping)]) -> Deltas {
        let mut st = Staged::default();
        for (off, p) in recs {
            if let Some(slot) = core.admit(&mut st, "t", 0, *off) {
                core.stage(&mut st, slot, *off, p.clone());
            }
        }
        let d = core.deltas(&st, &vec![true; st.candidates.len()]);
        core.apply(&st);
        d
    }

    #[test]
    fn splits_a_batch_into_lanes_by_partition() {
        let mut c = core();
        let mut st = Staged::default();
        let recs = [
            ("d", 0, "a"),
            ("d", 1, "b"),
            ("k", 1, "b"),
            ("d", 2, "c"),
            ("k", 3, "e"),
            ("d", 0, "a"),
        ];
        for (off, (topic, part, n)) in recs.iter().enumerate() {
            start(&mut c, topic, *part);
            let kind = match *topic {
                "k" => PingKind::Clicked,
                _ => PingKind::Delivered,
            };
            if let Some(slot) = c.admit(&mut st, topic, *part, off as i64) {
                c.stage(&mut st, slot, off as i64, ping(n, kind, 1_000));
            }
        }
        assert_eq!((st.candidates.len(), st.duplicates), (5, 1));
        let lanes = st.split(2);
        assert_eq!(lanes.len(), 2);
        assert!(lanes.iter().all(|l| !l.parts.is_empty()));
        let mut seen = Vec::new();
        for (lane, l) in lanes.iter().enumerate() {
            assert!(l.parts.iter().all(|p| p.partition as usize % 2 == lane));
            assert_eq!(l.parts.len(), l.positions.len());
            for cand in &l.candidates {
                // Each candidate still points at its own partition.
                let part = &l.parts[cand.part];
                let (topic, p, n) = recs[cand.offset as usize];
                assert_eq!((part.topic.as_str(), part.partition), (topic, p));
                assert_eq!(cand.ping.notification_id, n);
                seen.push(cand.offset);
            }
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        assert_eq!(lanes[0].duplicates + lanes[1].duplicates, 1);
        // Only lane 2 has partitions: the others come back empty.
        let mut one = Staged::default();
        let slot = c.admit(&mut one, "d", 2, 9).unwrap();
        c.stage(&mut one, slot, 9, ping("z", PingKind::Delivered, 1_000));
        let lanes = one.split(4);
        let busy: Vec<usize> = (0..4).filter(|i| !lanes[*i].parts.is_empty()).collect();
        assert_eq!(busy, vec![2]);
        assert_eq!(lanes[2].candidates.len(), 1);
    }

    #[test]
    fn counts_once_marks_late_and_skips_committed_offsets() {
        let mut c = core();
        start(&mut c, "t", 0);
        let d = run(
            &mut c,
            &[
                (0, ping("a", PingKind::Delivered, 10_000)),
                (1, ping("a", PingKind::Delivered, 10_000)),
                (2, ping("a", PingKind::Clicked, 20_000)),
                (3, ping("b", PingKind::Delivered, 500_000)),
            ],
        );
        assert_eq!(d.counted, 3);
        assert_eq!(
            d.windows[&WindowKey {
                store_id: "s".into(),
                campaign_id: "c".into(),
                size_ms: 60_000,
                start_ms: 0
            }],
            Counts {
                delivered: 1,
                clicked: 1
            }
        );
        // watermark 500 s: window [0, 60 s) + 60 s grace is closed → late.
        let d = run(
            &mut c,
            &[
                (2, ping("x", PingKind::Delivered, 1)),
                (4, ping("c", PingKind::Delivered, 30_000)),
                (5, ping("b", PingKind::Delivered, 500_000)),
            ],
        );
        assert_eq!(
            d.counted, 1,
            "offset 2 is committed, b is a known duplicate"
        );
        assert_eq!(
            d.late,
            vec![Late {
                candidate: 0,
                size_ms: 60_000
            }]
        );
        assert!(d.windows.is_empty());
        let month = MonthKey {
            store_id: "s".into(),
            month: "1970-01-01".into(),
        };
        assert_eq!(d.monthly[&month].delivered, 1);
        assert_eq!(
            c.partition(&PartitionKey::new("t", 0)).unwrap().next_offset,
            6
        );
    }

    #[test]
    fn evicts_beyond_the_horizon_and_names_months() {
        let mut c = core();
        start(&mut c, "t", 0);
        run(
            &mut c,
            &[
                (0, ping("a", PingKind::Delivered, 0)),
                (1, ping("b", PingKind::Delivered, 10_000_000)),
            ],
        );
        assert_eq!(c.dedup_size().0, 1, "a is older than the 10-minute horizon");
        assert_eq!(month_of(1_767_225_599_999), "2025-12-01");
        assert_eq!(month_of(1_767_225_600_000), "2026-01-01");
    }
}
