//! Reading request bodies within bounds: a body announced larger than the limit is refused
//! before a byte of it is read, a longer one is cut off at the limit, and a body that stops
//! arriving is a 408 once the body timeout passes, so a stalled client cannot hold a request
//! slot for the whole request timeout.

use std::future::Future;
use std::time::Duration;

use axum::body::{Body, HttpBody};

use crate::problem::ApiError;

/// Reads the body up to `limit` bytes within `timeout`; more is 413, slower is 408.
pub async fn read(body: Body, limit: usize, timeout: Duration) -> Result<bytes::Bytes, ApiError> {
    refuse_announced(body.size_hint().lower(), limit as u64)?;
    let read = axum::body::to_bytes(body, limit);
    let bytes = within(timeout, read).await?;
    bytes.map_err(|e| {
        let inner = e.into_inner();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
        while let Some(error) = source {
            if error.is::<http_body_util::LengthLimitError>() {
                return ApiError::TooLarge(format!("the body exceeds {limit} bytes"));
            }
            source = error.source();
        }
        ApiError::Malformed("the body could not be read".into())
    })
}

/// 413 when the client announced (`Content-Length`) more than `limit` bytes.
pub fn refuse_announced(announced: u64, limit: u64) -> Result<(), ApiError> {
    if announced > limit {
        return Err(ApiError::TooLarge(format!(
            "the body announces {announced} bytes; the limit is {limit}"
        )));
    }
    Ok(())
}

/// Waits for the next piece of a body for at most `timeout`.
pub async fn within<T>(timeout: Duration, next: impl Future<Output = T>) -> Result<T, ApiError> {
    tokio::time::timeout(timeout, next).await.map_err(|_| {
        ApiError::RequestTimeout(format!(
            "the body did not arrive within {} ms",
            timeout.as_millis()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_length_over_the_limit_is_refused() {
        assert!(refuse_announced(1024, 1024).is_ok());
        assert!(matches!(
            refuse_announced(50 * 1024 * 1024, 1024),
            Err(ApiError::TooLarge(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let stalled = Body::from_stream(futures::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >());
        let refused = read(stalled, 1024, Duration::from_secs(10)).await;
        assert!(
            matches!(refused, Err(ApiError::RequestTimeout(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_body_within_bounds_is_read_and_a_longer_one_cut_off() {
        let body = Body::from("x".repeat(100));
        assert_eq!(
            read(body, 100, Duration::from_secs(1)).await.unwrap().len(),
            100
        );
        let long = Body::from("x".repeat(101));
        assert!(matches!(
            read(long, 100, Duration::from_secs(1)).await,
            Err(ApiError::TooLarge(_))
        ));
    }
}
