//! Per-channel figures for the console's realtime view (`/admin/circulatory/realtime`: subscribers,
//! messages, avgLatency), kept in Redis where every gateway instance adds to them:
//!
//! - `circ:<ns>:stats:channel:<template>` (hash, cumulative, all instances): `subscribers` (client
//!   subscriptions now open; each instance adds its changes), `messages` (messages written to
//!   clients), `latency_ms_sum` / `latency_count` (publish → written, so avgLatency =
//!   sum / count), `received` (messages received from Redis, once per instance), `dropped`
//!   (messages a slow client did not get).
//! - `circ:<ns>:stats:channel:<template>:instance:<id>` (hash, expires after 15 s without a flush):
//!   this instance's `subscribers`; summing these is exact even after an instance died without
//!   taking its subscribers out of the cumulative hash.
//! - `circ:<ns>:stats:channels` (set): the templates that have figures.
//!
//! `<template>` is the declared template (`comment:added:{postId}`), so the number of keys is
//! bounded by the topology, not by the entities. Counts accumulate in atomics and are flushed
//! about once a second with one pipeline, so delivery never waits on Redis.

use circulatory::sync::MutexExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;

/// How long an instance's subscriber count outlives its last flush, in seconds.
const INSTANCE_TTL_SECS: u64 = 15;

/// One template's figures on this instance since the last flush (`subscribers`: now).
#[derive(Debug, Default)]
pub struct ChannelCounters {
    pub subscribers: AtomicI64,
    pub received: AtomicU64,
    pub messages: AtomicU64,
    pub latency_ms_sum: AtomicU64,
    pub latency_count: AtomicU64,
    pub dropped: AtomicU64,
}

impl ChannelCounters {
    /// A message written to a client `latency_ms` after it was published (if known).
    pub fn delivered(&self, latency_ms: Option<u64>) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        if let Some(ms) = latency_ms {
            self.latency_ms_sum.fetch_add(ms, Ordering::Relaxed);
            self.latency_count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Taken {
    received: u64,
    messages: u64,
    latency_ms_sum: u64,
    latency_count: u64,
    dropped: u64,
}

impl Taken {
    fn fields(&self) -> [(&'static str, u64); 5] {
        [
            ("received", self.received),
            ("messages", self.messages),
            ("latency_ms_sum", self.latency_ms_sum),
            ("latency_count", self.latency_count),
            ("dropped", self.dropped),
        ]
    }
}

/// Every template's counters, and where they are flushed.
#[derive(Debug)]
pub struct ChannelStats {
    prefix: String,
    instance: String,
    counters: HashMap<Arc<str>, Arc<ChannelCounters>>,
    flushed_subscribers: Mutex<HashMap<Arc<str>, i64>>,
}

impl ChannelStats {
    pub fn new<'a>(
        namespace: Option<&str>,
        instance: &str,
        templates: impl IntoIterator<Item = &'a Arc<str>>,
    ) -> ChannelStats {
        ChannelStats {
            prefix: circulatory::catalog::redis_key(namespace, "stats"),
            instance: instance.to_string(),
            counters: templates
                .into_iter()
                .map(|t| (t.clone(), Arc::new(ChannelCounters::default())))
                .collect(),
            flushed_subscribers: Mutex::new(HashMap::new()),
        }
    }

    /// The counters of a declared template.
    pub fn counters(&self, template: &str) -> Option<Arc<ChannelCounters>> {
        self.counters.get(template).cloned()
    }

    /// The cumulative hash of a template.
    pub fn key(&self, template: &str) -> String {
        format!("{}:channel:{template}", self.prefix)
    }

    /// This instance's hash of a template.
    pub fn instance_key(&self, template: &str) -> String {
        format!(
            "{}:channel:{template}:instance:{}",
            self.prefix, self.instance
        )
    }

    /// The set of templates with figures.
    pub fn index_key(&self) -> String {
        format!("{}:channels", self.prefix)
    }

    /// Adds what accumulated since the last flush to the Redis hashes, in one round trip. On
    /// failure the counts are put back, so a Redis outage delays figures without losing them.
    pub async fn flush(&self, redis: &mut ConnectionManager) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        let mut taken = Vec::new();
        let mut subscribers_now = Vec::new();
        {
            let flushed = self.flushed_subscribers.locked();
            for (template, counters) in &self.counters {
                let t = Taken {
                    received: counters.received.swap(0, Ordering::Relaxed),
                    messages: counters.messages.swap(0, Ordering::Relaxed),
                    latency_ms_sum: counters.latency_ms_sum.swap(0, Ordering::Relaxed),
                    latency_count: counters.latency_count.swap(0, Ordering::Relaxed),
                    dropped: counters.dropped.swap(0, Ordering::Relaxed),
                };
                let now = counters.subscribers.load(Ordering::Relaxed);
                let before = flushed.get(template).copied().unwrap_or(0);
                if t == Taken::default() && now == before && now == 0 {
                    continue;
                }
                // Every field is written (an increment of 0 creates it), so readers find them all.
                let key = self.key(template);
                for (field, value) in t.fields() {
                    pipe.cmd("HINCRBY").arg(&key).arg(field).arg(value).ignore();
                }
                pipe.cmd("HINCRBY")
                    .arg(&key)
                    .arg("subscribers")
                    .arg(now - before)
                    .ignore();
                let instance = self.instance_key(template);
                pipe.cmd("HSET")
                    .arg(&instance)
                    .arg("subscribers")
                    .arg(now)
                    .ignore();
                pipe.cmd("EXPIRE")
                    .arg(&instance)
                    .arg(INSTANCE_TTL_SECS)
                    .ignore();
                pipe.cmd("SADD")
                    .arg(self.index_key())
                    .arg(template.as_ref())
                    .ignore();
                taken.push((template.clone(), t));
                subscribers_now.push((template.clone(), now));
            }
        }
        if taken.is_empty() {
            return Ok(());
        }
        match pipe.query_async::<()>(redis).await {
            Ok(()) => {
                let mut flushed = self.flushed_subscribers.locked();
                for (template, now) in subscribers_now {
                    flushed.insert(template, now);
                }
                Ok(())
            }
            Err(e) => {
                for (template, t) in taken {
                    let c = &self.counters[&template];
                    c.received.fetch_add(t.received, Ordering::Relaxed);
                    c.messages.fetch_add(t.messages, Ordering::Relaxed);
                    c.latency_ms_sum
                        .fetch_add(t.latency_ms_sum, Ordering::Relaxed);
                    c.latency_count
                        .fetch_add(t.latency_count, Ordering::Relaxed);
                    c.dropped.fetch_add(t.dropped, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_namespace_and_template() {
        let templates: Vec<Arc<str>> = vec![Arc::from("comment:added:{postId}")];
        let stats = ChannelStats::new(Some("t1"), "gw-1", &templates);
        assert_eq!(
            stats.key("comment:added:{postId}"),
            "circ:t1:stats:channel:comment:added:{postId}"
        );
        assert_eq!(
            stats.instance_key("comment:added:{postId}"),
            "circ:t1:stats:channel:comment:added:{postId}:instance:gw-1"
        );
        assert_eq!(stats.index_key(), "circ:t1:stats:channels");
        let default = ChannelStats::new(None, "gw-1", &templates);
        assert_eq!(default.index_key(), "circ:default:stats:channels");
        assert!(stats.counters("comment:added:{postId}").is_some());
        assert!(stats.counters("other").is_none());
    }

    #[test]
    fn deliveries_accumulate_latency_only_when_known() {
        let c = ChannelCounters::default();
        c.delivered(Some(3));
        c.delivered(None);
        assert_eq!(c.messages.load(Ordering::Relaxed), 2);
        assert_eq!(c.latency_ms_sum.load(Ordering::Relaxed), 3);
        assert_eq!(c.latency_count.load(Ordering::Relaxed), 1);
    }
}
