//! Circulatory's shared runtime: everything the services and the `circ` CLI have in common.
//!
//! - [`topology`]: `topics.yaml`, parsed and validated (every problem reported at once).
//! - [`catalog`]: the topology joined with the Avro schemas; topics, subjects, routing.
//! - [`codec`]: JSON ⇄ Avro with precise, path-addressed errors; [`codec::direct`] does it in one
//!   pass between JSON and Avro binary with a schema compiled once.
//! - [`registry`]: the Confluent-compatible schema registry and the wire format.
//! - [`cloudevents`]: CloudEvents binary-mode headers, built and parsed in one place.
//! - [`kafka`], [`topics`], [`publisher`]: clients, topic management, durable publishing.
//! - [`consumer`]: the consumer-group runtime (handlers, retries, dead letters, breakers, tiers).
//! - [`db`]: PostgreSQL pool and the embedded migrations.
//! - [`auth`]: bearer tokens (JWT), verified by every HTTP surface, minted by `circ token`.
//! - [`realtime`]: broadcasts on Redis pub/sub.
//! - [`trace`]: the trace index (where each event is, what each group did with it).
//! - [`events`]: the typed payload of every event type, generated from `schemas/`.
//! - [`metrics`]: Prometheus metrics, declared and rendered one way in every binary.
//! - [`sync`]: the one policy for poisoned locks (recover).
//! - [`process`]: every binary's edges: flags, exit codes, logs, the stop signal.

pub mod asyncapi;
pub mod auth;
pub mod catalog;
pub mod cloudevents;
pub mod codec;
pub mod consumer;
pub mod db;
pub mod duration;
/// The typed payload of every event type, generated from `schemas/`.
pub use circulatory_events as events;
pub mod http_server;
pub mod json;
pub mod kafka;
pub mod metrics;
pub mod process;
pub mod publisher;
pub mod realtime;
pub mod registry;
pub mod sync;
pub mod topics;
pub mod topology;
pub mod trace;
