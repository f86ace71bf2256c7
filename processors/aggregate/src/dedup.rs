//! The dedup state of one partition: every (notification_id, kind) first
//! seen within the horizon, in memory, and the changelog rows that hold
//! it in Postgres (see [`crate::changelog`]).
//!
//! Guarantees:
//! - **Horizon in record time.** A key first seen at Kafka record time `t`
//!   (rounded UP to the second) is known — a repeat of it is a duplicate —
//!   while the partition's max record time (including the repeat's own)
//!   is at most `t + horizon`; after that a repeat counts again. The
//!   decision depends only on the log, never on batch boundaries, restarts
//!   or when memory was cleaned ([`Dedup::expire`] only drops keys that
//!   can no longer be known), so a replay counts exactly as the live run.
//! - **Keys.** A key is the first 128 bits of SHA-256(kind byte ‖
//!   notification_id). Two distinct pairs of one partition collide with
//!   probability p ≈ n² / 2^129 for n keys in the horizon (10 M keys:
//!   p ≈ 1.5 × 10⁻²⁵); a collision would drop one ping as a duplicate.
//! - **Memory.** A key and its time take 20 bytes in a hash table (plus
//!   one control byte and the table's free slots: 21–48 bytes per pair,
//!   ≈ 44 B at 1 M and ≈ 35 B at 10 M keys, measured by `pushflow bench
//!   aggregate`), plus 16 bytes per changelog row still in Postgres.

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::tally::PingKind;

/// A (notification_id, kind) pair as its 128-bit truncated SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(
    /// The 128 bits as four little-endian words.
    pub [u32; 4],
);

impl Key {
    /// The key of `kind` of `notification_id`.
    pub fn of(kind: PingKind, notification_id: &str) -> Key {
        let mut h = Sha256::new();
        h.update([kind.code() as u8]);
        h.update(notification_id.as_bytes());
        let d = h.finalize();
        Key::from_bytes(&d[..16])
    }

    /// From its 16 stored bytes (little-endian words).
    pub fn from_bytes(b: &[u8]) -> Key {
        let w = |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Key([w(0), w(1), w(2), w(3)])
    }

    /// Its 16 stored bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (i, w) in self.0.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

impl Hash for Key {
    /// The key is already uniformly random: its first 64 bits are the hash.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(((self.0[0] as u64) << 32) | self.0[1] as u64);
    }
}

/// Passes [`Key`]'s 64 bits through (no second hash on the hot path).
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A table keyed by [`Key`].
pub type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// Record time in whole seconds, rounded up (what a key keeps).
pub fn secs_up(record_ms: i64) -> u32 {
    (record_ms.max(0) as u64)
        .div_ceil(1000)
        .min(u32::MAX as u64) as u32
}

/// Whether a key first seen at `secs` is still known when the partition's
/// max record time is `now_ms`.
pub fn alive(secs: u32, now_ms: i64, horizon_ms: i64) -> bool {
    (secs as i64) * 1000 + horizon_ms >= now_ms
}

/// A changelog row still in Postgres: the offsets it ends at and the
/// partition's max record time then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRow {
    /// Next offset after the row's batch.
    pub next_offset: i64,
    /// The partition's max record time after it.
    pub max_record_ms: i64,
}

/// The dedup state of one partition.
#[derive(Debug, Default)]
pub struct Dedup {
    keys: KeyMap<u32>,
    rows: VecDeque<LogRow>,
    /// Max record time seen, ms (`i64::MIN`: none).
    record_ms: Option<i64>,
}

impl Dedup {
    /// The partition's max record time (`i64::MIN` when none seen).
    pub fn record_ms(&self) -> i64 {
        self.record_ms.unwrap_or(i64::MIN)
    }

    /// Whether `key` is known when the partition's max record time is
    /// `now_ms` (see the module doc).
    pub fn known(&self, key: &Key, now_ms: i64, horizon_ms: i64) -> bool {
        self.keys
            .get(key)
            .is_some_and(|s| alive(*s, now_ms, horizon_ms))
    }

    /// Remembers `key` first seen at `secs` (a later time wins: a key
    /// counted again after its horizon restarts it).
    pub fn insert(&mut self, key: Key, secs: u32) {
        let e = self.keys.entry(key).or_insert(secs);
        *e = (*e).max(secs);
    }

    /// Notes a changelog row written (or loaded) and the record time it
    /// reached.
    pub fn logged(&mut self, row: LogRow) {
        self.record_ms = Some(self.record_ms().max(row.max_record_ms));
        if self
            .rows
            .back()
            .is_some_and(|r| r.next_offset >= row.next_offset)
        {
            return;
        }
        self.rows.push_back(row);
    }

    /// Forgets what is past the horizon, once the oldest changelog row is
    /// past it by more than 1/64 of it (so the table is swept rarely, not
    /// per batch). Returns the next offset up to which the partition's
    /// changelog rows hold only forgotten keys (delete them), if any.
    pub fn expire(&mut self, horizon_ms: i64) -> Option<i64> {
        let now = self.record_ms?;
        let slack = horizon_ms / 64;
        let oldest = self.rows.front()?;
        if oldest
            .max_record_ms
            .saturating_add(horizon_ms)
            .saturating_add(slack)
            >= now
        {
            return None;
        }
        let mut upto = None;
        while let Some(r) = self.rows.front() {
            if r.max_record_ms.saturating_add(horizon_ms) >= now || self.rows.len() == 1 {
                break;
            }
            upto = Some(r.next_offset);
            self.rows.pop_front();
        }
        self.keys.retain(|_, s| alive(*s, now, horizon_ms));
        upto
    }

    /// Keys held (some may be past the horizon until the next sweep).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Changelog rows held.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Heap bytes of the table and the row list (hashbrown: a power of two
    /// of buckets ≥ 8/7 of the capacity, each an entry and a control byte).
    pub fn heap_bytes(&self) -> usize {
        let cap = self.keys.capacity();
        let buckets = if cap == 0 {
            0
        } else if cap < 8 {
            if cap < 4 {
                4
            } else {
                8
            }
        } else {
            (cap * 8 / 7).next_power_of_two()
        };
        let entry = std::mem::size_of::<(Key, u32)>();
        buckets * (entry + 1) + self.rows.capacity() * std::mem::size_of::<LogRow>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_round_trip() {
        let a = Key::of(PingKind::Delivered, "n-1");
        assert_eq!(a, Key::of(PingKind::Delivered, "n-1"));
        assert_ne!(a, Key::of(PingKind::Clicked, "n-1"));
        assert_ne!(a, Key::of(PingKind::Delivered, "n-2"));
        assert_eq!(Key::from_bytes(&a.to_bytes()), a);
        assert_eq!(std::mem::size_of::<(Key, u32)>(), 20);
    }

    #[test]
    fn knows_a_key_until_the_horizon_and_sweeps_past_it() {
        let h = 64_000;
        let mut d = Dedup::default();
        let k = Key::of(PingKind::Delivered, "n");
        d.insert(k, secs_up(1_500)); // kept as 2 s
        d.logged(LogRow {
            next_offset: 1,
            max_record_ms: 1_500,
        });
        assert!(d.known(&k, 66_000, h));
        assert!(!d.known(&k, 66_001, h));
        // Not swept yet: the oldest row is within horizon + slack.
        d.logged(LogRow {
            next_offset: 2,
            max_record_ms: 66_001,
        });
        assert_eq!(d.expire(h), None);
        assert_eq!(d.len(), 1);
        d.logged(LogRow {
            next_offset: 3,
            max_record_ms: 70_000,
        });
        assert_eq!(d.expire(h), Some(1));
        assert!(d.is_empty());
        assert_eq!(d.rows(), 2, "rows within the horizon stay");
        assert_eq!(d.record_ms(), 70_000);
    }
}
