//! What every Circulatory consumer-group binary shares. Each group of `topics.yaml` is a crate
//! beside this one (`services/groups/<group>`) whose `main.rs` hands its handlers to [`runner`]:
//!
//! - [`runner`]: flags, connections, `/metrics` `/healthz` `/readyz`, signals, exit codes.
//! - [`deps`]: the handles handlers share (catalog, PostgreSQL, Redis).
//! - [`effects`]: exactly-once PostgreSQL effects and error mapping.
//! - [`testing`] (feature `testing`): runs a group in-process against the real stack.

pub mod deps;
pub mod effects;
pub mod runner;
#[cfg(feature = "testing")]
pub mod testing;
