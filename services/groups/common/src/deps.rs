//! What handlers use besides the event: the catalog, PostgreSQL and Redis.
//! Built once per process and cloned into each handler (every field is a cheap handle).

use std::sync::Arc;

use anyhow::Context as _;
use circulatory::catalog::Catalog;
use redis::aio::ConnectionManager;
use sqlx::PgPool;

use crate::runner::Config;

/// Shared handles, cloned into handlers.
#[derive(Clone)]
pub struct Deps {
    pub catalog: Arc<Catalog>,
    pub pool: PgPool,
    pub redis: ConnectionManager,
}

impl Deps {
    pub fn new(catalog: Arc<Catalog>, pool: PgPool, redis: ConnectionManager) -> Deps {
        Deps {
            catalog,
            pool,
            redis,
        }
    }

    /// Connects to PostgreSQL and Redis as configured.
    pub(crate) async fn connect<O: clap::Args>(
        catalog: Arc<Catalog>,
        config: &Config<O>,
    ) -> anyhow::Result<Deps> {
        let pool =
            circulatory::db::connect(&config.database.database_url, config.db_max_connections)
                .await
                .context("postgres")?;
        let client = redis::Client::open(config.redis.redis.as_str()).context("redis url")?;
        let redis = ConnectionManager::new(client).await.context("redis")?;
        Ok(Deps::new(catalog, pool, redis))
    }

    /// Redis keys of this deployment: `circ:<namespace>:<suffix>` (namespace `default` when none).
    pub fn redis_key(&self, suffix: &str) -> String {
        circulatory::catalog::redis_key(self.catalog.namespace(), suffix)
    }
}
