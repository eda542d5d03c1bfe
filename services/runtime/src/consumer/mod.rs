//! The consumer runtime: every consumer-group binary runs on it.
//!
//! - [`handler`]: what group code sees (`Event`, `Context`, `HandlerError`, `Handler`).
//! - [`engine`]: the at-least-once engine (`ConsumerGroup`): lanes, offsets, retries, breakers,
//!   tiers, drain.
//! - [`exactly_once`]: database effects recorded with `processed_events` in one transaction.
//! - [`progress`]: per-partition commit positions and per-key lanes.
//! - `scheduler`: the engine's decisions without I/O: what starts, what pauses, what is
//!   stored, when the group stops; time passed in.
//! - `ready`: events ready to run and which runs next (retry topics, tiers, minimum shares).
//! - `record`: consumed records as the engine keeps them (one copy, headers indexed once).
//! - [`retry`]: the retry ladder, dead letters and their headers.
//! - [`lag`]: how far each group is behind (waiting, delayed, replaying), without joining it.
//! - [`dead_letters`]: list, show, replay (to the failed group only) and discard dead letters.
//! - [`breaker`]: a circuit breaker (threshold, growing cool-down, one trial).
//! - [`dependencies`]: a group's breakers by dependency, reset only by that dependency's users.
//! - [`flood_guard`]: stops a group whose recent events nearly all go to the dead letters.
//! - `delayed`: retry records held until they are due.
//! - [`telemetry`]: the group's metrics.
//! - [`durations`]: the histogram of handling durations behind p50 and p99.
//! - [`stats`]: the operators' figures, shared in Redis across instances.
//! - [`transactions`]: Kafka transactions for groups whose effects are only Kafka records.
//! - `trace_steps`: what the engine reports to the trace index.

pub mod breaker;
pub mod dead_letters;
pub(crate) mod delayed;
pub mod dependencies;
pub mod durations;
pub mod engine;
pub mod exactly_once;
pub mod flood_guard;
pub mod handler;
pub mod lag;
pub mod progress;
pub(crate) mod ready;
pub(crate) mod record;
pub mod retry;
pub(crate) mod scheduler;
pub mod stats;
pub mod telemetry;
pub(crate) mod trace_steps;
pub mod transactions;

pub use engine::{ConsumerError, ConsumerGroup, GroupSettings};
pub use exactly_once::{exactly_once, Applied};
pub use handler::{Context, Event, Handler, HandlerError};
