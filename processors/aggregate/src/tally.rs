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
use std::collections::{BTreeMap, HashMap};

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

use crate::dedup::{alive, secs_up, KeyMap, LogRow};
pub use crate::dedup::{Dedup, Key};

/// Committed state of one input partition.
#[derive(Debug)]
pub struct PartitionState {
    /// Next offset to count (records below it are already in Postgres).
    pub next_offset: i64,
    /// Max event time seen (i64::MIN when none).
    pub watermark: i64,
    /// The stored next offset the next commit extends (what this instance
    /// loaded or last staged for commit); `None`: no stored row yet. The
    /// fenced save refuses a commit whose stored row moved meanwhile.
    pub stored: Option<i64>,
    /// The pairs first seen within the horizon (record time).
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

/// A ping counted for the first time (within the horizon).
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

/// What a staged batch does to one partition besides its position: the
/// changelog row it writes and the fence it must pass.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    /// The stored next offset this commit extends (`None`: first commit).
    pub expected: Option<i64>,
    /// Next offset before the batch (the changelog row's first offset).
    pub first_offset: i64,
    /// The partition's max record time after the batch.
    pub record_ms: i64,
    /// Keys first seen in the batch, with their record time (seconds).
    pub new_keys: Vec<(Key, u32)>,
    /// Changelog rows up to this next offset hold only forgotten keys.
    pub prune_upto: Option<i64>,
    /// Records of the partition handled (not skipped as committed).
    pub handled: u64,
    /// Of them, sent to a dead-letter topic.
    pub dead: u64,
}

/// A batch staged against the committed state.
#[derive(Debug, Default)]
pub struct Staged {
    /// Partitions touched, in first-seen order.
    pub parts: Vec<PartitionKey>,
    /// New position per entry of `parts`.
    pub positions: Vec<PartitionPosition>,
    /// Changelog and fence per entry of `parts`.
    pub slots: Vec<Slot>,
    /// Pings counted (first time within the horizon).
    pub candidates: Vec<Candidate>,
    /// Records skipped as already committed (offset below the stored one).
    pub skipped: u64,
    /// Duplicates (known in memory or earlier in the batch).
    pub duplicates: u64,
    in_batch: KeyMap<u32>,
}

impl Staged {
    /// Records handled over all partitions.
    pub fn handled(&self) -> u64 {
        self.slots.iter().map(|s| s.handled).sum()
    }

    /// Records sent to a dead-letter topic over all partitions.
    pub fn dead(&self) -> u64 {
        self.slots.iter().map(|s| s.dead).sum()
    }

    /// Notes a record of `slot` sent to a dead-letter topic.
    pub fn dead_letter(&mut self, slot: usize) {
        self.slots[slot].dead += 1;
    }

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
        for ((part, slot), at) in self.parts.into_iter().zip(self.slots).zip(self.positions) {
            let lane = &mut out[lane_of(&part)];
            moved.push((lane_of(&part), lane.parts.len()));
            lane.parts.push(part);
            lane.positions.push(at);
            lane.slots.push(slot);
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

    /// Merges staged parts committed one after the other into one (group
    /// commit: one transaction, merged deltas, one changelog row and one
    /// fenced position per partition). Per partition the first part's fence
    /// and first offset and the last part's position win; candidates are
    /// moved out of `parts`.
    pub fn merge(parts: &mut [&mut Staged]) -> Staged {
        let mut out = Staged::default();
        for st in parts.iter_mut() {
            let mut at = Vec::with_capacity(st.parts.len());
            for (i, part) in st.parts.iter().enumerate() {
                let j = match out.parts.iter().position(|p| p == part) {
                    Some(j) => {
                        let (pos, slot) = (&mut out.positions[j], &mut out.slots[j]);
                        pos.next_offset = pos.next_offset.max(st.positions[i].next_offset);
                        pos.watermark = pos.watermark.max(st.positions[i].watermark);
                        let s = &st.slots[i];
                        slot.record_ms = slot.record_ms.max(s.record_ms);
                        slot.new_keys.extend_from_slice(&s.new_keys);
                        slot.prune_upto = slot.prune_upto.max(s.prune_upto);
                        slot.handled += s.handled;
                        slot.dead += s.dead;
                        j
                    }
                    None => {
                        out.parts.push(part.clone());
                        out.positions.push(st.positions[i]);
                        out.slots.push(st.slots[i].clone());
                        out.parts.len() - 1
                    }
                };
                at.push(j);
            }
            for mut c in std::mem::take(&mut st.candidates) {
                c.part = at[c.part];
                out.candidates.push(c);
            }
            out.skipped += st.skipped;
            out.duplicates += st.duplicates;
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

/// Counts the candidates (each a ping counted for the first time) into
/// window, monthly and late deltas.
pub fn deltas(windows: &[Window], staged: &Staged) -> Deltas {
    let mut d = Deltas::default();
    for (i, c) in staged.candidates.iter().enumerate() {
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

/// A partition's state as loaded from Postgres (one snapshot).
#[derive(Debug, Default)]
pub struct Loaded {
    /// The stored position (`None`: never committed).
    pub stored: Option<PartitionPosition>,
    /// The keys of its changelog within the horizon.
    pub dedup: Dedup,
}

impl Core {
    /// A core with no partitions; `horizon_ms` is the topology's
    /// `pings.token_ttl + pings.clock_skew` (see [`crate::dedup`]).
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

    /// The dedup horizon, ms of record time.
    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms
    }

    /// Takes ownership of a partition: its stored position (or `start`,
    /// the first offset to read when it has none) and its dedup state.
    pub fn assign(&mut self, part: PartitionKey, loaded: Loaded, start: i64) {
        let at = loaded.stored.unwrap_or(PartitionPosition {
            next_offset: start,
            watermark: i64::MIN,
        });
        self.parts.insert(
            part,
            PartitionState {
                next_offset: at.next_offset,
                watermark: at.watermark,
                stored: loaded.stored.map(|s| s.next_offset),
                dedup: loaded.dedup,
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

    /// Keys held in memory over all partitions, and their heap bytes.
    pub fn dedup_size(&self) -> (usize, usize) {
        self.parts.values().fold((0, 0), |(n, b), p| {
            (n + p.dedup.len(), b + p.dedup.heap_bytes())
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
        let (pos, slot) = match self.parts.get(&part) {
            Some(s) => (
                PartitionPosition {
                    next_offset: s.next_offset,
                    watermark: s.watermark,
                },
                Slot {
                    expected: s.stored,
                    first_offset: s.next_offset,
                    record_ms: s.dedup.record_ms(),
                    ..Slot::default()
                },
            ),
            None => (
                PartitionPosition {
                    next_offset: 0,
                    watermark: i64::MIN,
                },
                Slot {
                    record_ms: i64::MIN,
                    ..Slot::default()
                },
            ),
        };
        staged.parts.push(part);
        staged.positions.push(pos);
        staged.slots.push(slot);
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
        staged.slots[i].handled += 1;
        Some(i)
    }

    /// Stages an admitted ping of Kafka record time `record_ms` (its
    /// event time when the record has none): lateness, watermarks, dedup.
    pub fn stage(
        &self,
        staged: &mut Staged,
        slot: usize,
        offset: i64,
        record_ms: Option<i64>,
        ping: Ping,
    ) {
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
        let record_ms = record_ms.unwrap_or(ping.occurred_at);
        let now = staged.slots[slot].record_ms.max(record_ms);
        staged.slots[slot].record_ms = now;
        let key = Key::of(ping.kind, &ping.notification_id);
        let h = self.horizon_ms;
        let in_batch = staged.in_batch.get(&key).copied();
        let known = match in_batch {
            Some(secs) => alive(secs, now, h),
            None => self
                .parts
                .get(&staged.parts[slot])
                .is_some_and(|s| s.dedup.known(&key, now, h)),
        };
        if known {
            staged.duplicates += 1;
            return;
        }
        let secs = secs_up(record_ms);
        staged.in_batch.insert(key, secs);
        staged.slots[slot].new_keys.push((key, secs));
        staged.candidates.push(Candidate {
            ping,
            late_for,
            part: slot,
            offset,
        });
    }

    /// Counts the candidates (see [`deltas`]).
    pub fn deltas(&self, staged: &Staged) -> Deltas {
        deltas(&self.windows, staged)
    }

    /// Makes a staged batch the new state: positions, watermarks, fences,
    /// new keys and changelog rows; sweeps what is past the horizon (noting
    /// in `staged` which changelog rows its transaction deletes). Called
    /// once the batch is handed to the (in-order) commit; if that commit
    /// can never succeed the processor stops, and if it is fenced the
    /// partition is loaded again, so the state never outlives it.
    pub fn apply(&mut self, staged: &mut Staged) {
        for ((part, at), slot) in staged
            .parts
            .iter()
            .zip(&staged.positions)
            .zip(staged.slots.iter_mut())
        {
            let s = self
                .parts
                .entry(part.clone())
                .or_insert_with(|| PartitionState {
                    next_offset: 0,
                    watermark: i64::MIN,
                    stored: None,
                    dedup: Dedup::default(),
                });
            s.next_offset = s.next_offset.max(at.next_offset);
            s.watermark = s.watermark.max(at.watermark);
            s.stored = Some(at.next_offset.max(s.stored.unwrap_or(i64::MIN)));
            for (key, secs) in &slot.new_keys {
                s.dedup.insert(*key, *secs);
            }
            if at.next_offset > slot.first_offset {
                s.dedup.logged(LogRow {
                    next_offset: at.next_offset,
                    max_record_ms: slot.record_ms,
                });
            }
            slot.prune_upto = s.dedup.expire(self.horizon_ms);
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
        core.assign(PartitionKey::new(topic, partition), Loaded::default(), 0);
    }

    fn run(core: &mut Core, recs: &[(i64, Ping)]) -> Deltas {
        let mut st = Staged::default();
        for (off, p) in recs {
            if let Some(slot) = core.admit(&mut st, "t", 0, *off) {
                core.stage(&mut st, slot, *off, None, p.clone());
            }
        }
        let d = core.deltas(&st);
        core.apply(&mut st);
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
                c.stage(&mut st, slot, off as i64, None, ping(n, kind, 1_000));
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
        c.stage(
            &mut one,
            slot,
            9,
            None,
            ping("z", PingKind::Delivered, 1_000),
        );
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
        // Record time = event time here (no record timestamps).
        run(&mut c, &[(0, ping("a", PingKind::Delivered, 0))]);
        let d = run(&mut c, &[(1, ping("a", PingKind::Delivered, 600_000))]);
        assert_eq!(d.counted, 0, "a repeat at t + horizon is a duplicate");
        let d = run(&mut c, &[(2, ping("a", PingKind::Delivered, 600_001))]);
        assert_eq!(d.counted, 1, "past t + horizon a repeat counts again");
        let mut st = Staged::default();
        let slot = c.admit(&mut st, "t", 0, 3).unwrap();
        c.stage(
            &mut st,
            slot,
            3,
            Some(10_000_000),
            ping("b", PingKind::Delivered, 5),
        );
        c.apply(&mut st);
        assert_eq!(c.dedup_size().0, 1, "a is older than the 10-minute horizon");
        assert_eq!(
            st.slots[0].prune_upto,
            Some(3),
            "changelog rows up to offset 3 go"
        );
        assert_eq!(month_of(1_767_225_599_999), "2025-12-01");
        assert_eq!(month_of(1_767_225_600_000), "2026-01-01");
    }
}
