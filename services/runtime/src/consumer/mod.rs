//! The consumer runtime: every consumer-group binary runs on it.
//!
//! - [`handler`]: what group code sees (`Event`, `Context`, `HandlerError`, `Handler`).
//! - [`group`]: building and starting a group (`ConsumerGroup`): handlers, clients, identity.
//! - [`settings`]: a group process's tuning (`GroupSettings`). [`error`]: why a group stopped.
//! - `clock`: time as the engine reads it (the scheduler is handed it).
//! - [`engine`]: the at-least-once engine's async shell: executes the scheduler's commands,
//!   flushes figures, drains.
//! - `poll`: the poll thread. `rebalance`: the consumer's context and rebalance callbacks.
//! - `partitions`: the partition table shared by the poll thread, the engine and event tasks.
//! - `task`: one event on its own task: decode, handle under the timeout, effects, failures.
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
//! - [`testing`] (feature `testing`): a handler run in-process, its effects read back.

pub mod breaker;
pub(crate) mod clock;
pub mod dead_letters;
pub(crate) mod delayed;
pub mod dependencies;
pub mod durations;
pub mod engine;
pub mod error;
pub mod exactly_once;
pub mod flood_guard;
pub mod group;
pub mod handler;
pub mod lag;
pub(crate) mod partitions;
pub(crate) mod poll;
pub mod progress;
pub(crate) mod ready;
pub(crate) mod rebalance;
pub(crate) mod record;
pub mod retry;
pub(crate) mod scheduler;
pub mod settings;
pub mod stats;
pub(crate) mod task;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub(crate) mod trace_steps;
pub mod transactions;

pub use error::ConsumerError;
pub use exactly_once::{exactly_once, Applied};
pub use group::ConsumerGroup;
pub use handler::{Context, Event, Handler, HandlerError};
pub use settings::GroupSettings;
