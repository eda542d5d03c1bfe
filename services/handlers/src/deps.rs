//! What handlers use besides the event: the catalog, PostgreSQL, Redis and per-group options.
//! Built once per process and cloned into each handler (every field is a cheap handle).

use std::sync::Arc;

use anyhow::Context as _;
use circulatory::catalog::Catalog;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::runner::Config;

/// Tunables of particular groups; every binary accepts them all, each group reads its own.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Most items kept in one user's feed (a Redis sorted set).
    #[arg(long, env = "CIRC_FEED_MAX_LENGTH", default_value_t = 500)]
    pub feed_max_length: usize,
    /// Followers handled by one fan-out call; larger audiences are split into feed.fanout chunks.
    #[arg(long, env = "CIRC_FANOUT_CHUNK_SIZE", default_value_t = 1000)]
    pub fanout_chunk_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            feed_max_length: 500,
            fanout_chunk_size: 1000,
        }
    }
}

/// Shared handles, cloned into handlers.
#[derive(Clone)]
pub struct Deps {
    pub catalog: Arc<Catalog>,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub options: Arc<Options>,
}

impl Deps {
    pub fn new(
        catalog: Arc<Catalog>,
        pool: PgPool,
        redis: ConnectionManager,
        options: Options,
    ) -> Deps {
        Deps {
            catalog,
            pool,
            redis,
            options: Arc::new(options),
        }
    }

    /// Connects to PostgreSQL and Redis as configured.
    pub(crate) async fn connect(catalog: Arc<Catalog>, config: &Config) -> anyhow::Result<Deps> {
        let pool = circulatory::db::connect(&config.database_url, config.db_max_connections)
            .await
            .context("postgres")?;
        let client = redis::Client::open(config.redis.as_str()).context("redis url")?;
        let redis = ConnectionManager::new(client).await.context("redis")?;
        Ok(Deps::new(catalog, pool, redis, config.options.clone()))
    }

    /// Redis keys of this deployment: `circ:<namespace>:<suffix>` (namespace `default` when none).
    pub fn redis_key(&self, suffix: &str) -> String {
        format!(
            "circ:{}:{suffix}",
            self.catalog.namespace().unwrap_or("default")
        )
    }
}
