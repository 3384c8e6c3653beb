//! Sliding-window rate limiting on the sandbox clock, so windows shrink with `--time-scale`.
//!
//! Each key keeps the count of the current fixed window and of the previous one; the estimate
//! weights the previous window by how much of it still overlaps (the common sliding-window
//! approximation). One `DashMap` entry per key: no global lock.

use chrono::{DateTime, Utc};
use dashmap::DashMap;

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start_ms: i64,
    count: u64,
    previous: u64,
}

/// Counts requests per key over sliding windows.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    windows: DashMap<String, Window>,
}

/// The request was over the limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OverLimit;

impl RateLimiter {
    /// Counts one request under `key` unless that would exceed `limit` per `window`.
    pub fn admit(
        &self,
        key: String,
        limit: u64,
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<(), OverLimit> {
        let (estimate, _, _) = self.estimate(&key, window, now);
        if estimate >= limit as f64 {
            return Err(OverLimit);
        }
        if let Some(mut w) = self.windows.get_mut(&key) {
            w.count += 1;
        }
        Ok(())
    }

    /// Counts one request under `key` and returns the estimated requests in the window after it.
    pub fn record(&self, key: String, window: std::time::Duration, now: DateTime<Utc>) -> f64 {
        let (estimate, _, _) = self.estimate(&key, window, now);
        if let Some(mut w) = self.windows.get_mut(&key) {
            w.count += 1;
        }
        estimate + 1.0
    }

    /// Rolls the key's window forward to `now` and returns (estimate, window start, length).
    fn estimate(
        &self,
        key: &str,
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> (f64, i64, i64) {
        let len = (window.as_millis() as i64).max(1);
        let now_ms = now.timestamp_millis();
        let start = now_ms - now_ms.rem_euclid(len);
        let mut entry = self.windows.entry(key.to_string()).or_default();
        let w = entry.value_mut();
        if w.start_ms != start {
            w.previous = if start - w.start_ms == len {
                w.count
            } else {
                0
            };
            w.start_ms = start;
            w.count = 0;
        }
        let overlap = 1.0 - (now_ms - start) as f64 / len as f64;
        (w.previous as f64 * overlap + w.count as f64, start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn admits_up_to_the_limit_then_refuses_until_the_window_slides() {
        let rl = RateLimiter::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for _ in 0..10 {
            assert!(rl.admit("k".into(), 10, Duration::from_secs(1), t0).is_ok());
        }
        assert!(
            rl.admit("k".into(), 10, Duration::from_secs(1), t0)
                .is_err()
        );
        // Another key is independent.
        assert!(
            rl.admit("other".into(), 10, Duration::from_secs(1), t0)
                .is_ok()
        );
        // Two windows later the previous counts no longer weigh.
        let t2 = t0 + chrono::TimeDelta::seconds(2);
        assert!(rl.admit("k".into(), 10, Duration::from_secs(1), t2).is_ok());
    }
}
