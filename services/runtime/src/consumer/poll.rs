//! The poll thread: polls without stopping, hands records over in bounded batches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::consumer::partitions::{set_pause, Shared};
use crate::consumer::rebalance::GroupConsumer;
use crate::consumer::record::{Record, TopicNames};
use crate::consumer::scheduler::PauseReason;

/// Most records the poll thread hands over at once.
pub(super) const POLL_BATCH: usize = 64;

/// How long the poll thread waits for room in the channel before it pauses every partition and
/// goes on polling without records.
pub(super) const FULL_WAIT: Duration = Duration::from_millis(500);

/// Polls on a dedicated thread; records go to the engine in batches over a bounded channel, so
/// a busy topic costs one wake-up per batch rather than one per record.
///
/// The thread never stops polling: rebalance callbacks run inside `poll`, and a member that does
/// not poll within `max.poll.interval.ms` is evicted from the group. When the engine takes no
/// records for [`FULL_WAIT`] (slow handlers with a deep backlog), every partition is paused and
/// polling goes on, without records, until the held batch is handed over.
pub(super) fn spawn_poll_thread(
    consumer: Arc<GroupConsumer>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Vec<Record>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("circ-poll".into())
        .spawn(move || {
            let mut topics = TopicNames::default();
            let mut held: Option<Vec<Record>> = None;
            let mut paused = false;
            while !stop.load(Ordering::Relaxed) {
                if let Some(mut batch) = held.take() {
                    // The timer is created inside `block_on`, where the runtime is entered.
                    let room = runtime
                        .block_on(async { tokio::time::timeout(FULL_WAIT, tx.reserve()).await });
                    match room {
                        Ok(Ok(permit)) => {
                            permit.send(batch);
                            if paused {
                                let all = shared.assigned();
                                set_pause(&shared, &consumer, &all, PauseReason::Full, false);
                                paused = false;
                            }
                        }
                        Ok(Err(_)) => return,
                        Err(_) => {
                            // Again each time: partitions assigned meanwhile pause too.
                            let all = shared.assigned();
                            set_pause(&shared, &consumer, &all, PauseReason::Full, true);
                            paused = true;
                            // Serves callbacks; a record already handed out before the pause
                            // still belongs to the batch.
                            if let Some(Ok(message)) = consumer.poll(Duration::ZERO) {
                                batch.push(Record::copy(&message, &mut topics));
                            }
                            held = Some(batch);
                        }
                    }
                    continue;
                }
                let mut batch = Vec::new();
                let mut wait = Duration::from_millis(100);
                while batch.len() < POLL_BATCH {
                    match consumer.poll(wait) {
                        Some(Ok(message)) => batch.push(Record::copy(&message, &mut topics)),
                        Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                        None => break,
                    }
                    // Take what the client already has, without waiting for more.
                    wait = Duration::ZERO;
                }
                if !batch.is_empty() {
                    held = Some(batch);
                }
            }
        })
        .expect("spawn the poll thread")
}
