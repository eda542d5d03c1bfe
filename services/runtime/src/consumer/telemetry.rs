//! Metrics of a consumer group, registered once per process in the binary's registry. The group
//! is a constant label; event types are a closed set from the catalog; no ids as labels.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

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
    /// Creates the metrics and registers them in `registry` (already registered ones are reused
    /// by name, so a test may build several groups against one registry).
    pub fn new(registry: &Registry) -> GroupMetrics {
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &["type"]).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "circulatory_handler_duration_seconds",
                "Handler duration (decode to effects), by event type.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
                120.0, 600.0, 3600.0,
            ]),
            &["type"],
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(duration.clone()));
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let flood_guard_stops = IntCounter::new(
            "circulatory_flood_guard_stops_total",
            "Times the dead-letter flood guard stopped the group.",
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(flood_guard_stops.clone()));
        let trace_dropped = crate::trace::dropped_counter();
        let _ = registry.register(Box::new(trace_dropped.clone()));
        GroupMetrics {
            processed: counter(
                "circulatory_events_processed_total",
                "Events handled successfully.",
            ),
            failed: counter(
                "circulatory_events_failed_total",
                "Handler failures (before routing).",
            ),
            retried: counter(
                "circulatory_events_retried_total",
                "Events sent to a retry topic.",
            ),
            dead_lettered: counter(
                "circulatory_events_dead_lettered_total",
                "Events sent to the dead-letter topic.",
            ),
            duration,
            in_flight: gauge("circulatory_events_in_flight", "Handler calls running."),
            paused: gauge(
                "circulatory_partitions_paused",
                "Assigned partitions currently paused.",
            ),
            lag: gauge_vec(
                "circulatory_consumer_lag_records",
                "Records behind the end of each assigned partition.",
                &["topic", "partition"],
            ),
            breaker: gauge_vec(
                "circulatory_breaker_state",
                "Circuit breaker per dependency: 0 closed, 1 half-open, 2 open.",
                &["dependency"],
            ),
            flood_guard_stops,
            trace_dropped,
        }
    }
}
