//! Event-time tumbling windows of a campaign, as the components that count
//! into windows (the aggregate, analytics) key them: a window of `size_ms`
//! starts at a multiple of its size since the epoch (UTC), so every
//! instance, replay and restart puts an event in the same window.

/// One window of one campaign: a row of a component's window table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WindowKey {
    /// Merchant.
    pub store_id: String,
    /// Campaign.
    pub campaign_id: String,
    /// Window size, ms.
    pub size_ms: i64,
    /// Window start, ms since the epoch (a multiple of the size).
    pub start_ms: i64,
}

impl WindowKey {
    /// The window of `size_ms` that holds an event of `store_id` and
    /// `campaign_id` at `at_ms`.
    pub fn of(store_id: &str, campaign_id: &str, size_ms: i64, at_ms: i64) -> WindowKey {
        WindowKey {
            store_id: store_id.to_string(),
            campaign_id: campaign_id.to_string(),
            size_ms,
            start_ms: window_start(at_ms, size_ms),
        }
    }
}

/// The start of the window of `size_ms` that holds `at_ms` (also before
/// the epoch: windows are aligned on multiples of the size).
pub fn window_start(at_ms: i64, size_ms: i64) -> i64 {
    at_ms.div_euclid(size_ms) * size_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_windows_on_multiples_of_their_size() {
        assert_eq!(window_start(59_999, 60_000), 0);
        assert_eq!(window_start(60_000, 60_000), 60_000);
        assert_eq!(window_start(-1, 60_000), -60_000);
        assert_eq!(WindowKey::of("s", "c", 60_000, 61_000).start_ms, 60_000);
    }
}
