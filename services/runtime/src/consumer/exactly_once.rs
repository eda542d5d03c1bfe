//! Exactly-once database effects: a handler's writes and the `processed_events(group, event_id)`
//! row commit in one PostgreSQL transaction. A redelivered event (after a crash, a rebalance, a
//! retry) finds its row and changes nothing more.

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use crate::consumer::handler::{Event, HandlerError};

/// Whether the effects ran now or had already run for this event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied<T> {
    Now(T),
    AlreadyDone,
}

/// A PostgreSQL failure is a dependency failure: retryable, and counted by the breaker.
pub fn db_error(error: sqlx::Error) -> HandlerError {
    HandlerError::dependency("postgres", error)
}

/// Runs `effects` inside a transaction that also records the event as processed by `group`.
pub async fn exactly_once<T, F>(
    pool: &PgPool,
    group: &str,
    event: &Event,
    effects: F,
) -> Result<Applied<T>, HandlerError>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, HandlerError>>,
{
    let mut tx = pool.begin().await.map_err(db_error)?;
    let inserted = sqlx::query(
        "INSERT INTO processed_events \
           (consumer_group, event_id, event_type, topic, kafka_partition, kafka_offset) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (consumer_group, event_id) DO NOTHING",
    )
    .bind(group)
    .bind(event.id())
    .bind(event.event_type())
    .bind(&event.origin.topic)
    .bind(event.origin.partition)
    .bind(event.origin.offset)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await.map_err(db_error)?;
        return Ok(Applied::AlreadyDone);
    }
    let value = effects(&mut tx).await?;
    tx.commit().await.map_err(db_error)?;
    Ok(Applied::Now(value))
}
