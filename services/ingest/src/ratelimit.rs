//! Per-client token buckets. A client spends one token per event; tokens refill at a steady rate
//! up to the bucket size. In memory per instance: with N instances behind a balancer, a client's
//! effective limit is up to N times the configured one, which is the usual trade for not adding a
//! network round trip to every request.

use circulatory::sync::MutexExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most clients tracked; past this, buckets idle for a minute are dropped first.
const MAX_CLIENTS: usize = 100_000;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter {
    rate_per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate_per_sec: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens from `client`'s bucket, or says how long until they are there.
    pub fn check(&self, client: &str, cost: u32) -> Result<(), Duration> {
        self.check_at(client, cost, Instant::now())
    }

    fn check_at(&self, client: &str, cost: u32, now: Instant) -> Result<(), Duration> {
        let cost = f64::from(cost);
        let mut buckets = self.buckets.locked();
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            buckets.retain(|_, b| now.duration_since(b.updated) < Duration::from_secs(60));
        }
        let bucket = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate_per_sec).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= cost {
            bucket.tokens -= cost;
            Ok(())
        } else {
            let missing = cost - bucket.tokens;
            Err(Duration::from_secs_f64(missing / self.rate_per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies() {
        let limiter = RateLimiter::new(10, 5);
        let start = Instant::now();
        for _ in 0..5 {
            assert!(limiter.check_at("a", 1, start).is_ok());
        }
        let wait = limiter.check_at("a", 1, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9);
        assert!(
            limiter.check_at("b", 1, start).is_ok(),
            "clients are independent"
        );
        assert!(limiter
            .check_at("a", 1, start + Duration::from_millis(100))
            .is_ok());
        assert!(limiter
            .check_at("a", 3, start + Duration::from_millis(200))
            .is_err());
    }
}
