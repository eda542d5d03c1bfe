//! Metrics of a consumer group, registered once per process in the binary's registry. The group
//! is not a label: the scrape job adds it as the `group` target label (`circ deploy monitoring`).
//! Event types are a closed set from the catalog; no ids as labels.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::metrics::declare;

#[derive(Clone)]
pub struct GroupMetrics {
    pub processed: IntCounterVec,
    pub failed: IntCounterVec,
    pub retried: IntCounterVec,
    pub dead_lettered: IntCounterVec,
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    pub paused: IntGauge,
    pub lag: IntGaugeVec,
    pub breaker: IntGaugeVec,
    /// Times the dead-letter flood guard stopped the group.
    pub flood_guard_stops: IntCounter,
    /// Reports the trace index dropped ([`crate::trace`]).
    pub trace_dropped: IntCounter,
}

impl GroupMetrics {
    /// Creates the metrics and registers them in `registry`, which must not hold them yet: each
    /// group of a process (or of a test) gets a registry of its own ([`crate::metrics`]).
    pub fn new(registry: &Registry) -> GroupMetrics {
        let declare = declare(registry);
        let by_type = |name: &str, help: &str| declare.counter_vec(name, help, &["type"]);
        GroupMetrics {
            processed: by_type(
                "circulatory_events_processed_total",
                "Events handled successfully.",
            ),
            failed: by_type(
                "circulatory_events_failed_total",
                "Handler failures (before routing).",
            ),
            retried: by_type(
                "circulatory_events_retried_total",
                "Events sent to a retry topic.",
            ),
            dead_lettered: by_type(
                "circulatory_events_dead_lettered_total",
                "Events sent to the dead-letter topic.",
            ),
            duration: declare.histogram_vec(
                "circulatory_handler_duration_seconds",
                "Handler duration (decode to effects), by event type.",
                Some(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
                    120.0, 600.0, 3600.0,
                ]),
                &["type"],
            ),
            in_flight: declare.gauge("circulatory_events_in_flight", "Handler calls running."),
            paused: declare.gauge(
                "circulatory_partitions_paused",
                "Assigned partitions currently paused.",
            ),
            lag: declare.gauge_vec(
                "circulatory_consumer_lag_records",
                "Records behind the end of each assigned partition.",
                &["topic", "partition"],
            ),
            breaker: declare.gauge_vec(
                "circulatory_breaker_state",
                "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open.",
                &["dependency"],
            ),
            flood_guard_stops: declare.counter(
                "circulatory_flood_guard_stops_total",
                "Times the dead-letter flood guard stopped the group.",
            ),
            trace_dropped: declare.existing(
                crate::trace::DROPPED_METRIC,
                crate::trace::dropped_counter(),
            ),
        }
    }
}
