//! Exactly-once database effects: a handler's writes and the `processed_events(group, event_id)`
//! row commit in one PostgreSQL transaction. A redelivered event (after a crash, a rebalance, a
//! retry) finds its row and changes nothing more.
//!
//! [`db_error`] classifies a PostgreSQL failure by what it means: the database refusing this
//! event's data (a data exception, a constraint, a statement that can never succeed) is
//! permanent and goes to the dead letters with its SQLSTATE; a database that is away, overloaded
//! or shutting down is a dependency failure that the `postgres` breaker counts; a conflict with
//! another transaction is worth a plain retry.

use futures::future::BoxFuture;
use sqlx::{PgConnection, PgPool};

use crate::consumer::handler::{Event, HandlerError};

/// Whether the effects ran now or had already run for this event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied<T> {
    Now(T),
    AlreadyDone,
}

/// What a PostgreSQL failure says about retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFailure {
    /// The database is unreachable, overloaded or shutting down: counted by the breaker.
    Unavailable,
    /// Another transaction got in the way (serialization, deadlock, lock timeout): retry.
    Conflict,
    /// This event's data or statement can never succeed as it is: dead-letter it.
    Refused,
}

/// Classifies a SQLSTATE (PostgreSQL appendix A) by its class and the few codes that differ
/// from their class.
pub fn classify_sqlstate(code: &str) -> DbFailure {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available
        "40001" | "40P01" | "55P03" => DbFailure::Conflict,
        // query_canceled (statement timeout), idle_in_transaction_session_timeout
        "57014" | "25P03" => DbFailure::Unavailable,
        _ => match code.get(..2).unwrap_or("") {
            // data exception, integrity constraint, SQL statement not yet complete, invalid
            // transaction state, invalid SQL statement name, syntax error or access rule
            // violation, WITH CHECK OPTION, program limit exceeded, feature not supported,
            // cardinality violation, SQL routine exception, PL/pgSQL error
            "22" | "23" | "24" | "25" | "26" | "42" | "44" | "54" | "0A" | "21" | "2F" | "P0" => {
                DbFailure::Refused
            }
            "40" => DbFailure::Conflict,
            // connection exception, insufficient resources, operator intervention, system and
            // internal errors, invalid authorization or database (configuration), and anything
            // unknown: the event is kept and retried rather than dead-lettered
            _ => DbFailure::Unavailable,
        },
    }
}

/// What a failure of PostgreSQL means for the event: see [`classify_sqlstate`]. Connection,
/// pool and I/O errors are dependency failures; a value that cannot be encoded or a row that
/// cannot be decoded is permanent.
pub fn db_error(error: sqlx::Error) -> HandlerError {
    let failure = match &error {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => {
                let code = code.into_owned();
                return match classify_sqlstate(&code) {
                    DbFailure::Refused => HandlerError::permanent(format!(
                        "postgres refused the event (SQLSTATE {code}): {}",
                        db.message()
                    )),
                    DbFailure::Conflict => HandlerError::retryable(format!(
                        "postgres conflict (SQLSTATE {code}): {}",
                        db.message()
                    )),
                    DbFailure::Unavailable => HandlerError::dependency(
                        "postgres",
                        format!("SQLSTATE {code}: {}", db.message()),
                    ),
                };
            }
            None => DbFailure::Unavailable,
        },
        sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound => DbFailure::Refused,
        _ => DbFailure::Unavailable,
    };
    match failure {
        DbFailure::Refused => HandlerError::permanent(format!("postgres: {error}")),
        DbFailure::Conflict => HandlerError::retryable(format!("postgres: {error}")),
        DbFailure::Unavailable => HandlerError::dependency("postgres", error),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified_by_what_they_mean() {
        use DbFailure::*;
        for (code, expected) in [
            ("22021", Refused), // invalid byte sequence (a NUL in text)
            ("22P05", Refused), // untranslatable character
            ("22003", Refused), // numeric value out of range
            ("23505", Refused), // unique violation
            ("23503", Refused), // foreign key violation
            ("23514", Refused), // check violation
            ("42P01", Refused), // undefined table
            ("54000", Refused), // program limit exceeded
            ("40001", Conflict),
            ("40P01", Conflict),
            ("55P03", Conflict),
            ("08006", Unavailable), // connection failure
            ("53300", Unavailable), // too many connections
            ("53100", Unavailable), // disk full
            ("57P01", Unavailable), // admin shutdown
            ("57P03", Unavailable), // cannot connect now
            ("57014", Unavailable), // statement timeout
            ("XX000", Unavailable),
        ] {
            assert_eq!(classify_sqlstate(code), expected, "{code}");
        }
    }

    #[test]
    fn connection_and_pool_errors_are_dependency_failures() {
        assert!(matches!(
            db_error(sqlx::Error::PoolTimedOut),
            HandlerError::Dependency { ref dependency, .. } if dependency == "postgres"
        ));
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(db_error(io), HandlerError::Dependency { .. }));
        assert!(matches!(
            db_error(sqlx::Error::RowNotFound),
            HandlerError::Permanent(_)
        ));
    }
}
