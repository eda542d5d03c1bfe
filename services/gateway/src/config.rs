//! The gateway's configuration: flags with environment variables, every default shown in `--help`,
//! every problem reported before exiting with code 64.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use circulatory::process::flags::{self, CatalogFlags, RedisFlags};
use clap::{Parser, ValueEnum};

/// What happens to a client whose queue is full when a message arrives for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SlowClientPolicy {
    /// Close the connection (code 1013 "try again later"): the client reconnects and resubscribes,
    /// knowing it missed messages, instead of silently receiving a stream with holes.
    Disconnect,
    /// Drop the message for that client only and keep the connection.
    Drop,
}

/// Which subscriptions may be patterns (`comment:added:*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PatternPolicy {
    /// Entity channels may be subscribed with `*` in place of the entity id; user channels never.
    Entity,
    /// Only concrete channel names.
    None,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "Circulatory realtime gateway: Redis pub/sub channels to WebSocket and SSE clients.",
    // A flag given twice keeps the last value, so wrappers can append overrides.
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CIRC_GATEWAY_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The catalog (its `realtime.channels` section says which channels exist and who may join
    /// them); the namespace prefixes the Redis keys (presence, stats).
    #[command(flatten)]
    pub catalog: CatalogFlags,
    /// Redis: pub/sub, presence and stats.
    #[command(flatten)]
    pub redis: RedisFlags,
    /// HS256 secret for bearer tokens (at least 32 bytes).
    #[arg(long, env = "CIRC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with the RS256 public key for bearer tokens.
    #[arg(long, env = "CIRC_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, if set.
    #[arg(long, env = "CIRC_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Most client connections (WebSocket + SSE) at once; beyond this, new ones get 503.
    #[arg(long, env = "CIRC_GATEWAY_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,
    /// Most subscriptions one connection may hold.
    #[arg(long, env = "CIRC_GATEWAY_MAX_SUBSCRIPTIONS", default_value_t = 64)]
    pub max_subscriptions: usize,
    /// Messages waiting to be written to one client; past it the slow-client policy applies. (The
    /// writer also holds the batch it is writing: at most 64 frames.)
    #[arg(long, env = "CIRC_GATEWAY_QUEUE_LEN", default_value_t = 256)]
    pub queue_len: usize,
    /// What to do when a client's queue is full.
    #[arg(
        long,
        env = "CIRC_GATEWAY_SLOW_CLIENT",
        value_enum,
        default_value_t = SlowClientPolicy::Disconnect
    )]
    pub slow_client: SlowClientPolicy,
    /// Which subscriptions may be patterns.
    #[arg(long, env = "CIRC_GATEWAY_PATTERNS", value_enum, default_value_t = PatternPolicy::Entity)]
    pub patterns: PatternPolicy,
    /// Largest frame a client may send, in bytes (commands are small).
    #[arg(long, env = "CIRC_GATEWAY_MAX_FRAME_BYTES", default_value_t = 16 * 1024)]
    pub max_frame_bytes: usize,
    /// How often the gateway pings a WebSocket client.
    #[arg(
        long,
        env = "CIRC_GATEWAY_PING_INTERVAL",
        default_value = "15s",
        value_parser = flags::duration
    )]
    pub ping_interval: Duration,
    /// A WebSocket client silent for this long (no pong, no frame) is dropped.
    #[arg(
        long,
        env = "CIRC_GATEWAY_PONG_TIMEOUT",
        default_value = "45s",
        value_parser = flags::duration
    )]
    pub pong_timeout: Duration,
    /// How long a connection may take to send its request headers, counted from when it starts
    /// waiting for them: a client trickling its headers and an idle keep-alive
    /// connection are both closed past it (an upgraded WebSocket is no longer bound by it).
    #[arg(
        long,
        env = "CIRC_GATEWAY_HEADER_TIMEOUT",
        default_value = "10s",
        value_parser = flags::duration
    )]
    pub header_timeout: Duration,
    /// How long one write to a client may block before the connection is dropped.
    #[arg(
        long,
        env = "CIRC_GATEWAY_WRITE_TIMEOUT",
        default_value = "10s",
        value_parser = flags::duration
    )]
    pub write_timeout: Duration,
    /// Lifetime of the presence key without a heartbeat.
    #[arg(
        long,
        env = "CIRC_GATEWAY_PRESENCE_TTL",
        default_value = "1m",
        value_parser = flags::duration
    )]
    pub presence_ttl: Duration,
    /// How often live connections refresh their presence, in milliseconds (well under the TTL).
    #[arg(
        long,
        env = "CIRC_GATEWAY_PRESENCE_REFRESH",
        default_value = "20s",
        value_parser = flags::duration
    )]
    pub presence_refresh: Duration,
    /// How often expired presence (an instance that died) is looked for.
    #[arg(
        long,
        env = "CIRC_GATEWAY_PRESENCE_SWEEP",
        default_value = "5s",
        value_parser = flags::duration
    )]
    pub presence_sweep: Duration,
    /// How often per-channel figures are added to the Redis stats hashes.
    #[arg(
        long,
        env = "CIRC_GATEWAY_STATS_FLUSH",
        default_value = "1s",
        value_parser = flags::duration
    )]
    pub stats_flush: Duration,
    /// SSE keep-alive comment interval, in milliseconds (also how fast a dead SSE peer is noticed).
    #[arg(
        long,
        env = "CIRC_GATEWAY_SSE_KEEPALIVE",
        default_value = "15s",
        value_parser = flags::duration
    )]
    pub sse_keepalive: Duration,
    /// How long shutdown waits for connections to close.
    #[arg(
        long,
        env = "CIRC_GATEWAY_DRAIN",
        default_value = "5s",
        value_parser = flags::duration
    )]
    pub drain: Duration,
    /// This instance's name in the stats and presence keys (default: a random id).
    #[arg(long, env = "CIRC_GATEWAY_INSTANCE")]
    pub instance: Option<String>,
}

impl Config {
    /// Every problem with the configuration, not just the first.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.jwt_secret.is_none() && self.jwt_public_key_file.is_none() {
            problems.push("set CIRC_JWT_SECRET (HS256) or CIRC_JWT_PUBLIC_KEY_FILE (RS256)".into());
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            problems.push("CIRC_JWT_SECRET must be at least 32 bytes".into());
        }
        if let Some(path) = &self.jwt_public_key_file {
            if !path.is_file() {
                problems.push(format!(
                    "CIRC_JWT_PUBLIC_KEY_FILE {} is not a file",
                    path.display()
                ));
            }
        }
        for (name, value) in [
            ("max connections", self.max_connections),
            ("max subscriptions", self.max_subscriptions),
            ("queue length", self.queue_len),
        ] {
            if value == 0 {
                problems.push(format!("the {name} must be positive"));
            }
        }
        if self.max_frame_bytes < 256 {
            problems.push("the largest client frame must be at least 256 bytes".into());
        }
        for (name, value) in [
            ("ping interval", self.ping_interval),
            ("write timeout", self.write_timeout),
            ("header timeout", self.header_timeout),
            ("presence refresh", self.presence_refresh),
            ("presence sweep", self.presence_sweep),
            ("stats flush", self.stats_flush),
            ("SSE keep-alive", self.sse_keepalive),
        ] {
            if value.is_zero() {
                problems.push(format!("the {name} must be positive"));
            }
        }
        if self.pong_timeout <= self.ping_interval {
            problems.push("the pong timeout must be longer than the ping interval".into());
        }
        if self.presence_refresh >= self.presence_ttl {
            problems.push("presence must be refreshed more often than its TTL".into());
        }
        if self.pong_timeout > self.presence_ttl {
            problems.push(
                "the pong timeout must not exceed the presence TTL (a dead connection would keep \
                 the user online)"
                    .into(),
            );
        }
        if let Some(instance) = &self.instance {
            let valid = !instance.is_empty()
                && instance.len() <= 64
                && instance
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !valid {
                problems
                    .push("the instance name must be 1-64 letters, digits, `-`, `_` or `.`".into());
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["gateway"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_need_only_a_secret() {
        let config = parse(&["--jwt-secret", "0123456789abcdef0123456789abcdef"]);
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8090");
    }

    #[test]
    fn every_problem_is_reported() {
        let config = parse(&[
            "--jwt-secret",
            "short",
            "--queue-len",
            "0",
            "--pong-timeout",
            "10ms",
            "--ping-interval",
            "20ms",
        ]);
        let problems = config.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
