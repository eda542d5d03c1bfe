//! Figures for the operators' views (the seed's `/admin/circulatory/queues` and `/events`), kept
//! in Redis where every instance adds to them and any console reads them:
//!
//! - `circ:<ns>:stats:group:<group>` (hash, cumulative): `completed`, `failed`, `retried`,
//!   `dead_lettered`, `duration_ms_sum`, `duration_count`.
//! - `circ:<ns>:stats:event:<type>` (hash, cumulative, all groups): the same fields.
//! - `circ:<ns>:stats:group:<group>:instance:<id>` (hash, expires): this instance's `active`
//!   (running), `waiting` (lag), `delayed` (held for a retry or a breaker), `paused` partitions.
//!
//! Counts accumulate in memory and are flushed once a second with one pipeline, so the hot path
//! never waits on Redis.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub completed: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub duration_ms_sum: u64,
    pub duration_count: u64,
}

impl Counts {
    fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("completed", self.completed),
            ("failed", self.failed),
            ("retried", self.retried),
            ("dead_lettered", self.dead_lettered),
            ("duration_ms_sum", self.duration_ms_sum),
            ("duration_count", self.duration_count),
        ]
    }
}

/// What happened to one event, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    Completed,
    Retried,
    DeadLettered,
}

/// This instance's point-in-time figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub active: usize,
    pub waiting: i64,
    pub delayed: usize,
    pub paused: usize,
}

#[derive(Debug, Default)]
pub struct Accumulator {
    by_type: HashMap<String, Counts>,
}

impl Accumulator {
    pub fn record(&mut self, event_type: &str, tally: Tally, duration: Duration) {
        let counts = self.by_type.entry(event_type.to_string()).or_default();
        match tally {
            Tally::Completed => counts.completed += 1,
            Tally::Retried => {
                counts.failed += 1;
                counts.retried += 1
            }
            Tally::DeadLettered => {
                counts.failed += 1;
                counts.dead_lettered += 1
            }
        }
        // The average duration is that of successful handling.
        if tally == Tally::Completed {
            counts.duration_ms_sum += duration.as_millis() as u64;
            counts.duration_count += 1;
        }
    }

    /// Takes what accumulated since the last flush.
    pub fn take(&mut self) -> HashMap<String, Counts> {
        std::mem::take(&mut self.by_type)
    }
}

/// Redis keys of one group.
#[derive(Debug, Clone)]
pub struct StatsKeys {
    prefix: String,
    group: String,
    instance: String,
}

impl StatsKeys {
    pub fn new(namespace: Option<&str>, group: &str, instance: &str) -> StatsKeys {
        StatsKeys {
            prefix: crate::catalog::redis_key(namespace, "stats"),
            group: group.to_string(),
            instance: instance.to_string(),
        }
    }

    pub fn group(&self) -> String {
        format!("{}:group:{}", self.prefix, self.group)
    }

    pub fn event(&self, event_type: &str) -> String {
        format!("{}:event:{event_type}", self.prefix)
    }

    pub fn instance(&self) -> String {
        format!(
            "{}:group:{}:instance:{}",
            self.prefix, self.group, self.instance
        )
    }
}

/// Writes accumulated counts and the instance snapshot in one round trip.
pub async fn flush(
    redis: &mut ConnectionManager,
    keys: &StatsKeys,
    counts: HashMap<String, Counts>,
    snapshot: Snapshot,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    let mut total = Counts::default();
    for (event_type, c) in &counts {
        for (field, value) in c.fields() {
            if value > 0 {
                pipe.cmd("HINCRBY")
                    .arg(keys.event(event_type))
                    .arg(field)
                    .arg(value)
                    .ignore();
            }
        }
        total.completed += c.completed;
        total.failed += c.failed;
        total.retried += c.retried;
        total.dead_lettered += c.dead_lettered;
        total.duration_ms_sum += c.duration_ms_sum;
        total.duration_count += c.duration_count;
    }
    if !total.is_empty() {
        for (field, value) in total.fields() {
            pipe.cmd("HINCRBY")
                .arg(keys.group())
                .arg(field)
                .arg(value)
                .ignore();
        }
    }
    let instance = keys.instance();
    pipe.cmd("HSET")
        .arg(&instance)
        .arg("active")
        .arg(snapshot.active)
        .arg("waiting")
        .arg(snapshot.waiting)
        .arg("delayed")
        .arg(snapshot.delayed)
        .arg("paused")
        .arg(snapshot.paused)
        .ignore();
    pipe.cmd("EXPIRE").arg(&instance).arg(15).ignore();
    pipe.query_async(redis).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_accumulate_per_type_and_are_taken_once() {
        let mut acc = Accumulator::default();
        acc.record("a", Tally::Completed, Duration::from_millis(10));
        acc.record("a", Tally::Retried, Duration::from_millis(20));
        acc.record("b", Tally::DeadLettered, Duration::from_millis(5));
        let taken = acc.take();
        assert_eq!(
            taken["a"],
            Counts {
                completed: 1,
                failed: 1,
                retried: 1,
                dead_lettered: 0,
                duration_ms_sum: 10,
                duration_count: 1
            }
        );
        assert_eq!(taken["b"].dead_lettered, 1);
        assert!(acc.take().is_empty());
        let keys = StatsKeys::new(Some("t1"), "payments", "host-1");
        assert_eq!(keys.group(), "circ:t1:stats:group:payments");
        assert_eq!(
            keys.event("payment.initiated"),
            "circ:t1:stats:event:payment.initiated"
        );
        assert_eq!(
            keys.instance(),
            "circ:t1:stats:group:payments:instance:host-1"
        );
    }
}
