//! The console's configuration: flags with environment variables (the same names the other
//! services read for their connections), every default shown in `--help`, every problem reported
//! before exiting with code 64.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use circulatory::process::flags::{self, CatalogFlags, DatabaseFlags, KafkaFlags, RedisFlags};
use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "console",
    version,
    about = "Circulatory console: queues, events, realtime channels and dead letters for operators.",
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CIRC_CONSOLE_LISTEN", default_value = "127.0.0.1:8070")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub catalog: CatalogFlags,
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Redis (the groups' and gateway's figures, heartbeats, control commands, history).
    #[command(flatten)]
    pub redis: RedisFlags,
    /// PostgreSQL (dead-letter resolutions).
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// HS256 secret for bearer tokens (at least 32 bytes).
    #[arg(long, env = "CIRC_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with the RS256 public key for bearer tokens.
    #[arg(long, env = "CIRC_JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, if set.
    #[arg(long, env = "CIRC_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// How often the cluster view (lag, members, time lag, heartbeats) is refreshed.
    /// Every page and /metrics read the last view: viewers never add Kafka calls.
    #[arg(
        long,
        env = "CIRC_CONSOLE_REFRESH",
        default_value = "2s",
        value_parser = flags::duration
    )]
    pub refresh: Duration,
    /// Bound on each Kafka admin call.
    #[arg(
        long,
        env = "CIRC_CONSOLE_KAFKA_TIMEOUT",
        default_value = "5s",
        value_parser = flags::duration
    )]
    pub kafka_timeout: Duration,
    /// Dead letters kept in the console's index per group (newest kept; older ones are still
    /// counted and reachable by the CLI).
    #[arg(long, env = "CIRC_CONSOLE_MAX_DEAD_LETTERS", default_value_t = 5_000)]
    pub max_dead_letters: usize,
    /// Most dead letters replayed per second by one bulk action.
    #[arg(long, env = "CIRC_CONSOLE_REPLAY_RATE", default_value_t = 50)]
    pub replay_rate: u32,
    /// A dead letter replayed this many times is quarantined instead of replayed again.
    #[arg(long, env = "CIRC_CONSOLE_MAX_REPLAYS", default_value_t = 3)]
    pub max_replays: u32,
    /// Payload bytes shown before truncation in a dead letter's details.
    #[arg(long, env = "CIRC_CONSOLE_MAX_PAYLOAD_BYTES", default_value_t = 64 * 1024)]
    pub max_payload_bytes: usize,
}

impl Config {
    pub fn refresh(&self) -> Duration {
        self.refresh.max(Duration::from_millis(200))
    }

    pub fn kafka_timeout(&self) -> Duration {
        self.kafka_timeout.max(Duration::from_millis(100))
    }

    /// Everything wrong with the configuration, in words.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.jwt_secret.is_none() && self.jwt_public_key_file.is_none() {
            problems.push("set CIRC_JWT_SECRET or CIRC_JWT_PUBLIC_KEY_FILE".into());
        }
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            problems.push("CIRC_JWT_SECRET must be at least 32 bytes".into());
        }
        if self.replay_rate == 0 {
            problems.push("CIRC_CONSOLE_REPLAY_RATE must be at least 1".into());
        }
        if self.max_dead_letters == 0 {
            problems.push("CIRC_CONSOLE_MAX_DEAD_LETTERS must be at least 1".into());
        }
        problems.extend(self.database.problem());
        problems
    }
}
