//! A latency histogram of atomic buckets, for the request path.
//!
//! Owns: the bucket bounds and one observation (two relaxed atomic adds:
//! the bucket and the sum; the count is the buckets' total, so that a
//! scrape never shows a count that differs from its `+Inf` bucket). Must
//! not: lock or allocate.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: Prometheus' defaults from
/// 5 ms to 10 s, then 30 s and R9's 60 s (inference is slow); one more
/// bucket for everything above.
pub(crate) const BOUNDS_US: [u64; 13] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000, 60_000_000,
];

const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Observations by bucket (not cumulative) and their sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// What a scrape read of a [`Histogram`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Reading {
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) sum_us: u64,
}

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    pub(crate) fn read(&self) -> Reading {
        Reading {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            sum_us: self.sum_us.load(Relaxed),
        }
    }
}

impl Reading {
    /// How many were observed.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The sum, in seconds.
    pub(crate) fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// (upper bound in seconds, observations in that bucket alone), the
    /// last bound `f64::MAX` (`+Inf`), as prometheus-client encodes them.
    pub(crate) fn buckets(&self) -> [(f64, u64); BUCKETS] {
        std::array::from_fn(|i| {
            let bound = BOUNDS_US.get(i).map_or(f64::MAX, |&us| us as f64 / 1e6);
            (bound, self.buckets[i])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_the_rest_goes_to_inf() {
        let h = Histogram::default();
        for ms in [0, 5, 6, 60_000, 60_001, 3_600_000] {
            h.observe(Duration::from_millis(ms));
        }
        let r = h.read();
        assert_eq!(r.count(), 6);
        assert_eq!(r.buckets[0], 2, "0 and exactly 5 ms");
        assert_eq!(r.buckets[1], 1, "6 ms");
        assert_eq!(r.buckets[12], 1, "exactly 60 s");
        assert_eq!(r.buckets[13], 2, "past 60 s");
        assert_eq!(r.sum_us, (5 + 6 + 60_000 + 60_001 + 3_600_000) * 1_000);
        let b = r.buckets();
        assert_eq!(b[0], (0.005, 2));
        assert_eq!(b[13], (f64::MAX, 2));
    }
}
