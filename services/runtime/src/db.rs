//! PostgreSQL: the connection pool and the migrations in `migrations/`, embedded at build time so
//! every binary can bring a database to the schema it expects.

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

/// Migrations from the repository's `migrations/` folder.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A bounded pool; connecting fails after `acquire_timeout` instead of hanging.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
}

/// Applies pending migrations; already-applied ones are skipped (their checksums verified).
/// Migrations applied by a newer release are tolerated, so instances of the previous release
/// keep running during a rolling upgrade.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("../../migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}
