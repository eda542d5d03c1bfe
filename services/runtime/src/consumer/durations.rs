//! A fixed-bucket histogram of handling durations, small enough to add to a Redis hash every
//! second and to keep per minute for a day, from which p50 and p99 are estimated.
//!
//! Buckets are not cumulative: field `duration_le:<bound>` counts durations above the previous
//! bound and at most `<bound>` ms; `duration_le:inf` counts the rest. Quantiles interpolate
//! linearly inside a bucket (as Prometheus' `histogram_quantile` does), so an estimate is off by
//! at most the width of its bucket; a quantile in the last bucket answers its lower bound.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, ms; one more bucket holds everything slower.
pub const BOUNDS_MS: [u64; 14] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
];
const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// Counts per bucket, [`BOUNDS_MS`] then the overflow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DurationHistogram([u64; BUCKETS]);

impl DurationHistogram {
    pub fn record(&mut self, duration: Duration) {
        let ms = duration.as_secs_f64() * 1_000.0;
        let bucket = BOUNDS_MS
            .iter()
            .position(|bound| ms <= *bound as f64)
            .unwrap_or(BOUNDS_MS.len());
        self.0[bucket] += 1;
    }

    pub fn add(&mut self, other: &DurationHistogram) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The hash fields and their counts, empty buckets left out.
    pub fn fields(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (field(i), *n))
    }

    /// Reads the buckets back from a hash written with [`DurationHistogram::fields`].
    pub fn from_fields(hash: &HashMap<String, String>) -> DurationHistogram {
        let mut histogram = DurationHistogram::default();
        for (i, count) in histogram.0.iter_mut().enumerate() {
            *count = hash
                .get(&field(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
        histogram
    }

    /// What was recorded between `earlier` and this cumulative reading; all of this reading
    /// when a bucket went down (the counters were reset in between).
    pub fn since(&self, earlier: &DurationHistogram) -> DurationHistogram {
        let mut delta = DurationHistogram::default();
        for i in 0..BUCKETS {
            match self.0[i].checked_sub(earlier.0[i]) {
                Some(n) => delta.0[i] = n,
                None => return *self,
            }
        }
        delta
    }

    /// The estimated `q` quantile (0 < q ≤ 1) in ms; None when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, count) in self.0.iter().enumerate() {
            if *count == 0 || ((below + count) as f64) < rank {
                below += count;
                continue;
            }
            let lower = if i == 0 { 0 } else { BOUNDS_MS[i - 1] } as f64;
            let Some(upper) = BOUNDS_MS.get(i) else {
                return Some(lower);
            };
            let inside = (rank - below as f64) / *count as f64;
            return Some(lower + (*upper as f64 - lower) * inside);
        }
        BOUNDS_MS.last().map(|b| *b as f64)
    }
}

fn field(bucket: usize) -> String {
    match BOUNDS_MS.get(bucket) {
        Some(bound) => format!("duration_le:{bound}"),
        None => "duration_le:inf".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(ms: &[u64]) -> DurationHistogram {
        let mut h = DurationHistogram::default();
        for m in ms {
            h.record(Duration::from_millis(*m));
        }
        h
    }

    #[test]
    fn durations_land_in_the_bucket_of_their_upper_bound() {
        let h = of(&[0, 1, 2, 3, 30_000, 30_001]);
        let fields: Vec<(String, u64)> = h.fields().collect();
        assert_eq!(
            fields,
            vec![
                ("duration_le:1".to_string(), 2),
                ("duration_le:2".to_string(), 1),
                ("duration_le:5".to_string(), 1),
                ("duration_le:30000".to_string(), 1),
                ("duration_le:inf".to_string(), 1),
            ]
        );
        let hash: HashMap<String, String> = h.fields().map(|(k, v)| (k, v.to_string())).collect();
        assert_eq!(DurationHistogram::from_fields(&hash), h);
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        // 98 fast (≤ 1 ms), 2 slow (250–500 ms): p50 inside the first bucket, p99 in the slow one.
        let mut ms = vec![1; 98];
        ms.extend([400, 400]);
        let h = of(&ms);
        let p50 = h.quantile(0.5).unwrap();
        assert!((0.0..=1.0).contains(&p50), "{p50}");
        assert!((p50 - 50.0 / 98.0).abs() < 1e-9, "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((250.0..=500.0).contains(&p99), "{p99}");
        assert_eq!(p99, 375.0);
        // Everything in one bucket: the quantiles spread across it.
        let h = of(&[60; 10]);
        assert_eq!(h.quantile(0.5), Some(75.0));
        assert_eq!(h.quantile(1.0), Some(100.0));
        assert_eq!(DurationHistogram::default().quantile(0.5), None);
        // Slower than every bound: the last bound is all that is known.
        assert_eq!(of(&[60_000]).quantile(0.99), Some(30_000.0));
    }

    #[test]
    fn since_subtracts_cumulative_readings_and_survives_a_reset() {
        let earlier = of(&[1, 1, 100]);
        let mut later = earlier;
        later.add(&of(&[1, 7]));
        assert_eq!(later.since(&earlier), of(&[1, 7]));
        let reset = of(&[7]);
        assert_eq!(reset.since(&earlier), reset);
    }
}
