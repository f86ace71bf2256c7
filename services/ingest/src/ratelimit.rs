//! A per-client-IP token bucket for the public endpoints, answering 429
//! with `Retry-After` when a client sends faster than allowed.
//!
//! Buckets live in a few sharded maps; idle buckets (full again) are
//! dropped when a shard grows, so memory stays bounded by active clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::RateLimitSettings;

const SHARDS: usize = 16;
const PRUNE_AT: usize = 4096;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by client IP.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` sustained and `burst` at once.
    pub fn new(s: RateLimitSettings) -> RateLimiter {
        RateLimiter {
            per_second: s.per_second,
            burst: f64::from(s.burst),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, Bucket>> {
        let h = match ip {
            IpAddr::V4(a) => u32::from(*a) as usize,
            IpAddr::V6(a) => (u128::from(*a) >> 64) as usize,
        };
        &self.shards[h % SHARDS]
    }

    /// Takes one token for `ip` at `now`: `Ok(())`, or `Err(seconds)` to
    /// wait before the next request would be allowed.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        let mut map = self.shard(&ip).lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= PRUNE_AT {
            let (rate, burst) = (self.per_second, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = map.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.at).as_secs_f64() * self.per_second).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_a_burst_then_limits_then_refills() {
        let rl = RateLimiter::new(RateLimitSettings {
            per_second: 2.0,
            burst: 3,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(rl.check(ip, t0), Ok(()));
        }
        assert_eq!(rl.check(ip, t0), Err(1));
        assert_eq!(rl.check(other, t0), Ok(()));
        assert_eq!(rl.check(ip, t0 + Duration::from_millis(600)), Ok(()));
    }
}
