//! How a group's effects name their failures: PostgreSQL and Redis errors as dependency
//! failures (the effects themselves run once through `circulatory::consumer::exactly_once`).

use circulatory::consumer::HandlerError;

pub use circulatory::consumer::exactly_once::db_error as db;

/// A Redis failure is a dependency failure: retryable, and counted by the `redis` breaker.
pub fn redis_error(error: redis::RedisError) -> HandlerError {
    HandlerError::dependency("redis", error)
}
