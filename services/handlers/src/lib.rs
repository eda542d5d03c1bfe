//! The consumer groups of Circulatory. Each group of `topics.yaml` is a module of [`groups`] and a
//! binary in `src/bin/` that runs it on the consumer runtime:
//!
//! - [`runner`]: flags, connections, `/metrics` `/healthz` `/readyz`, signals, exit codes.
//! - [`deps`]: the handles handlers share (catalog, PostgreSQL, Redis, options).
//! - [`effects`]: exactly-once PostgreSQL effects and error mapping.
//! - [`groups`]: the handlers.

pub mod deps;
pub mod effects;
pub mod groups;
pub mod runner;
