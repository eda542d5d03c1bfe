//! The engine of one consumer group: one Kafka consumer per process, handlers run concurrently
//! under the group's bounds, offsets committed only for finished work.
//!
//! Three kinds of actors share the work:
//!
//! - **The poll thread** (`poll`) owns polling. Rebalance callbacks (`rebalance`) run there, so a
//!   revocation can block (briefly, bounded by the drain deadline) until the revoked partitions'
//!   in-flight events are finished and their offsets committed, without stalling the async
//!   runtime.
//! - **The engine task** (this module) feeds records, completions and ticks to the
//!   `Scheduler`, which keeps per-key lanes, holds retry records until they are due, parks
//!   events while a circuit breaker is open and decides what runs next and what pauses; the
//!   engine executes its commands, flushes the operators' figures and drains on shutdown.
//! - **Event tasks** (`task`) decode, run the handler under the group's timeout, send emitted
//!   events and broadcasts, route failures to the retry or dead-letter topic (awaiting the
//!   broker's ack), and only then mark the offset finished. So an offset is committed only when
//!   its event succeeded or was safely handed on: nothing accepted is lost.
//!
//! The three share the partition table (`partitions`); `group` builds and starts them.

use std::collections::BTreeMap;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::consumer::breaker::BreakerState;
use crate::consumer::clock::{now_ms, Clock};
use crate::consumer::error::ConsumerError;
use crate::consumer::flood_guard::Flood;
use crate::consumer::partitions::set_pause;
use crate::consumer::progress::Tp;
use crate::consumer::record::Record;
use crate::consumer::scheduler::{
    Command, Completion, Finish, Job, PauseReason, Scheduler, Tick, Work,
};
use crate::consumer::stats::{self, Control, Identity, Snapshot, StatsKeys, CONTROL_READ_TIMEOUT};
use crate::consumer::task::{finish_offset, process, Outcome, Runtime};

/// The async shell around the [`Scheduler`]: feeds it records, completions and ticks, and
/// executes its commands against the client, the handler tasks and Redis.
pub(super) struct Engine {
    runtime: Arc<Runtime>,
    pub(super) rx: mpsc::Receiver<Vec<Record>>,
    in_flight: JoinSet<Completion<Record>>,
    scheduler: Scheduler<Record>,
    pub(super) drain_timeout: Duration,
    stats_keys: StatsKeys,
    identity: Arc<Identity>,
    /// The operator's control as last read from Redis.
    control: Arc<Control>,
    /// A flood guard stop record may be left from an earlier run: deleted by the first flush
    /// that succeeds.
    clear_stop: Arc<AtomicBool>,
    next_stats_flush: Instant,
}

/// How often the operators' figures are flushed (and the operator's control read).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

impl Work for Record {
    fn lane_key(&self) -> Vec<u8> {
        match self.key() {
            Some(key) if !key.is_empty() => key.to_vec(),
            // Keyless records have no order to keep: each is its own lane.
            _ => format!("\u{0}offset:{}", self.offset()).into_bytes(),
        }
    }

    fn due_at_ms(&self) -> i64 {
        self.retry_state().due_at_ms.unwrap_or(0)
    }
}

impl Engine {
    pub(super) fn new(
        runtime: Arc<Runtime>,
        rx: mpsc::Receiver<Vec<Record>>,
        scheduler: Scheduler<Record>,
        drain_timeout: Duration,
        stats_keys: StatsKeys,
        identity: Arc<Identity>,
        control: Arc<Control>,
    ) -> Engine {
        Engine {
            runtime,
            rx,
            in_flight: JoinSet::new(),
            scheduler,
            drain_timeout,
            stats_keys,
            identity,
            control,
            clear_stop: Arc::new(AtomicBool::new(true)),
            next_stats_flush: Instant::now() + STATS_INTERVAL,
        }
    }

    pub(super) async fn run(&mut self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        // One timer for the whole run: due retries, breaker trials and stats must not wait for
        // a pause in the traffic.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                Some(done) = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                    match done {
                        Ok(completion) => self.on_completion(completion)?,
                        Err(e) => tracing::error!(error = %e, "handler task failed"),
                    }
                }
                // Full: records stay in the client (bounded prefetch) until there is room.
                batch = self.rx.recv(), if self.scheduler.has_room() => match batch {
                    Some(batch) => self.on_batch(batch)?,
                    None => return Ok(()),
                },
                _ = tick.tick() => {
                    if let Some(failure) =
                        self.runtime.shared.transactions.as_ref().and_then(|t| t.failure())
                    {
                        return Err(ConsumerError::Transaction(failure));
                    }
                    self.on_tick()?;
                }
            }
        }
    }

    /// Executes the scheduler's commands, in order, until none is left.
    pub(super) fn execute(&mut self) -> Result<(), ConsumerError> {
        while let Some(command) = self.scheduler.next_command() {
            match command {
                Command::Start { job, trial } => self.start(job, trial),
                Command::Pause { tps, reason } => self.set_pause(&tps, reason, true),
                Command::Resume { tps, reason } => self.set_pause(&tps, reason, false),
                Command::StoreOffsets(tps) => self.store_positions(tps),
                Command::Stop(Flood {
                    dead,
                    window,
                    last_error,
                }) => {
                    let error = ConsumerError::DeadLetterFlood {
                        dead,
                        window,
                        last_error,
                    };
                    tracing::error!(error = %error, "stopping the group");
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    pub(super) fn set_pause(&self, tps: &[Tp], reason: PauseReason, on: bool) {
        set_pause(
            &self.runtime.shared,
            &self.runtime.consumer,
            tps,
            reason,
            on,
        );
    }

    /// Records of partitions owned and not being revoked go to the scheduler; the others are
    /// the next owner's to read.
    pub(super) fn on_batch(&mut self, batch: Vec<Record>) -> Result<(), ConsumerError> {
        let mut accepted = Vec::with_capacity(batch.len());
        {
            let mut table = self.runtime.shared.table();
            for message in batch {
                let tp: Tp = (message.topic_name().clone(), message.partition());
                if let Some(entry) = table.partitions.get_mut(&tp).filter(|e| !e.revoking) {
                    entry.progress.received(message.offset());
                    accepted.push((tp, message));
                }
            }
        }
        self.scheduler.on_records(accepted, Clock::read());
        self.execute()
    }

    pub(super) fn start(&mut self, job: Job<Record>, trial: bool) {
        let owned = {
            let mut table = self.runtime.shared.table();
            match table.partitions.get_mut(&job.tp) {
                Some(entry) if !entry.revoking => {
                    entry.in_flight += 1;
                    true
                }
                _ => false,
            }
        };
        if !owned {
            // Revoked while it waited: the next owner runs it.
            self.scheduler.on_not_started(job, trial);
            return;
        }
        self.runtime.shared.metrics.in_flight.inc();
        let runtime = self.runtime.clone();
        self.in_flight.spawn(async move {
            let outcome = process(&runtime, &job.tp, &job.work).await;
            let (finish, records) = match outcome {
                Outcome::Done {
                    dead_lettered,
                    error,
                    records,
                } => (
                    Finish::Done {
                        dead_lettered,
                        error,
                    },
                    Some(records),
                ),
                Outcome::Parked { dependency } => (Finish::Parked { dependency }, None),
            };
            let revoked = finish_offset(&runtime, &job.tp, job.work.offset(), records);
            runtime.shared.metrics.in_flight.dec();
            Completion {
                job,
                trial,
                revoked,
                finish,
            }
        });
    }

    pub(super) fn on_completion(
        &mut self,
        completion: Completion<Record>,
    ) -> Result<(), ConsumerError> {
        if let Finish::Parked { dependency } = &completion.finish {
            tracing::warn!(dependency = %dependency, "breaker open: event parked, group paused");
        }
        if self.scheduler.needs_breakers(&completion) {
            let mut breakers = self.runtime.shared.breakers();
            self.scheduler
                .on_completion(completion, Some((Clock::read(), &mut breakers)));
        } else {
            self.scheduler.on_completion(completion, None);
        }
        self.execute()
    }

    /// Stores the commit positions of partitions with newly finished offsets, all in one call
    /// into the client (which commits stored positions every second), instead of one per event.
    pub(super) fn store_positions(&self, tps: Vec<Tp>) {
        let mut list = TopicPartitionList::new();
        {
            let table = self.runtime.shared.table();
            for tp in tps {
                let position = table
                    .partitions
                    .get(&tp)
                    .filter(|e| !e.revoking)
                    .and_then(|e| e.progress.commit_position());
                if let Some(position) = position {
                    let _ = list.add_partition_offset(&tp.0, tp.1, Offset::Offset(position));
                }
            }
        }
        if list.count() > 0 {
            if let Err(e) = self.runtime.consumer.store_offsets(&list) {
                tracing::debug!(error = %e, "store offsets");
            }
        }
    }

    pub(super) fn on_tick(&mut self) -> Result<(), ConsumerError> {
        let (assigned, lagging_tier) = {
            let table = self.runtime.shared.table();
            let assigned: Vec<Tp> = table
                .partitions
                .iter()
                .filter(|(_, e)| !e.revoking)
                .map(|(tp, _)| tp.clone())
                .collect();
            (assigned, table.lagging_tier)
        };
        let was_paused = self.scheduler.operator_paused();
        let operator_paused = self.control.paused();
        {
            let breakers = self.runtime.shared.breakers();
            let tick = Tick {
                clock: Clock::read(),
                assigned: &assigned,
                lagging_tier,
                operator_paused,
            };
            self.scheduler.on_tick(tick, &breakers);
        }
        if operator_paused != was_paused {
            self.operator_pause_changed(operator_paused);
        }
        self.execute()?;
        self.update_breaker_gauge();
        // A fixed rate: the control is read once a second, however the ticks fall.
        let now = Instant::now();
        if now >= self.next_stats_flush {
            self.next_stats_flush = (self.next_stats_flush + STATS_INTERVAL).max(now);
            self.flush_stats();
        }
        Ok(())
    }

    /// The operator's pause was applied or lifted: partitions assigned from now on follow it.
    pub(super) fn operator_pause_changed(&self, paused: bool) {
        self.runtime
            .shared
            .operator_paused
            .store(paused, Ordering::Release);
        let state = self.control.last();
        let group = &*self.runtime.group_name;
        if paused {
            tracing::info!(group, by = %state.by, reason = %state.reason, "operator pause applied");
        } else {
            tracing::info!(group, by = %state.by, reason = %state.reason, "operator pause lifted");
        }
    }

    /// Writes the flood guard's stop record and counts the stop, before the group returns.
    pub(super) async fn record_stop(&self, error: &ConsumerError) {
        self.runtime.shared.metrics.flood_guard_stops.inc();
        // The record is this run's: no later flush (the drain's) may delete it.
        self.clear_stop.store(false, Ordering::Relaxed);
        let Some(mut redis) = self.runtime.redis.clone() else {
            return;
        };
        let reason = error.to_string();
        let write = stats::record_stop(&mut redis, &self.stats_keys, &reason, now_ms());
        match tokio::time::timeout(CONTROL_READ_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not record the flood guard stop"),
            Err(_) => tracing::warn!("recording the flood guard stop timed out"),
        }
    }

    /// Sends the operators' figures to Redis in the background (never blocks the engine); the
    /// operator's control comes back on the same round trip. When Redis does not answer, the
    /// last known control stays.
    pub(super) fn flush_stats(&self) {
        let Some(mut redis) = self.runtime.redis.clone() else {
            return;
        };
        let (counts, published) = {
            let mut stats = self.runtime.stats();
            (stats.take(), stats.take_published())
        };
        let clear_stop = self.clear_stop.clone();
        let request = stats::Flush {
            counts,
            published,
            snapshot: self.snapshot(),
            clear_stop: clear_stop.load(Ordering::Relaxed),
        };
        let cleared = request.clear_stop;
        let keys = self.stats_keys.clone();
        let identity = self.identity.clone();
        let control = self.control.clone();
        tokio::spawn(async move {
            match stats::flush(&mut redis, &keys, &identity, request).await {
                Ok(state) => {
                    control.set(state);
                    if cleared {
                        clear_stop.store(false, Ordering::Relaxed);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "stats flush failed"),
            }
        });
    }

    /// This instance's heartbeat figures.
    pub(super) fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot {
            active: self.scheduler.running(),
            delayed: self.scheduler.delayed(),
            operator_paused: self.scheduler.operator_paused(),
            updated_at_ms: now_ms(),
            breakers: self.breaker_states(),
            ..Snapshot::default()
        };
        let table = self.runtime.shared.table();
        for (tp, entry) in &table.partitions {
            let name = format!("{}:{}", tp.0, tp.1);
            snapshot.waiting += entry.lag;
            if !entry.paused.is_empty() {
                let mut reasons: Vec<&'static str> =
                    entry.paused.iter().map(|r| r.as_str()).collect();
                reasons.sort_unstable();
                snapshot.paused_partitions.insert(name.clone(), reasons);
            }
            snapshot.partitions.push(name);
        }
        drop(table);
        snapshot.paused = snapshot.paused_partitions.len();
        snapshot.partitions.sort_unstable();
        snapshot
    }

    pub(super) fn breaker_states(&self) -> BTreeMap<String, &'static str> {
        let now = Instant::now();
        self.runtime
            .shared
            .breakers()
            .states(now)
            .map(|(dependency, state)| {
                let state = match state {
                    BreakerState::Closed => "closed",
                    BreakerState::HalfOpen { .. } => "half_open",
                    BreakerState::Open { .. } => "open",
                };
                (dependency.to_string(), state)
            })
            .collect()
    }

    pub(super) fn update_breaker_gauge(&self) {
        let now = Instant::now();
        let breakers = self.runtime.shared.breakers();
        for (dependency, state) in breakers.states(now) {
            let value = match state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen { .. } => 1,
                BreakerState::Open { .. } => 2,
            };
            self.runtime
                .shared
                .metrics
                .breaker
                .with_label_values(&[dependency])
                .set(value);
        }
    }

    /// Stops fetching and waits (bounded) for in-flight events; what is held but not started is
    /// left uncommitted, so the next owner reads it again.
    pub(super) async fn drain(&mut self) {
        let all = self.runtime.shared.assigned();
        self.flush_stats();
        self.set_pause(&all, PauseReason::Shutdown, true);
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline, self.in_flight.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        left = self.in_flight.len(),
                        "drain timeout: in-flight events will be redelivered"
                    );
                    self.in_flight.abort_all();
                    break;
                }
            }
        }
        if self.runtime.shared.transactions.is_none() {
            self.store_positions(all);
        }
    }
}
