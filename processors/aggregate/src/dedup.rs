//! The in-memory dedup set of one partition (see the crate doc for why it
//! never causes a miscount and how much memory it takes).

use std::collections::{HashSet, VecDeque};

use crate::tally::PingKind;

/// A (notification_id, kind) pair: what counts at most once, ever.
pub type SeenKey = (String, PingKind);

/// The in-memory dedup set of one partition: every pair committed to
/// `seen` whose event time is within `horizon` of the watermark.
#[derive(Debug, Default)]
pub struct Dedup {
    set: HashSet<SeenKey>,
    order: VecDeque<(i64, SeenKey)>,
}

impl Dedup {
    /// Whether the pair is known to be committed already.
    pub fn contains(&self, key: &SeenKey) -> bool {
        self.set.contains(key)
    }

    /// Remembers a committed pair.
    pub fn insert(&mut self, at: i64, key: SeenKey) {
        if self.set.insert(key.clone()) {
            self.order.push_back((at, key));
        }
    }

    /// Forgets pairs older than `cutoff` (event time). Pairs arrive roughly
    /// in event-time order, so this pops from the front.
    pub fn evict_before(&mut self, cutoff: i64) {
        while let Some((at, _)) = self.order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, k)) = self.order.pop_front() {
                self.set.remove(&k);
            }
        }
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Approximate heap bytes held (for the bench's memory figure).
    pub fn approx_bytes(&self) -> usize {
        let strings: usize = self.order.iter().map(|(_, (s, _))| s.capacity()).sum();
        let entry = std::mem::size_of::<SeenKey>();
        self.set.capacity() * (entry + 1) + self.order.capacity() * (entry + 8) + 2 * strings
    }
}
