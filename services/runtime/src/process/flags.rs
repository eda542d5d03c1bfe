//! The flags every service shares, declared once and flattened into each binary's configuration
//! (`#[command(flatten)]`): where the catalog is, and how to reach Kafka, the registry, Redis and
//! PostgreSQL. Same flag, same variable, same default in every binary. Durations everywhere are
//! written as in `topics.yaml` (`250ms`, `30s`, `2m`): see [`duration`].

use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::CatalogPaths;

/// Where the catalog is declared, and the namespace that isolates an environment.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogFlags {
    /// The topology file.
    #[arg(long, env = "CIRC_TOPOLOGY", default_value = "topics.yaml")]
    pub topology: PathBuf,
    /// The Avro schemas folder.
    #[arg(long, env = "CIRC_SCHEMAS", default_value = "schemas")]
    pub schemas: PathBuf,
    /// Topic namespace (prefix) for isolated environments.
    #[arg(long, env = "CIRC_NAMESPACE")]
    pub namespace: Option<String>,
}

impl CatalogFlags {
    pub fn paths(&self) -> CatalogPaths {
        CatalogPaths {
            topology: self.topology.clone(),
            schemas: self.schemas.clone(),
        }
    }
}

/// The Kafka cluster and its schema registry.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaFlags {
    /// Kafka bootstrap servers.
    #[arg(long, env = "CIRC_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    /// Confluent-compatible schema registry API.
    #[arg(
        long,
        env = "CIRC_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    pub registry: String,
}

/// Redis.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisFlags {
    /// Redis URL.
    #[arg(long, env = "CIRC_REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
}

/// PostgreSQL.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseFlags {
    /// PostgreSQL URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory"
    )]
    pub database_url: String,
}

impl DatabaseFlags {
    /// The problem with the URL, if any.
    pub fn problem(&self) -> Option<String> {
        let url = &self.database_url;
        (!url.starts_with("postgres://") && !url.starts_with("postgresql://"))
            .then(|| "DATABASE_URL must be a postgres:// URL".to_string())
    }
}

/// The value parser of every duration flag: `250ms`, `30s`, `2m`, `1h`, `7d`, as in
/// `topics.yaml` (`#[arg(value_parser = flags::duration)]`).
pub fn duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse(text)
}

/// The value parser of a duration that must be a whole number of seconds, at least one: what
/// is handed on in seconds (a Redis expiry, an encoder's segment length).
pub fn whole_seconds(text: &str) -> Result<Duration, String> {
    let duration = duration(text)?;
    if duration < Duration::from_secs(1) || duration.subsec_nanos() != 0 {
        return Err(format!(
            "`{text}` is not a whole number of seconds (at least 1s)"
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Service {
        #[command(flatten)]
        catalog: CatalogFlags,
        #[command(flatten)]
        kafka: KafkaFlags,
        #[command(flatten)]
        redis: RedisFlags,
        #[command(flatten)]
        database: DatabaseFlags,
        #[arg(long, default_value = "10s", value_parser = duration)]
        drain: Duration,
    }

    #[test]
    fn shared_flags_flatten_with_their_defaults_and_durations_read_like_the_topology() {
        let s = Service::try_parse_from(["s", "--namespace", "t1", "--drain", "250ms"]).unwrap();
        assert_eq!(s.catalog.paths().topology, PathBuf::from("topics.yaml"));
        assert_eq!(s.catalog.namespace.as_deref(), Some("t1"));
        assert_eq!(s.kafka.bootstrap, "127.0.0.1:9092");
        assert_eq!(s.redis.redis, "redis://127.0.0.1:6379");
        assert_eq!(s.database.problem(), None);
        assert_eq!(s.drain, Duration::from_millis(250));
        let default = Service::try_parse_from(["s"]).unwrap();
        assert_eq!(default.drain, Duration::from_secs(10));
        let bare = Service::try_parse_from(["s", "--drain", "250"]).unwrap_err();
        assert!(bare.to_string().contains("has no unit"), "{bare}");
        let wrong = Service::try_parse_from(["s", "--database-url", "mysql://x"]).unwrap();
        assert!(wrong.database.problem().is_some());
    }

    #[test]
    fn whole_seconds_refuse_fractions_and_zero() {
        assert_eq!(whole_seconds("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(whole_seconds("2000ms"), Ok(Duration::from_secs(2)));
        assert_eq!(whole_seconds("6h"), Ok(Duration::from_secs(21_600)));
        for refused in ["1500ms", "0s", "500ms", "4"] {
            assert!(whole_seconds(refused).is_err(), "{refused}");
        }
    }
}
