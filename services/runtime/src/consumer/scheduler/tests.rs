//! Every policy of the scheduler with injected time and no broker: a harness plays the engine,
//! executing commands the way it does (starts become running events, pauses are tracked per
//! partition with their reasons, stored offsets come from each partition's finished prefix).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::consumer::breaker::CircuitBreaker;
use crate::consumer::progress::PartitionProgress;

const MAIN: &str = "t.normal";
const CRITICAL: &str = "t.critical";
const RETRY: &str = "t.retry.1s";
const WALL0: i64 = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
struct Rec {
    key: Vec<u8>,
    offset: i64,
    due_ms: i64,
}

impl Work for Rec {
    fn lane_key(&self) -> Vec<u8> {
        self.key.clone()
    }

    fn due_at_ms(&self) -> i64 {
        self.due_ms
    }
}

fn tp(topic: &str, partition: i32) -> Tp {
    (Arc::from(topic), partition)
}

fn limits(max_in_flight: usize) -> Limits {
    Limits {
        max_in_flight,
        low_tier_min_share: 0.1,
        max_waiting: 1_000,
        tiers: [
            (MAIN.to_string(), Tier::Normal),
            (CRITICAL.to_string(), Tier::Critical),
        ]
        .into_iter()
        .collect(),
        retry_topics: [RETRY.to_string()].into_iter().collect(),
        stores_offsets: true,
    }
}

/// Plays the engine around a scheduler.
struct Harness {
    s: Scheduler<Rec>,
    breakers: Dependencies,
    t0: Instant,
    elapsed_ms: u64,
    assigned: Vec<Tp>,
    running: Vec<(Job<Rec>, bool)>,
    /// Start order, as (partition, offset).
    started: Vec<(Tp, i64)>,
    max_running: usize,
    paused: BTreeMap<Tp, BTreeSet<&'static str>>,
    progress: BTreeMap<Tp, PartitionProgress>,
    stored: BTreeMap<Tp, i64>,
    stopped: Option<Flood>,
    next_offset: BTreeMap<Tp, i64>,
    /// Records delivered for partitions still owned.
    delivered: BTreeSet<(Tp, i64)>,
    /// Times each record was parked.
    parks: BTreeMap<(Tp, i64), usize>,
}

impl Harness {
    fn new(limits: Limits) -> Harness {
        Harness::with(limits, FloodGuard::new(100, 1_000, 0.9), 5)
    }

    /// Four slots and a breaker that opens on the first dependency failure.
    fn fragile() -> Harness {
        Harness::with(limits(4), FloodGuard::new(100, 1_000, 0.9), 1)
    }

    fn with(limits: Limits, flood_guard: FloodGuard, breaker_threshold: u32) -> Harness {
        let assigned = vec![tp(MAIN, 0), tp(MAIN, 1), tp(CRITICAL, 0), tp(RETRY, 0)];
        let mut h = Harness {
            s: Scheduler::new(limits, flood_guard, false),
            breakers: Dependencies::new(CircuitBreaker::new(
                breaker_threshold,
                Duration::from_secs(1),
                Duration::from_secs(60),
            )),
            t0: Instant::now(),
            elapsed_ms: 0,
            assigned: assigned.clone(),
            running: Vec::new(),
            started: Vec::new(),
            max_running: 0,
            paused: BTreeMap::new(),
            progress: BTreeMap::new(),
            stored: BTreeMap::new(),
            stopped: None,
            next_offset: BTreeMap::new(),
            delivered: BTreeSet::new(),
            parks: BTreeMap::new(),
        };
        h.s.on_assigned(&assigned);
        h.execute();
        h
    }

    fn clock(&self) -> Clock {
        Clock {
            now: self.t0 + Duration::from_millis(self.elapsed_ms),
            wall_ms: WALL0 + self.elapsed_ms as i64,
        }
    }

    /// Records of one partition with these keys, at the next offsets; retry records due `due`
    /// ms from now.
    fn arrive(&mut self, at: &Tp, keys: &[&str], due: i64) {
        let wall = self.clock().wall_ms;
        let mut records = Vec::new();
        for key in keys {
            let offset = self.next_offset.entry(at.clone()).or_default();
            let rec = Rec {
                key: key.as_bytes().to_vec(),
                offset: *offset,
                due_ms: wall + due,
            };
            *offset += 1;
            self.delivered.insert((at.clone(), rec.offset));
            self.progress
                .entry(at.clone())
                .or_default()
                .received(rec.offset);
            records.push((at.clone(), rec));
        }
        self.s.on_records(records, self.clock());
        self.execute();
    }

    fn execute(&mut self) {
        while let Some(command) = self.s.next_command() {
            match command {
                Command::Start { job, trial } => {
                    if !self.assigned.contains(&job.tp) {
                        self.s.on_not_started(job, trial);
                        continue;
                    }
                    self.started.push((job.tp.clone(), job.work.offset));
                    self.running.push((job, trial));
                    self.max_running = self.max_running.max(self.running.len());
                }
                Command::Pause { tps, reason } => {
                    for tp in tps {
                        self.paused.entry(tp).or_default().insert(reason.as_str());
                    }
                }
                Command::Resume { tps, reason } => {
                    for tp in tps {
                        if let Some(reasons) = self.paused.get_mut(&tp) {
                            reasons.remove(reason.as_str());
                        }
                    }
                }
                Command::StoreOffsets(tps) => {
                    for tp in tps {
                        if let Some(position) =
                            self.progress.get(&tp).and_then(|p| p.commit_position())
                        {
                            self.stored.insert(tp, position);
                        }
                    }
                }
                Command::Stop(flood) => self.stopped = Some(flood),
            }
        }
    }

    /// Finishes the running event at `index` (in start order among those running). A failure
    /// on the dependency counts toward its breaker and parks the event only once the breaker
    /// is open, as the event task does; below the threshold it is retried (finished).
    fn finish(&mut self, index: usize, finish: Finish) {
        let (job, trial) = self.running.remove(index);
        let now = self.clock().now;
        let finish = match finish {
            Finish::Parked { dependency } => {
                let state = self.breakers.failed("t", &dependency, now);
                if matches!(state, BreakerState::Closed) {
                    Finish::Done {
                        dead_lettered: false,
                        error: None,
                    }
                } else {
                    *self
                        .parks
                        .entry((job.tp.clone(), job.work.offset))
                        .or_default() += 1;
                    Finish::Parked { dependency }
                }
            }
            done => {
                self.breakers.succeeded("t");
                done
            }
        };
        if let Finish::Done { .. } = finish {
            if let Some(p) = self.progress.get_mut(&job.tp) {
                p.finished(job.work.offset);
            }
        }
        let revoked = !self.assigned.contains(&job.tp);
        let completion = Completion {
            job,
            trial,
            revoked,
            finish,
        };
        // As the engine does: the breakers only when the scheduler asks for them.
        if self.s.needs_breakers(&completion) {
            let clock = self.clock();
            self.s
                .on_completion(completion, Some((clock, &mut self.breakers)));
        } else {
            self.s.on_completion(completion, None);
        }
        self.execute();
    }

    fn ok(&mut self, index: usize) {
        self.finish(
            index,
            Finish::Done {
                dead_lettered: false,
                error: None,
            },
        );
    }

    fn dead(&mut self, index: usize) {
        self.finish(
            index,
            Finish::Done {
                dead_lettered: true,
                error: Some("bad".into()),
            },
        );
    }

    fn park(&mut self, index: usize) {
        self.finish(
            index,
            Finish::Parked {
                dependency: "postgres".into(),
            },
        );
    }

    fn tick_at(&mut self, elapsed_ms: u64) {
        self.tick_with(elapsed_ms, false);
    }

    fn tick_with(&mut self, elapsed_ms: u64, operator_paused: bool) {
        self.elapsed_ms = elapsed_ms;
        let assigned = self.assigned.clone();
        let tick = Tick {
            clock: self.clock(),
            assigned: &assigned,
            lagging_tier: None,
            operator_paused,
        };
        self.s.on_tick(tick, &self.breakers);
        self.execute();
    }

    fn paused_for(&self, tp: &Tp, reason: &str) -> bool {
        self.paused.get(tp).is_some_and(|r| r.contains(reason))
    }

    fn running_keys(&self) -> Vec<(Tp, Vec<u8>)> {
        self.running
            .iter()
            .map(|(j, _)| (j.tp.clone(), j.key.clone()))
            .collect()
    }
}

#[test]
fn events_of_one_key_run_in_order_and_other_keys_run_beside_them() {
    let mut h = Harness::new(limits(4));
    let p = tp(MAIN, 0);
    h.arrive(&p, &["a", "b", "a", "c", "b", "a", "c", "d", "a"], 0);
    // Four keys, four slots: one event of each key runs, the rest wait behind their key.
    assert_eq!(h.running.len(), 4);
    let mut order: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    while !h.running.is_empty() {
        let keys = h.running_keys();
        let distinct: BTreeSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "one event per key at a time");
        // Finish the newest first: order must come from the lanes, not from completions.
        let last = h.running.len() - 1;
        let (job, _) = &h.running[last];
        order
            .entry(job.key.clone())
            .or_default()
            .push(job.work.offset);
        h.ok(last);
    }
    assert_eq!(h.max_running, 4);
    for offsets in order.values() {
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    }
    assert_eq!(order[&b"a".to_vec()], vec![0, 2, 5, 8]);
}

#[test]
fn a_lower_tier_keeps_its_minimum_share_under_a_critical_backlog() {
    // 10 slots, 10 %: one slot is the normal tier's while critical work waits, and only one.
    let mut h = Harness::new(limits(10));
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    h.arrive(&tp(MAIN, 0), &keys[..30], 0);
    // Ten normal events run when the critical backlog arrives.
    h.arrive(&tp(CRITICAL, 0), &keys[30..], 0);
    let mut normal_running = Vec::new();
    let mut completions = 0;
    while h.s.held_by_tier.get(&Tier::Critical).copied().unwrap_or(0) > 0 {
        h.ok(0);
        completions += 1;
        let normal = h.running.iter().filter(|(j, _)| *j.tp.0 == *MAIN).count();
        let critical_started = h.started.iter().filter(|(p, _)| *p.0 == *CRITICAL).count();
        // Freed normal slots go to the critical tier until the normal tier is at its share.
        if completions >= 9 && critical_started < 30 {
            normal_running.push(normal);
        }
    }
    assert!(normal_running.len() >= 20, "{normal_running:?}");
    assert!(normal_running.iter().all(|n| *n == 1), "{normal_running:?}");
}

#[test]
fn a_retry_never_starts_before_its_due_time() {
    let mut h = Harness::new(limits(4));
    let r = tp(RETRY, 0);
    h.arrive(&r, &["a", "b"], 1_000);
    assert!(h.running.is_empty());
    assert!(h.paused_for(&r, "delay"));
    // Due at exactly +1000 ms: only a clock past it proves the delay elapsed.
    h.tick_at(1_000);
    assert!(h.running.is_empty());
    h.tick_at(1_001);
    assert_eq!(h.running.len(), 2);
    assert!(!h.paused_for(&r, "delay"));
}

#[test]
fn a_record_behind_a_waiting_retry_waits_too() {
    let mut h = Harness::new(limits(4));
    let r = tp(RETRY, 0);
    h.arrive(&r, &["a"], 1_000);
    h.tick_at(500);
    // Due already, but behind a record that is not.
    h.arrive(&r, &["b"], -400);
    assert!(h.running.is_empty());
    h.tick_at(1_001);
    assert_eq!(h.started.len(), 2);
}

#[test]
fn an_open_breaker_parks_events_and_lets_exactly_one_trial_through() {
    let mut h = Harness::fragile();
    h.arrive(&tp(MAIN, 0), &["a", "b", "c"], 0);
    h.park(0);
    // Every partition pauses for the breaker.
    for p in h.assigned.clone() {
        assert!(h.paused_for(&p, "breaker"), "{p:?}");
    }
    h.park(0);
    h.park(0);
    assert!(h.running.is_empty());
    assert_eq!(h.s.delayed(), 3);
    // Cool-down 1 s: nothing before it.
    h.tick_at(900);
    assert!(h.running.is_empty());
    h.tick_at(1_000);
    assert_eq!(h.running.len(), 1);
    assert!(h.running[0].1, "the start is the trial");
    h.tick_at(1_100);
    h.tick_at(1_200);
    assert_eq!(h.running.len(), 1, "one trial at a time");
    // The trial passes: the breaker closes, the parked events run, the pause lifts.
    h.ok(0);
    assert_eq!(h.running.len(), 2);
    assert!(!h.paused_for(&tp(MAIN, 1), "breaker"));
}

#[test]
fn a_failed_trial_parks_again_and_the_next_trial_waits_longer() {
    let mut h = Harness::fragile();
    h.arrive(&tp(MAIN, 0), &["a", "b"], 0);
    h.park(0);
    h.park(0);
    h.tick_at(1_000);
    assert_eq!(h.running.len(), 1);
    h.park(0);
    // The next cool-down is 1.5 s from the failed trial.
    h.tick_at(2_400);
    assert!(h.running.is_empty());
    h.tick_at(2_500);
    assert_eq!(h.running.len(), 1);
}

#[test]
fn a_trial_that_fails_for_a_reason_of_its_own_closes_the_breaker() {
    let mut h = Harness::fragile();
    h.arrive(&tp(MAIN, 0), &["a", "b", "c"], 0);
    for _ in 0..3 {
        h.park(0);
    }
    h.tick_at(1_000);
    h.dead(0);
    assert_eq!(h.running.len(), 2, "the other parked events run");
}

#[test]
fn the_flood_guard_stops_at_its_ratio_and_not_below() {
    let flood = || FloodGuard::new(10, 10, 0.5);
    for (dead, stops) in [(4, false), (5, true)] {
        let mut h = Harness::with(limits(10), flood(), 5);
        let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        h.arrive(&tp(MAIN, 0), &keys, 0);
        for i in 0..10 {
            if i < dead {
                h.dead(0);
            } else {
                h.ok(0);
            }
        }
        assert_eq!(h.stopped.is_some(), stops, "{dead} of 10 dead-lettered");
        if let Some(flood) = &h.stopped {
            assert_eq!((flood.dead, flood.window), (5, 10));
        }
    }
}

#[test]
fn revocation_drops_exactly_the_revoked_partitions_work() {
    let mut h = Harness::with(limits(2), FloodGuard::new(100, 1_000, 0.9), 1);
    let (kept, revoked) = (tp(MAIN, 0), tp(MAIN, 1));
    h.arrive(&kept, &["a", "a", "b"], 0);
    h.arrive(&revoked, &["x", "x", "y", "z"], 0);
    h.arrive(&tp(RETRY, 0), &["r"], 5_000);
    // Running: kept/a and kept/b. The revoked partition's four wait.
    assert_eq!(h.running.len(), 2);
    assert_eq!(h.s.held, 8);
    h.assigned.retain(|p| *p != revoked);
    h.tick_at(100);
    assert_eq!(
        h.s.held, 4,
        "the revoked partition's 4 records are dropped, no more"
    );
    while !h.running.is_empty() {
        h.ok(0);
    }
    let started_revoked = h.started.iter().filter(|(p, _)| *p == revoked).count();
    assert_eq!(started_revoked, 0);
    assert_eq!(h.started.iter().filter(|(p, _)| *p == kept).count(), 3);
    // The retry record still comes due.
    h.tick_at(5_001);
    assert_eq!(h.running.len(), 1);
}

#[test]
fn offsets_are_stored_only_for_the_contiguous_finished_prefix() {
    let mut h = Harness::new(limits(4));
    let p = tp(MAIN, 0);
    h.arrive(&p, &["a", "b", "c"], 0);
    // Offsets 2 and 1 finish, 0 still runs: nothing may be stored.
    h.ok(2);
    h.ok(1);
    h.tick_at(100);
    assert_eq!(h.stored.get(&p), Some(&0), "not past the running offset 0");
    h.ok(0);
    h.tick_at(200);
    assert_eq!(h.stored.get(&p), Some(&3));
}

#[test]
fn an_operator_pause_starts_nothing_and_pauses_new_partitions_too() {
    let mut h = Harness::new(limits(4));
    h.tick_with(100, true);
    h.arrive(&tp(MAIN, 0), &["a"], 0);
    assert!(h.running.is_empty());
    let new = tp(MAIN, 7);
    h.assigned.push(new.clone());
    h.tick_with(200, true);
    assert!(h.paused_for(&new, "operator"));
    h.tick_with(300, false);
    assert_eq!(h.running.len(), 1);
    assert!(!h.paused_for(&new, "operator"));
}

/// One step of a random run.
#[derive(Debug, Clone)]
enum Step {
    Arrive {
        partition: i32,
        retry: bool,
        keys: Vec<u8>,
        due: i64,
    },
    Finish {
        index: usize,
        how: u8,
    },
    Tick {
        advance_ms: u64,
    },
    Revoke {
        partition: i32,
    },
    Assign {
        partition: i32,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..3i32, any::<bool>(), prop::collection::vec(0..4u8, 1..6), 0..300i64)
            .prop_map(|(partition, retry, keys, due)| Step::Arrive { partition, retry, keys, due }),
        6 => (0..8usize, 0..10u8).prop_map(|(index, how)| Step::Finish { index, how }),
        2 => (0..700u64).prop_map(|advance_ms| Step::Tick { advance_ms }),
        1 => (0..3i32).prop_map(|partition| Step::Revoke { partition }),
        1 => (0..3i32).prop_map(|partition| Step::Assign { partition }),
    ]
}

const MAX_IN_FLIGHT: usize = 3;

impl Harness {
    fn play(&mut self, step: Step) {
        match step {
            Step::Arrive {
                partition,
                retry,
                keys,
                due,
            } => {
                let at = tp(if retry { RETRY } else { MAIN }, partition);
                if !self.assigned.contains(&at) {
                    return;
                }
                let keys: Vec<String> = keys.iter().map(|k| format!("k{k}")).collect();
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                self.arrive(&at, &keys, due);
            }
            Step::Finish { index, how } if !self.running.is_empty() => {
                let index = index % self.running.len();
                match how {
                    0..=5 => self.ok(index),
                    6..=7 => self.dead(index),
                    _ => self.park(index),
                }
            }
            Step::Finish { .. } => {}
            Step::Tick { advance_ms } => self.tick_at(self.elapsed_ms + advance_ms),
            Step::Revoke { partition } => {
                self.assigned
                    .retain(|p| !(p.1 == partition && (*p.0 == *MAIN || *p.0 == *RETRY)));
                // The revocation waits for the partition's running events, as the rebalance
                // callback does.
                while let Some(index) = self
                    .running
                    .iter()
                    .position(|(j, _)| !self.assigned.contains(&j.tp))
                {
                    self.ok(index);
                }
                // A revoked partition's records are the next owner's.
                self.progress.retain(|p, _| self.assigned.contains(p));
                self.delivered.retain(|(p, _)| self.assigned.contains(p));
            }
            Step::Assign { partition } => {
                for topic in [MAIN, RETRY] {
                    let at = tp(topic, partition);
                    if !self.assigned.contains(&at) {
                        self.assigned.push(at);
                    }
                }
            }
        }
    }

    /// What must hold after every step.
    fn check(&self) {
        let trials = self.running.iter().filter(|(_, t)| *t).count();
        assert!(trials <= 1, "one trial at a time");
        assert!(
            self.running.len() <= MAX_IN_FLIGHT + trials,
            "slots exceeded"
        );
        assert_eq!(
            self.s.running(),
            self.running.len(),
            "slots count what runs"
        );
        let keys = self.running_keys();
        let distinct: BTreeSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "one event per key at a time");
        // No stored position passes an event not finished.
        for (tp, position) in &self.stored {
            let Some(progress) = self.progress.get(tp) else {
                continue;
            };
            if let Some(commit) = progress.commit_position() {
                assert!(*position <= commit, "{tp:?}: stored {position} > {commit}");
            }
        }
    }

    /// Finishes everything: time runs on, the dependency is back, every event succeeds.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.running.is_empty() && self.s.held == 0 {
                return;
            }
            if self.running.is_empty() {
                self.tick_at(self.elapsed_ms + 61_000);
            } else {
                self.ok(0);
            }
            self.check();
        }
        panic!(
            "the scheduler never settled: {} held, {} ready, {} queued, {} delayed, trial {:?}, \
             paused {:?}",
            self.s.held,
            self.s.ready.len(),
            self.s.waiting(),
            self.s.delayed(),
            self.s.trial,
            self.paused,
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_runs_keep_order_bounds_and_offsets(steps in prop::collection::vec(step(), 1..120)) {
        let mut limits = limits(MAX_IN_FLIGHT);
        limits.max_waiting = 50;
        let mut h = Harness::with(limits, FloodGuard::new(100, 1_000, 0.9), 2);
        for step in steps {
            h.play(step);
            h.check();
        }
        h.settle();
        // Every delivery of a partition still owned ran to completion, and started once, plus
        // once more for each time it was parked.
        let mut starts: BTreeMap<(Tp, i64), usize> = BTreeMap::new();
        for (tp, offset) in &h.started {
            *starts.entry((tp.clone(), *offset)).or_default() += 1;
        }
        for (tp, progress) in &h.progress {
            prop_assert_eq!(progress.pending(), 0, "{:?} has unfinished offsets", tp);
        }
        for delivery in &h.delivered {
            let parks = h.parks.get(delivery).copied().unwrap_or(0);
            let started = starts.get(delivery).copied().unwrap_or(0);
            prop_assert_eq!(started, parks + 1, "{:?}", delivery);
        }
        prop_assert!(h.stopped.is_none());
    }
}
