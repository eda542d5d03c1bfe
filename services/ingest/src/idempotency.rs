//! Idempotency: an event id or `Idempotency-Key` seen again within the window returns the first
//! answer, and nothing is produced twice — also when two identical requests race.
//!
//! Each key lives in Redis as a small JSON state. The first request claims it with `SET NX`
//! (state `pending`, short expiry so a crashed instance does not block the key forever), produces,
//! then stores `done` with the answer for the whole window. A racing duplicate finds `pending`
//! and waits for `done` instead of producing. A request that fails releases its claim so the
//! client's retry can proceed. Keys are scoped by client, so two clients never collide.
//!
//! A request answered before the broker acknowledged its events (`kafka_unconfirmed`) keeps its
//! claim: the outcome is stored (or the claim released) when the producer reports it, and the
//! claim lives as long as the producer may still write the record (its delivery timeout plus
//! [`PENDING_MARGIN`]). So a retry never produces an event whose first attempt can still land.

use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How much longer than the producer's delivery timeout a claim survives without an answer
/// (the time to store the outcome once reported).
pub const PENDING_MARGIN: Duration = Duration::from_secs(5);
/// How often a racing duplicate looks for the answer.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum Stored {
    Pending {
        owner: String,
    },
    Done {
        fingerprint: String,
        answer: serde_json::Value,
    },
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This request owns the key: do the work, then [`IdempotencyStore::complete`] or
    /// [`IdempotencyStore::release`].
    Acquired(Ticket),
    /// The key was used before for the same request: here is its answer.
    Replay(serde_json::Value),
    /// The key was used before for a different request.
    Mismatch,
    /// Another request still holds the key after the wait.
    InProgress,
}

/// Proof of ownership of a claimed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    key: String,
    owner: String,
    fingerprint: String,
}

#[derive(Clone)]
pub struct IdempotencyStore {
    redis: ConnectionManager,
    prefix: String,
    window: Duration,
    /// How long a racing duplicate waits for the first request's answer.
    wait: Duration,
    /// How long a claim survives without an answer (a crashed instance's claims expire).
    pending_ttl: Duration,
}

/// SHA-256 of the request parts that must match for a replay.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

impl IdempotencyStore {
    pub fn new(
        redis: ConnectionManager,
        namespace: Option<&str>,
        window: Duration,
        wait: Duration,
        pending_ttl: Duration,
    ) -> Self {
        IdempotencyStore {
            redis,
            prefix: circulatory::catalog::redis_key(namespace, "idem"),
            window,
            wait,
            pending_ttl,
        }
    }

    fn key(&self, client: &str, key: &str) -> String {
        // Hash the caller-supplied parts: bounded key size, no separator games.
        format!(
            "{}:{}",
            self.prefix,
            fingerprint(&[client.as_bytes(), key.as_bytes()])
        )
    }

    /// Claims `key` for `client`'s request with `fingerprint`, waiting out a concurrent owner.
    pub async fn claim(
        &self,
        client: &str,
        key: &str,
        fingerprint: &str,
    ) -> redis::RedisResult<Claim> {
        let redis_key = self.key(client, key);
        let owner = uuid::Uuid::new_v4().to_string();
        let pending = serde_json::to_string(&Stored::Pending {
            owner: owner.clone(),
        })
        .expect("serializable");
        let mut redis = self.redis.clone();
        let started = tokio::time::Instant::now();
        loop {
            let claimed: bool = redis::cmd("SET")
                .arg(&redis_key)
                .arg(&pending)
                .arg("NX")
                .arg("PX")
                .arg(self.pending_ttl.as_millis() as u64)
                .query_async::<Option<String>>(&mut redis)
                .await?
                .is_some();
            if claimed {
                return Ok(Claim::Acquired(Ticket {
                    key: redis_key,
                    owner,
                    fingerprint: fingerprint.to_string(),
                }));
            }
            let current: Option<String> = redis::cmd("GET")
                .arg(&redis_key)
                .query_async(&mut redis)
                .await?;
            match current.and_then(|text| serde_json::from_str::<Stored>(&text).ok()) {
                Some(Stored::Done {
                    fingerprint: stored,
                    answer,
                }) => {
                    return Ok(if stored == fingerprint {
                        Claim::Replay(answer)
                    } else {
                        Claim::Mismatch
                    })
                }
                // Expired between SET and GET: try to claim again.
                None => continue,
                Some(Stored::Pending { .. }) => {
                    if started.elapsed() >= self.wait {
                        return Ok(Claim::InProgress);
                    }
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
            }
        }
    }

    /// Stores the answer for the whole window.
    pub async fn complete(
        &self,
        ticket: &Ticket,
        answer: &serde_json::Value,
    ) -> redis::RedisResult<()> {
        let done = serde_json::to_string(&Stored::Done {
            fingerprint: ticket.fingerprint.clone(),
            answer: answer.clone(),
        })
        .expect("serializable");
        let mut redis = self.redis.clone();
        redis::cmd("SET")
            .arg(&ticket.key)
            .arg(done)
            .arg("PX")
            .arg(self.window.as_millis() as u64)
            .query_async::<()>(&mut redis)
            .await
    }

    /// Gives the key up after a failure, if this ticket still owns it.
    pub async fn release(&self, ticket: &Ticket) -> redis::RedisResult<()> {
        // Compare-and-delete in one step, so a claim taken over after expiry is not deleted.
        let script = redis::Script::new(
            r#"local v = redis.call('GET', KEYS[1])
               if v and string.find(v, ARGV[1], 1, true) and string.find(v, '"pending"', 1, true) then
                 return redis.call('DEL', KEYS[1])
               end
               return 0"#,
        );
        let mut redis = self.redis.clone();
        script
            .key(&ticket.key)
            .arg(&ticket.owner)
            .invoke_async::<i64>(&mut redis)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(fingerprint(&[b"x"]), fingerprint(&[b"x"]));
    }
}
