//! Small helpers every group uses to change state exactly once.

use circulatory::consumer::{exactly_once, Event, HandlerError};
use futures::future::BoxFuture;
use sqlx::PgConnection;

use crate::deps::Deps;

pub use circulatory::consumer::exactly_once::db_error as db;

/// Runs `effects` in one PostgreSQL transaction with the event's `processed_events` row; a
/// redelivered event changes nothing more.
pub async fn apply_once<F>(
    deps: &Deps,
    group: &str,
    event: &Event,
    effects: F,
) -> Result<(), HandlerError>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<(), HandlerError>>,
{
    exactly_once(&deps.pool, group, event, effects)
        .await
        .map(|_| ())
}

/// A Redis failure is a dependency failure: retryable, and counted by the `redis` breaker.
pub fn redis_error(error: redis::RedisError) -> HandlerError {
    HandlerError::dependency("redis", error)
}
