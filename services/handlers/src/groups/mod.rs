//! One module per consumer group of `topics.yaml`; each has `GROUP` (its name) and `register`
//! (adds a handler for every subscribed event type).

pub mod audit_log;
