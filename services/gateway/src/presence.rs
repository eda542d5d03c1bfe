//! Presence: who has a live connection on some gateway instance.
//!
//! Redis keys (`<ns>` is the namespace or `default`):
//!
//! - `circ:<ns>:presence:<userId>` (string: online since, ms): exists exactly while the user has a
//!   live connection somewhere, with a TTL pushed forward by every heartbeat. Other components
//!   (the messenger group) read it to tell whether a user is offline.
//! - `circ:<ns>:presence-connections:<userId>` (sorted set): one member per live connection
//!   (`<instance>:<connection>`), scored by its deadline; connections on every instance are
//!   counted, and a dead instance's connections simply run out.
//! - `circ:<ns>:presence-online` (sorted set): online users scored by their latest deadline, so
//!   a periodic sweep finds expired users without scanning keys.
//! - `circ:<ns>:presence-last-seen:<userId>` (string, ms, kept 30 days): the user's last heartbeat
//!   or disconnect.
//!
//! Every change runs as one Lua script on Redis's clock, so instances agree on time and exactly
//! one of them sees a user's first connection (publishes `user.online`) and last disconnect or
//! expiry (publishes `user.offline`). Those messages go to the channels the topology routes the
//! two event types to, in the usual `{"type","id","time","data"}` shape; they are published only
//! for user ids that are UUIDs, as the event schemas require.

use circulatory::sync::MutexExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeZone, Utc};
use circulatory::catalog::Catalog;
use circulatory::realtime::{self, RealtimeMessage};
use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::Script;
use serde_json::json;

use crate::metrics::Metrics;

/// How long the last-seen time is kept.
const LAST_SEEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Users looked at per sweep round.
const SWEEP_BATCH: isize = 200;
/// Presence scripts run at once during a refresh, and disconnects recorded at once (thousands of
/// sockets closing together queue here instead of timing out on the shared connection).
const REFRESH_CONCURRENCY: usize = 64;
/// Tries to record a disconnect before leaving it to expiry and the sweep.
const DISCONNECT_TRIES: u32 = 3;

/// Redis's clock, in milliseconds, inside a script.
const NOW: &str = "local t = redis.call('TIME')\n\
                   local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// KEYS: presence, connections, online, last seen. ARGV: member, ttl ms, user, last-seen ttl ms.
/// Returns {code, last seen}: 0 nothing new, 1 came online, 2 came online after an expiry no
/// sweep had reported yet (report the offline first, as of the last heartbeat).
const TOUCH: &str = r#"
local ttl = tonumber(ARGV[2])
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
redis.call('SET', KEYS[4], now, 'PX', ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local live = redis.call('ZCARD', KEYS[2])
local deadline = now + ttl
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
redis.call('PEXPIREAT', KEYS[2], deadline)
if live == 0 or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], now, 'PXAT', deadline)
else
  redis.call('PEXPIREAT', KEYS[1], deadline)
end
local previous = redis.call('ZSCORE', KEYS[3], ARGV[3])
redis.call('ZADD', KEYS[3], 'GT', deadline, ARGV[3])
if live > 0 then return {0, 0} end
if previous then return {2, last} end
return {1, 0}
"#;

/// KEYS: presence, connections, online, last seen. ARGV: member, user, last-seen ttl ms.
/// Returns {1, now} when this was the user's last connection (and no sweep reported it).
const LEAVE: &str = r#"
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #top == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  local removed = redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('SET', KEYS[4], now, 'PX', ARGV[3])
  return {removed, now}
end
local deadline = tonumber(top[2])
redis.call('PEXPIREAT', KEYS[1], deadline)
redis.call('PEXPIREAT', KEYS[2], deadline)
redis.call('ZADD', KEYS[3], 'XX', deadline, ARGV[2])
return {0, now}
"#;

/// KEYS: presence, connections, online, last seen. ARGV: user.
/// Returns {1, last seen} when the user's every connection has run out; last seen is the last
/// heartbeat.
const EXPIRE: &str = r#"
local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not score then return {0, 0} end
score = tonumber(score)
if score > now then return {0, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local top = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #top > 0 then
  redis.call('ZADD', KEYS[3], 'XX', tonumber(top[2]), ARGV[1])
  return {0, 0}
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return {1, tonumber(redis.call('GET', KEYS[4]) or '0')}
"#;

/// The presence keys of one namespace.
#[derive(Debug, Clone)]
pub struct PresenceKeys {
    prefix: String,
}

impl PresenceKeys {
    pub fn new(namespace: Option<&str>) -> PresenceKeys {
        PresenceKeys {
            prefix: circulatory::catalog::redis_prefix(namespace),
        }
    }

    /// Exists while the user is online (the contract other components read).
    pub fn presence(&self, user: &str) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    pub fn connections(&self, user: &str) -> String {
        format!("{}:presence-connections:{user}", self.prefix)
    }

    pub fn online(&self) -> String {
        format!("{}:presence-online", self.prefix)
    }

    pub fn last_seen(&self, user: &str) -> String {
        format!("{}:presence-last-seen:{user}", self.prefix)
    }
}

/// The client platform reported with `user.online`.
pub fn platform(query: Option<&str>) -> &'static str {
    match query.map(str::to_ascii_lowercase).as_deref() {
        Some("web") => "WEB",
        Some("ios") => "IOS",
        Some("android") => "ANDROID",
        _ => "OTHER",
    }
}

/// When a connection last showed it is alive: WebSocket clients by any frame (a pong, a command);
/// SSE connections are alive as long as their stream is (a dead peer fails a keep-alive write).
#[derive(Debug)]
pub struct Heartbeat {
    base: Instant,
    last_ms: AtomicU64,
    always: bool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            always: false,
        }
    }
}

impl Heartbeat {
    /// A heartbeat that never ages (the connection's own liveness is checked elsewhere).
    pub fn always() -> Heartbeat {
        Heartbeat {
            always: true,
            ..Heartbeat::default()
        }
    }

    pub fn beat(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        if self.always {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

struct Local {
    user: String,
    member: String,
    platform: &'static str,
    heartbeat: Arc<Heartbeat>,
}

/// A user's presence, as `GET /v1/presence/{userId}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub user_id: String,
    pub online: bool,
    pub connections: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<String>,
}

pub struct Presence {
    redis: ConnectionManager,
    keys: PresenceKeys,
    ttl: Duration,
    instance: String,
    catalog: Arc<Catalog>,
    metrics: Arc<Metrics>,
    local: Mutex<HashMap<u64, Local>>,
    disconnects: tokio::sync::Semaphore,
    touch: Script,
    leave: Script,
    expire: Script,
}

fn rfc3339(ms: i64) -> Option<String> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

impl Presence {
    pub fn new(
        redis: ConnectionManager,
        namespace: Option<&str>,
        instance: &str,
        ttl: Duration,
        catalog: Arc<Catalog>,
        metrics: Arc<Metrics>,
    ) -> Presence {
        Presence {
            redis,
            keys: PresenceKeys::new(namespace),
            ttl,
            instance: instance.to_string(),
            catalog,
            metrics,
            local: Mutex::new(HashMap::new()),
            disconnects: tokio::sync::Semaphore::new(REFRESH_CONCURRENCY),
            touch: Script::new(&format!("{NOW}{TOUCH}")),
            leave: Script::new(&format!("{NOW}{LEAVE}")),
            expire: Script::new(&format!("{NOW}{EXPIRE}")),
        }
    }

    pub fn keys(&self) -> &PresenceKeys {
        &self.keys
    }

    fn member(&self, connection: u64) -> String {
        format!("{}:{connection}", self.instance)
    }

    /// Registers a new connection of `user`; publishes `user.online` if it is the first.
    pub async fn connect(
        &self,
        connection: u64,
        user: &str,
        platform: &'static str,
        heartbeat: Arc<Heartbeat>,
    ) -> redis::RedisResult<()> {
        let member = self.member(connection);
        self.run_touch(user, &member, platform).await?;
        self.local.locked().insert(
            connection,
            Local {
                user: user.to_string(),
                member,
                platform,
                heartbeat,
            },
        );
        Ok(())
    }

    async fn run_touch(&self, user: &str, member: &str, platform: &str) -> redis::RedisResult<()> {
        let mut redis = self.redis.clone();
        let (code, last_seen): (i64, i64) = self
            .touch
            .key(self.keys.presence(user))
            .key(self.keys.connections(user))
            .key(self.keys.online())
            .key(self.keys.last_seen(user))
            .arg(member)
            .arg(self.ttl.as_millis() as u64)
            .arg(user)
            .arg(LAST_SEEN_TTL.as_millis() as u64)
            .invoke_async(&mut redis)
            .await?;
        if code == 2 {
            self.announce_offline(user, last_seen).await;
        }
        if code >= 1 {
            self.announce_online(user, platform).await;
        }
        Ok(())
    }

    /// Removes a connection; publishes `user.offline` if it was the user's last. Retried a few
    /// times; if Redis stays unreachable, the connection runs out with its TTL and the sweep
    /// reports the user offline.
    pub async fn disconnect(&self, connection: u64) -> redis::RedisResult<()> {
        let Some(local) = self.local.locked().remove(&connection) else {
            return Ok(());
        };
        let _permit = self.disconnects.acquire().await;
        let mut tries = 0;
        let (last, now): (i64, i64) = loop {
            let mut redis = self.redis.clone();
            let result = self
                .leave
                .key(self.keys.presence(&local.user))
                .key(self.keys.connections(&local.user))
                .key(self.keys.online())
                .key(self.keys.last_seen(&local.user))
                .arg(&local.member)
                .arg(&local.user)
                .arg(LAST_SEEN_TTL.as_millis() as u64)
                .invoke_async(&mut redis)
                .await;
            tries += 1;
            match result {
                Ok(answer) => break answer,
                Err(e) if tries >= DISCONNECT_TRIES => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(tries))).await,
            }
        };
        if last == 1 {
            self.announce_offline(&local.user, now).await;
        }
        Ok(())
    }

    /// Pushes the deadline of every local connection that heartbeats forward. A connection silent
    /// for longer than the TTL is left to run out (its socket is dropped by the ping timeout).
    pub async fn refresh(&self) {
        let live: Vec<(String, String, &'static str)> = self
            .local
            .locked()
            .values()
            .filter(|l| l.heartbeat.age() < self.ttl)
            .map(|l| (l.user.clone(), l.member.clone(), l.platform))
            .collect();
        futures::stream::iter(live)
            .for_each_concurrent(REFRESH_CONCURRENCY, |(user, member, platform)| async move {
                if let Err(e) = self.run_touch(&user, &member, platform).await {
                    tracing::warn!(error = %e, "presence refresh failed");
                }
            })
            .await;
    }

    /// Reports users whose every connection ran out (an instance died or froze); returns how
    /// many went offline.
    pub async fn sweep(&self) -> redis::RedisResult<usize> {
        let mut redis = self.redis.clone();
        let now = Utc::now().timestamp_millis();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.online())
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(SWEEP_BATCH)
            .query_async(&mut redis)
            .await?;
        let mut offline = 0;
        for user in due {
            let (gone, last_seen): (i64, i64) = self
                .expire
                .key(self.keys.presence(&user))
                .key(self.keys.connections(&user))
                .key(self.keys.online())
                .key(self.keys.last_seen(&user))
                .arg(&user)
                .invoke_async(&mut redis)
                .await?;
            if gone == 1 {
                offline += 1;
                self.announce_offline(&user, last_seen).await;
            }
        }
        Ok(offline)
    }

    /// Every connection on this instance leaves (shutdown).
    pub async fn disconnect_all(&self) {
        let connections: Vec<u64> = self.local.locked().keys().copied().collect();
        for connection in connections {
            if let Err(e) = self.disconnect(connection).await {
                tracing::warn!(error = %e, "presence: could not record a disconnect");
            }
        }
    }

    /// A user's presence across instances.
    pub async fn status(&self, user: &str) -> redis::RedisResult<Status> {
        let mut redis = self.redis.clone();
        let now = Utc::now().timestamp_millis();
        let (since, connections, last_seen): (Option<i64>, u64, Option<i64>) = redis::pipe()
            .cmd("GET")
            .arg(self.keys.presence(user))
            .cmd("ZCOUNT")
            .arg(self.keys.connections(user))
            .arg(now)
            .arg("+inf")
            .cmd("GET")
            .arg(self.keys.last_seen(user))
            .query_async(&mut redis)
            .await?;
        Ok(Status {
            user_id: user.to_string(),
            online: since.is_some(),
            connections,
            online_since: since.and_then(rfc3339),
            last_seen_at: if since.is_some() {
                None
            } else {
                last_seen.and_then(rfc3339)
            },
        })
    }

    async fn announce_online(&self, user: &str, platform: &str) {
        let data = json!({
            "userId": user,
            "platform": platform,
            "onlineAt": Utc::now().timestamp_millis(),
        });
        self.announce("user.online", user, data).await;
    }

    async fn announce_offline(&self, user: &str, last_seen_ms: i64) {
        let data = json!({"userId": user, "lastSeenAt": last_seen_ms});
        self.announce("user.offline", user, data).await;
    }

    /// Publishes a presence message where the topology routes its event type.
    async fn announce(&self, event_type: &str, user: &str, data: serde_json::Value) {
        if uuid::Uuid::parse_str(user).is_err() {
            return;
        }
        let Some(event) = self.catalog.event(event_type) else {
            return;
        };
        let channels = realtime::channels_for(self.catalog.topology(), event, &data);
        if channels.is_empty() {
            return;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let message = RealtimeMessage::new(event_type, &id, Utc::now(), data);
        let mut redis = self.redis.clone();
        match realtime::publish(&mut redis, &channels, &message).await {
            Ok(_) => self
                .metrics
                .presence_events
                .with_label_values(&[event_type])
                .inc(),
            Err(e) => tracing::warn!(error = %e, event_type, "presence message not published"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract() {
        let keys = PresenceKeys::new(Some("t1"));
        assert_eq!(keys.presence("u1"), "circ:t1:presence:u1");
        assert_eq!(keys.connections("u1"), "circ:t1:presence-connections:u1");
        assert_eq!(keys.online(), "circ:t1:presence-online");
        assert_eq!(
            PresenceKeys::new(None).presence("u1"),
            "circ:default:presence:u1"
        );
    }

    #[test]
    fn platforms_map_to_the_schema_symbols() {
        assert_eq!(platform(Some("iOS")), "IOS");
        assert_eq!(platform(Some("web")), "WEB");
        assert_eq!(platform(Some("fridge")), "OTHER");
        assert_eq!(platform(None), "OTHER");
    }

    #[test]
    fn heartbeats_reset_the_age() {
        let heartbeat = Heartbeat::default();
        std::thread::sleep(Duration::from_millis(20));
        assert!(heartbeat.age() >= Duration::from_millis(20));
        heartbeat.beat();
        assert!(heartbeat.age() < Duration::from_millis(20));
    }
}
