//! Published events per type for the operators' figures (`published` and
//! `published_by:ingest` of `circ:<ns>:stats:event:<type>`).
//!
//! An event counts once it is written: acknowledged by the broker (also when the acknowledgement
//! came after the answer, see [`crate::settlement`]), or taken by the realtime hub for an
//! ephemeral type. Refused events never count. Requests add to an in-memory tally (one short
//! lock per request); a background task flushes it to Redis once a second, in one pipeline.

use std::sync::Arc;
use std::time::Duration;

use circulatory::consumer::stats::{self, Published, INGEST_SOURCE};
use redis::aio::ConnectionManager;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the tally goes to Redis.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for one flush (Redis down: the counts wait for the next one).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The background flusher.
pub struct Flusher {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Flusher {
    /// Starts flushing `published` to the namespace's figures.
    pub fn spawn(
        published: Arc<Published>,
        redis: ConnectionManager,
        namespace: Option<String>,
    ) -> Flusher {
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(published, redis, namespace, stop.clone()));
        Flusher { stop, task }
    }

    /// Flushes what is left, then stops.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, self.task).await;
    }
}

async fn run(
    published: Arc<Published>,
    mut redis: ConnectionManager,
    namespace: Option<String>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        flush(&published, &mut redis, namespace.as_deref()).await;
    }
    flush(&published, &mut redis, namespace.as_deref()).await;
}

/// One flush; on failure the counts go back into the tally for the next one.
async fn flush(published: &Published, redis: &mut ConnectionManager, namespace: Option<&str>) {
    let counts = published.take();
    if counts.is_empty() {
        return;
    }
    let write = stats::flush_published(redis, namespace, INGEST_SOURCE, &counts);
    let failure = match tokio::time::timeout(FLUSH_TIMEOUT, write).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    tracing::debug!(error = %failure, "published counts not flushed; kept for the next flush");
    for (event_type, count) in counts {
        published.add(&event_type, count);
    }
}
