//! Per-minute history of every group and event type, kept 24 hours in Redis: one list per
//! series, newest first, trimmed to [`MINUTES_KEPT`] samples, so storage is bounded by the
//! topology (about 80 series × 1,440 samples of at most about 200 bytes: some 25 MB). Each sample
//! holds the cumulative counters, the cumulative histogram of handling durations and the gauges
//! (lag, time lag) at that minute; the API turns counters into per-minute counts and the
//! histogram's difference between two minutes into that minute's p50 and p99.
//! With several consoles, one sample per minute is written: the first to claim the minute wins.

use circulatory::sync::MutexExt;
use std::collections::BTreeMap;
use std::sync::Mutex;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use circulatory::consumer::durations::DurationHistogram;

use crate::cluster::ClusterView;

/// One day of minutes.
pub const MINUTES_KEPT: isize = 1440;

/// What is stored per minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Stored {
    /// Start of the minute, ms.
    t: i64,
    completed: u64,
    failed: u64,
    dead_lettered: u64,
    lag: i64,
    time_lag: f64,
    /// Samples stored before durations were kept have none: their minute has no percentiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    durations: Option<DurationHistogram>,
}

/// One minute of a series, as served.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    /// Start of the minute, ms since the epoch.
    pub t: i64,
    /// Handled successfully during the minute.
    pub completed: u64,
    pub failed: u64,
    pub dead_lettered: u64,
    /// Records waiting at the end of the minute (groups only).
    pub lag: i64,
    /// Age of the oldest record waiting, seconds (groups only).
    pub time_lag_seconds: f64,
    /// Median and 99th percentile of the minute's successful handler calls, ms, estimated
    /// from fixed buckets (within a bucket's width); null when none finished.
    pub duration_p50_ms: Option<f64>,
    pub duration_p99_ms: Option<f64>,
}

/// The history store.
pub struct History {
    redis: ConnectionManager,
    prefix: String,
    last_minute: Mutex<i64>,
}

impl History {
    pub fn new(redis: ConnectionManager, namespace: Option<&str>) -> History {
        History {
            redis,
            prefix: circulatory::catalog::redis_key(namespace, "console:history"),
            last_minute: Mutex::new(0),
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}:{kind}:{name}", self.prefix)
    }

    /// Stores the view's figures once per minute (the first refresh of each minute).
    pub async fn record(&self, view: &ClusterView) {
        let minute = view.taken_at_ms - view.taken_at_ms.rem_euclid(60_000);
        {
            let mut last = self.last_minute.locked();
            if *last == minute || !view.errors.is_empty() {
                return;
            }
            *last = minute;
        }
        let mut redis = self.redis.clone();
        let claimed: Option<String> = redis::cmd("SET")
            .arg(format!("{}:minute:{minute}", self.prefix))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(180)
            .query_async(&mut redis)
            .await
            .unwrap_or(None);
        if claimed.is_none() {
            return;
        }
        let mut pipe = redis::pipe();
        let mut push = |key: String, s: Stored| {
            let text = serde_json::to_string(&s).unwrap_or_default();
            pipe.lpush(&key, text).ignore();
            pipe.ltrim(&key, 0, MINUTES_KEPT - 1).ignore();
        };
        for g in &view.groups {
            push(
                self.key("group", &g.group),
                Stored {
                    t: minute,
                    completed: g.completed,
                    failed: g.failed,
                    dead_lettered: g.dead_lettered,
                    lag: g.waiting,
                    time_lag: g.time_lag_seconds,
                    durations: Some(g.durations),
                },
            );
        }
        for e in &view.events {
            push(
                self.key("event", &e.event_type),
                Stored {
                    t: minute,
                    completed: e.processed,
                    failed: e.failed,
                    dead_lettered: e.dead_lettered,
                    durations: Some(e.durations),
                    ..Stored::default()
                },
            );
        }
        if let Err(e) = pipe.query_async::<()>(&mut redis).await {
            tracing::debug!(error = %e, "history not stored");
        }
    }

    /// The last `minutes` of each named series of `kind` (`group` or `event`), oldest first.
    pub async fn series(
        &self,
        kind: &str,
        names: &[String],
        minutes: isize,
    ) -> redis::RedisResult<BTreeMap<String, Vec<Point>>> {
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        for name in names {
            // One more sample than asked: the first minute's counts need the one before it.
            pipe.lrange(self.key(kind, name), 0, minutes);
        }
        let lists: Vec<Vec<String>> = pipe.query_async(&mut redis).await?;
        Ok(names
            .iter()
            .cloned()
            .zip(lists.iter().map(|l| points(l)))
            .collect())
    }
}

/// Per-minute points from stored samples (newest first), oldest first.
fn points(newest_first: &[String]) -> Vec<Point> {
    let mut samples: Vec<Stored> = newest_first
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    samples.reverse();
    samples
        .windows(2)
        .map(|w| {
            let minute = match (&w[1].durations, &w[0].durations) {
                (Some(now), Some(before)) => now.since(before),
                _ => DurationHistogram::default(),
            };
            (w, minute)
        })
        .map(|(w, minute)| Point {
            t: w[1].t,
            // Counters restart at zero when their keys are reset: count from zero then.
            completed: w[1]
                .completed
                .checked_sub(w[0].completed)
                .unwrap_or(w[1].completed),
            failed: w[1].failed.checked_sub(w[0].failed).unwrap_or(w[1].failed),
            dead_lettered: w[1]
                .dead_lettered
                .checked_sub(w[0].dead_lettered)
                .unwrap_or(w[1].dead_lettered),
            lag: w[1].lag,
            time_lag_seconds: w[1].time_lag,
            duration_p50_ms: minute.quantile(0.5),
            duration_p99_ms: minute.quantile(0.99),
        })
        .collect()
}

/// `1h` or `24h` in minutes.
pub fn range_minutes(range: Option<&str>) -> Option<isize> {
    match range.unwrap_or("1h") {
        "1h" => Some(60),
        "6h" => Some(360),
        "24h" => Some(1440),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stored(t: i64, completed: u64, lag: i64) -> String {
        serde_json::to_string(&Stored {
            t,
            completed,
            lag,
            ..Stored::default()
        })
        .unwrap()
    }

    #[test]
    fn cumulative_samples_become_per_minute_counts() {
        let newest_first = [stored(180, 30, 2), stored(120, 25, 4), stored(60, 10, 9)];
        let p = points(&newest_first);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].t, p[0].completed, p[0].lag), (120, 15, 4));
        assert_eq!((p[1].t, p[1].completed, p[1].lag), (180, 5, 2));
        // A reset counter counts from zero.
        let reset = [stored(120, 3, 0), stored(60, 100, 0)];
        assert_eq!(points(&reset)[0].completed, 3);
    }

    #[test]
    fn each_minute_has_the_percentiles_of_its_own_calls() {
        let mut before = DurationHistogram::default();
        for _ in 0..1000 {
            before.record(Duration::from_millis(400));
        }
        let mut after = before;
        for ms in [1; 99].into_iter().chain([70]) {
            after.record(Duration::from_millis(ms));
        }
        let sample = |t, completed, durations| {
            serde_json::to_string(&Stored {
                t,
                completed,
                durations,
                ..Stored::default()
            })
            .unwrap()
        };
        let newest_first = [
            sample(180, 1100, Some(after)),
            sample(120, 1000, Some(before)),
            sample(60, 0, None),
        ];
        let p = points(&newest_first);
        // The minute before had no histogram: no percentiles, not zeros.
        assert_eq!((p[0].duration_p50_ms, p[0].duration_p99_ms), (None, None));
        // Only the last minute's 100 calls count, not the 1,000 slow ones before them.
        let p50 = p[1].duration_p50_ms.unwrap();
        let p99 = p[1].duration_p99_ms.unwrap();
        assert!(p50 <= 1.0, "{p50}");
        assert!(p99 <= 1.0, "{p99}");
        assert_eq!(p[1].completed, 100);
        // A minute without calls has none.
        let idle = [
            sample(240, 1100, Some(after)),
            sample(180, 1100, Some(after)),
        ];
        assert_eq!(points(&idle)[0].duration_p99_ms, None);
    }

    #[test]
    fn ranges_are_bounded() {
        assert_eq!(range_minutes(None), Some(60));
        assert_eq!(range_minutes(Some("24h")), Some(1440));
        assert_eq!(range_minutes(Some("7d")), None);
    }
}
