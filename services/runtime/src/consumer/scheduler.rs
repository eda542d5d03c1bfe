//! The engine's decisions, with no I/O: which event starts when, which partitions pause and why,
//! whose offsets to store, and when the group must stop.
//!
//! The scheduler owns everything the engine holds between the client and the handlers: the
//! per-key lanes, the ready classes and the handler slots, retry records not yet due, events
//! parked behind an open breaker and the single trial, the tier counters and the flood guard.
//! The async engine feeds it what happened ([`Scheduler::on_records`],
//! [`Scheduler::on_completion`], [`Scheduler::on_assigned`], [`Scheduler::on_revoked`],
//! [`Scheduler::on_tick`]) and executes the [`Command`]s it returns, in order. Time is passed
//! in ([`Clock`]), so every policy is tested with injected time and no broker.

use std::collections::VecDeque;

// Per-event lookups (partitions, keys, topics) use a fast hasher: the keys come from the
// group's own topics and records.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::consumer::breaker::BreakerState;
use crate::consumer::clock::Clock;
use crate::consumer::delayed::{Arrival, Delayed};
use crate::consumer::dependencies::Dependencies;
use crate::consumer::flood_guard::{Flood, FloodGuard};
use crate::consumer::progress::{KeyLanes, Tp};
use crate::consumer::ready::{Ready, Slots};
use crate::topology::Tier;

/// What the scheduler needs to know of a record.
pub(crate) trait Work {
    /// The ordering key: events of one key run one at a time, in offset order.
    fn lane_key(&self) -> Vec<u8>;
    /// When a retry record is due, in epoch milliseconds (0: at once). Read only for records
    /// of retry topics.
    fn due_at_ms(&self) -> i64;
}

/// Why a partition is paused; it resumes when no reason is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PauseReason {
    /// The head of a retry partition is not due yet.
    Delay,
    /// Too much work is held in memory.
    Backpressure,
    /// A dependency's breaker is open.
    Breaker,
    /// The group is stopping.
    Shutdown,
    /// The engine took no records for a while: the poll thread keeps polling (rebalances and
    /// the group's liveness depend on it) with every partition paused.
    Full,
    /// An operator paused the group (the console's control key).
    Operator,
}

impl PauseReason {
    /// The name operators see (the heartbeat's `paused_partitions`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PauseReason::Delay => "delay",
            PauseReason::Backpressure => "backpressure",
            PauseReason::Breaker => "breaker",
            PauseReason::Shutdown => "shutdown",
            PauseReason::Full => "full",
            PauseReason::Operator => "operator",
        }
    }
}

/// One event to run: where it came from, its lane, the record.
#[derive(Debug)]
pub(crate) struct Job<W> {
    pub(crate) tp: Tp,
    pub(crate) key: Vec<u8>,
    pub(crate) work: W,
    /// The tier of `tp`'s topic, looked up once when the event arrives.
    pub(crate) tier: Option<Tier>,
}

/// What the engine must do, in the order given.
#[derive(Debug)]
pub(crate) enum Command<W> {
    /// Run the event (a slot is taken for it). If its partition is no longer owned, the engine
    /// says so with [`Scheduler::on_not_started`].
    Start {
        job: Job<W>,
        trial: bool,
    },
    Pause {
        tps: Vec<Tp>,
        reason: PauseReason,
    },
    Resume {
        tps: Vec<Tp>,
        reason: PauseReason,
    },
    /// Store the commit positions of these partitions (their finished prefix).
    StoreOffsets(Vec<Tp>),
    /// Stop the group: its recent events nearly all went to the dead letters.
    Stop(Flood),
}

/// How a started event ended.
#[derive(Debug)]
pub(crate) enum Finish {
    /// Handled, retried or dead-lettered: its offset is finished.
    Done {
        dead_lettered: bool,
        error: Option<String>,
    },
    /// Its dependency's breaker is open: it waits, unfinished, for a trial.
    Parked { dependency: String },
}

/// A started event came back.
#[derive(Debug)]
pub(crate) struct Completion<W> {
    pub(crate) job: Job<W>,
    pub(crate) trial: bool,
    /// Its partition was being revoked (or is gone) when it finished.
    pub(crate) revoked: bool,
    pub(crate) finish: Finish,
}

/// What the engine reads from the outside world once a tick.
#[derive(Debug)]
pub(crate) struct Tick<'a> {
    pub(crate) clock: Clock,
    /// The partitions owned and not being revoked.
    pub(crate) assigned: &'a [Tp],
    /// The highest tier the client reports a lag for.
    pub(crate) lagging_tier: Option<Tier>,
    /// The operator's control as last read.
    pub(crate) operator_paused: bool,
}

/// The bounds and topology the scheduler works with.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Handler calls running at once.
    pub(crate) max_in_flight: usize,
    /// Share of the slots lower tiers keep under a higher tier's backlog.
    pub(crate) low_tier_min_share: f64,
    /// Events received and not started (ready or queued behind their key) before the engine
    /// stops taking records.
    pub(crate) max_waiting: usize,
    pub(crate) tiers: HashMap<String, Tier>,
    pub(crate) retry_topics: HashSet<String>,
    /// Offsets are stored for the client to commit (false: a transaction commits them).
    pub(crate) stores_offsets: bool,
}

/// An event waiting for its dependency's breaker.
#[derive(Debug)]
struct Parked<W> {
    dependency: String,
    job: Job<W>,
}

#[derive(Debug)]
pub(crate) struct Scheduler<W> {
    limits: Limits,
    commands: VecDeque<Command<W>>,
    assigned: HashSet<Tp>,
    lanes: HashMap<Tp, KeyLanes<W>>,
    /// Retry records not yet due, per partition, in arrival (= due) order.
    delayed: Delayed<Tp, W>,
    /// Events ready to run (their key's lane is free), waiting for a slot or their tier's turn.
    ready: Ready<Job<W>>,
    slots: Slots,
    parked: VecDeque<Parked<W>>,
    /// The dependency whose half-open breaker's single trial is running.
    trial: Option<String>,
    /// Every partition is paused because a breaker opened.
    paused_for_breaker: bool,
    flood_guard: FloodGuard,
    /// Records held: running, ready, queued in lanes, delayed or parked.
    held: usize,
    /// Main-topic events received and not finished, per tier.
    held_by_tier: HashMap<Tier, usize>,
    lagging_tier: Option<Tier>,
    /// Lower-tier partitions paused while the engine is full and a higher tier lags.
    backpressured: HashSet<Tp>,
    /// Partitions with finished offsets whose commit position is not stored yet.
    unstored: HashSet<Tp>,
    /// The operator pause is applied: partitions paused, no new event starts.
    operator_paused: bool,
}

impl<W: Work> Scheduler<W> {
    /// `operator_paused`: the operator's control as read before the group joined.
    pub(crate) fn new(
        limits: Limits,
        flood_guard: FloodGuard,
        operator_paused: bool,
    ) -> Scheduler<W> {
        Scheduler {
            slots: Slots::new(limits.max_in_flight, limits.low_tier_min_share),
            limits,
            commands: VecDeque::new(),
            assigned: HashSet::new(),
            lanes: HashMap::new(),
            delayed: Delayed::default(),
            ready: Ready::default(),
            parked: VecDeque::new(),
            trial: None,
            paused_for_breaker: false,
            flood_guard,
            held: 0,
            held_by_tier: HashMap::new(),
            lagging_tier: None,
            backpressured: HashSet::new(),
            unstored: HashSet::new(),
            operator_paused,
        }
    }

    /// The next command to execute, in order.
    pub(crate) fn next_command(&mut self) -> Option<Command<W>> {
        self.commands.pop_front()
    }

    /// Whether the engine may take more records from the client.
    pub(crate) fn has_room(&self) -> bool {
        self.waiting() < self.limits.max_waiting
    }

    /// Handler calls running.
    pub(crate) fn running(&self) -> usize {
        self.slots.running()
    }

    /// Events held back by time: retries not due and events parked behind a breaker.
    pub(crate) fn delayed(&self) -> usize {
        self.delayed.len() + self.parked.len()
    }

    pub(crate) fn operator_paused(&self) -> bool {
        self.operator_paused
    }

    /// Records the client delivered for owned partitions, in offset order per partition.
    pub(crate) fn on_records(&mut self, records: impl IntoIterator<Item = (Tp, W)>, clock: Clock) {
        // A batch holds runs of records of one partition: its checks are made once per run.
        let mut last: Option<(Tp, Option<Tier>)> = None;
        for (tp, work) in records {
            let tier = match &last {
                Some((seen, tier)) if *seen == tp => *tier,
                _ => {
                    if !self.assigned.contains(&tp) {
                        self.on_assigned(std::slice::from_ref(&tp));
                    }
                    let tier = self.tier(&tp);
                    last = Some((tp.clone(), tier));
                    tier
                }
            };
            self.held += 1;
            if let Some(tier) = tier {
                *self.held_by_tier.entry(tier).or_default() += 1;
            }
            if self.limits.retry_topics.contains(&*tp.0) {
                match self
                    .delayed
                    .arrive(&tp, work.due_at_ms(), work, clock.wall_ms)
                {
                    Arrival::Due(work) => self.admit(tp, tier, work),
                    Arrival::Held => self.command(Command::Pause {
                        tps: vec![tp],
                        reason: PauseReason::Delay,
                    }),
                }
            } else {
                self.admit(tp, tier, work);
            }
        }
        self.release();
    }

    /// Partitions assigned: they follow the pauses in force for every partition.
    pub(crate) fn on_assigned(&mut self, tps: &[Tp]) {
        let new: Vec<Tp> = tps
            .iter()
            .filter(|tp| self.assigned.insert((*tp).clone()))
            .cloned()
            .collect();
        if new.is_empty() {
            return;
        }
        for (on, reason) in [
            (self.operator_paused, PauseReason::Operator),
            (self.paused_for_breaker, PauseReason::Breaker),
        ] {
            if on {
                self.command(Command::Pause {
                    tps: new.clone(),
                    reason,
                });
            }
        }
    }

    /// Partitions revoked: everything held for them and not running is dropped (the next owner
    /// reads it again); what runs finishes with `revoked` set.
    pub(crate) fn on_revoked(&mut self, tps: &[Tp]) {
        for tp in tps {
            self.assigned.remove(tp);
            let before = self.parked.len();
            self.parked.retain(|p| p.job.tp != *tp);
            let mut dropped = before - self.parked.len();
            dropped += self.ready.retain(|job| job.tp != *tp);
            dropped += self.delayed.remove(tp);
            dropped += self
                .lanes
                .remove(tp)
                .map_or(0, |mut lanes| lanes.clear().len());
            self.backpressured.remove(tp);
            self.unstored.remove(tp);
            self.forget(tp, dropped);
        }
    }

    /// A [`Command::Start`] the engine could not run: its partition is being revoked or is
    /// gone. Everything else held for it is the next owner's too, and goes now: its lanes would
    /// otherwise stay busy behind an event that never runs, should the partition come back
    /// before a tick saw it leave.
    pub(crate) fn on_not_started(&mut self, job: Job<W>, trial: bool) {
        self.slots.finish(self.tier(&job.tp));
        if trial {
            self.trial = None;
        }
        self.forget(&job.tp, 1);
        self.on_revoked(std::slice::from_ref(&job.tp));
        self.release();
    }

    /// Whether [`Scheduler::on_completion`] needs the breakers and the time for `completion`:
    /// only to end a trial or to release parked events. Every other completion is handled
    /// without them, so the engine neither locks the breakers (which every succeeding task
    /// takes too) nor reads a clock per event.
    pub(crate) fn needs_breakers(&self, completion: &Completion<W>) -> bool {
        completion.trial || !self.parked.is_empty()
    }

    /// A started event came back. `breakers` (with the time) has already counted its outcome;
    /// it is given when [`Scheduler::needs_breakers`] says so.
    pub(crate) fn on_completion(
        &mut self,
        completion: Completion<W>,
        breakers: Option<(Clock, &mut Dependencies)>,
    ) {
        let Completion {
            job,
            trial,
            revoked,
            finish,
        } = completion;
        let trial_of = if trial { self.trial.take() } else { None };
        self.slots.finish(job.tier);
        let (dead_lettered, error) = match finish {
            Finish::Parked { dependency } => {
                self.parked.push_back(Parked { dependency, job });
                let all = self.all_assigned();
                self.command(Command::Pause {
                    tps: all,
                    reason: PauseReason::Breaker,
                });
                self.paused_for_breaker = true;
                self.release();
                return;
            }
            Finish::Done {
                dead_lettered,
                error,
            } => (dead_lettered, error),
        };
        if self.limits.stores_offsets {
            self.unstored.insert(job.tp.clone());
        }
        self.forget_in(job.tier, 1);
        if let Some((clock, breakers)) = breakers {
            if let Some(dependency) = trial_of {
                // The trial ended without failing on its dependency (it succeeded, or failed for
                // a reason of its own and was retried or dead-lettered): nothing says the
                // dependency is still down, so the breaker closes and the parked events run; if
                // it is down, they open it again.
                breakers.trial_passed(&dependency);
                self.release_parked(clock, breakers);
            } else if !self.parked.is_empty() {
                self.release_parked(clock, breakers);
            }
        }
        if let Some(flood) = self.flood_guard.record(dead_lettered, error) {
            self.command(Command::Stop(flood));
            return;
        }
        let Job { tp, key, tier, .. } = job;
        if revoked {
            // Everything held for the partition is the next owner's, even if it comes back to
            // this process before a tick saw it leave: its old lanes and ready events must not
            // run beside the new assignment's.
            self.on_revoked(std::slice::from_ref(&tp));
        } else if let Some(next) = self.lanes.get_mut(&tp).and_then(|l| l.finish(&key)) {
            self.make_ready(Job {
                tp,
                key,
                work: next,
                tier,
            });
        }
        self.release();
    }

    /// The periodic step: store offsets, tier backpressure, due retries, revocations, the
    /// operator's control and the breaker trial.
    pub(crate) fn on_tick(&mut self, tick: Tick<'_>, breakers: &Dependencies) {
        self.lagging_tier = tick.lagging_tier;
        self.follow_assignment(tick.assigned);
        if !self.unstored.is_empty() {
            let tps = self.unstored.drain().collect();
            self.command(Command::StoreOffsets(tps));
        }
        self.update_tier_backpressure();
        let released = self.delayed.release(tick.clock.wall_ms);
        for (tp, work) in released.due {
            let tier = self.tier(&tp);
            self.admit(tp, tier, work);
        }
        if !released.emptied.is_empty() {
            self.command(Command::Resume {
                tps: released.emptied,
                reason: PauseReason::Delay,
            });
        }
        // Nothing parked and no trial (the parked events' partitions were revoked): the pause
        // has nothing left to wait for. Resume; a dependency still down opens it again.
        if self.paused_for_breaker && self.parked.is_empty() && self.trial.is_none() {
            self.resume_from_breaker();
        }
        self.follow_operator(tick.operator_paused);
        self.start_trial(tick.clock, breakers);
        self.release();
    }

    /// Revokes what the engine holds of partitions no longer owned, and takes in new ones.
    fn follow_assignment(&mut self, assigned: &[Tp]) {
        let owned: HashSet<&Tp> = assigned.iter().collect();
        let gone: Vec<Tp> = self
            .assigned
            .iter()
            .chain(self.delayed.partitions())
            .chain(self.lanes.keys())
            .filter(|tp| !owned.contains(tp))
            .cloned()
            .collect::<HashSet<Tp>>()
            .into_iter()
            .collect();
        self.on_revoked(&gone);
        self.on_assigned(assigned);
    }

    fn follow_operator(&mut self, wanted: bool) {
        if wanted == self.operator_paused {
            return;
        }
        self.operator_paused = wanted;
        let tps = self.all_assigned();
        self.command(if wanted {
            Command::Pause {
                tps,
                reason: PauseReason::Operator,
            }
        } else {
            Command::Resume {
                tps,
                reason: PauseReason::Operator,
            }
        });
    }

    /// A half-open breaker gets one trial: the oldest event parked on it.
    fn start_trial(&mut self, clock: Clock, breakers: &Dependencies) {
        if self.trial.is_some() || self.operator_paused {
            return;
        }
        let half_open = self.parked.front().is_some_and(|p| {
            matches!(
                breakers.state(&p.dependency, clock.now),
                Some(BreakerState::HalfOpen { .. })
            )
        });
        if !half_open {
            return;
        }
        if let Some(Parked { dependency, job }) = self.parked.pop_front() {
            self.trial = Some(dependency);
            self.start(job, true);
        }
    }

    /// Every breaker is closed: resume and run what was parked.
    fn release_parked(&mut self, clock: Clock, breakers: &Dependencies) {
        if !breakers.all_closed(clock.now) {
            return;
        }
        self.resume_from_breaker();
        while let Some(Parked { job, .. }) = self.parked.pop_front() {
            self.make_ready(job);
        }
    }

    fn resume_from_breaker(&mut self) {
        let tps = self.all_assigned();
        self.command(Command::Resume {
            tps,
            reason: PauseReason::Breaker,
        });
        self.paused_for_breaker = false;
    }

    fn admit(&mut self, tp: Tp, tier: Option<Tier>, work: W) {
        let key = work.lane_key();
        let lanes = self.lanes.entry(tp.clone()).or_default();
        if let Some(work) = lanes.admit(key.clone(), work) {
            self.make_ready(Job {
                tp,
                key,
                work,
                tier,
            });
        }
    }

    fn make_ready(&mut self, job: Job<W>) {
        self.ready.push(job.tier, job);
    }

    /// Starts ready events while slots are free, in the order [`Ready::next`] gives.
    fn release(&mut self) {
        if self.operator_paused {
            return;
        }
        let top = self.top_backlog();
        while let Some((_, job)) = self.ready.next(&self.slots, top) {
            self.start(job, false);
        }
    }

    fn start(&mut self, job: Job<W>, trial: bool) {
        self.slots.start(job.tier);
        self.command(Command::Start { job, trial });
    }

    /// The highest tier with events received and not finished, or a lag reported by the client.
    fn top_backlog(&self) -> Option<Tier> {
        let held = self
            .held_by_tier
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, _)| *t)
            .min();
        match (held, self.lagging_tier) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// While the engine is full, records of a lagging higher tier may sit behind lower-tier ones
    /// in the client: the lower tiers' partitions pause until the engine has room again or the
    /// higher tier caught up, so the higher tier's records come through.
    fn update_tier_backpressure(&mut self) {
        let hold: HashSet<Tp> = match self.lagging_tier {
            Some(top) if !self.has_room() => self
                .assigned
                .iter()
                .filter(|tp| self.tier(tp).is_some_and(|t| t > top))
                .cloned()
                .collect(),
            _ => HashSet::new(),
        };
        let resume: Vec<Tp> = self.backpressured.difference(&hold).cloned().collect();
        let pause: Vec<Tp> = hold.difference(&self.backpressured).cloned().collect();
        if !pause.is_empty() {
            self.command(Command::Pause {
                tps: pause,
                reason: PauseReason::Backpressure,
            });
        }
        if !resume.is_empty() {
            self.command(Command::Resume {
                tps: resume,
                reason: PauseReason::Backpressure,
            });
        }
        self.backpressured = hold;
    }

    /// Events received and not started: ready, or queued behind an event of their key.
    fn waiting(&self) -> usize {
        self.ready.len() + self.lanes.values().map(KeyLanes::queued).sum::<usize>()
    }

    /// Forgets `count` events of `tp` the engine held: finished, or dropped on revocation.
    fn forget(&mut self, tp: &Tp, count: usize) {
        self.forget_in(self.tier(tp), count);
    }

    fn forget_in(&mut self, tier: Option<Tier>, count: usize) {
        self.held = self.held.saturating_sub(count);
        if let Some(n) = tier.and_then(|t| self.held_by_tier.get_mut(&t)) {
            *n = n.saturating_sub(count);
        }
    }

    fn tier(&self, tp: &Tp) -> Option<Tier> {
        self.limits.tiers.get(&*tp.0).copied()
    }

    fn all_assigned(&self) -> Vec<Tp> {
        self.assigned.iter().cloned().collect()
    }

    fn command(&mut self, command: Command<W>) {
        self.commands.push_back(command);
    }
}

#[cfg(test)]
mod tests;
