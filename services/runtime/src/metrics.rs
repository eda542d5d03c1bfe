//! Prometheus metrics declared one way in every binary: [`Declare`] creates a metric and registers
//! it in one step, and [`render`] is the text exposition every `/metrics` serves.
//!
//! A name declared twice in one registry is a programming error, and it stops the process at
//! start-up with the name (as the Go client's `MustRegister` does). Registering it quietly would
//! leave the second metric counting where no scrape sees it.

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Declares metrics into one registry.
#[derive(Clone, Copy)]
pub struct Declare<'r> {
    registry: &'r Registry,
}

/// Declares metrics into `registry`.
pub fn declare(registry: &Registry) -> Declare<'_> {
    Declare { registry }
}

impl Declare<'_> {
    pub fn counter(self, name: &str, help: &str) -> IntCounter {
        self.add(name, IntCounter::new(name, help))
    }

    pub fn counter_vec(self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(name, IntCounterVec::new(Opts::new(name, help), labels))
    }

    pub fn gauge(self, name: &str, help: &str) -> IntGauge {
        self.add(name, IntGauge::new(name, help))
    }

    pub fn gauge_vec(self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(name, IntGaugeVec::new(Opts::new(name, help), labels))
    }

    /// A gauge of fractional values (seconds, ratios).
    pub fn float_gauge_vec(self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(name, GaugeVec::new(Opts::new(name, help), labels))
    }

    /// A histogram with `buckets` (upper bounds, in the metric's unit).
    pub fn histogram(self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(name, Histogram::with_opts(opts))
    }

    /// A histogram with `buckets` per label set; `None` takes the client's default buckets.
    pub fn histogram_vec(
        self,
        name: &str,
        help: &str,
        buckets: Option<&[f64]>,
        labels: &[&str],
    ) -> HistogramVec {
        let mut opts = HistogramOpts::new(name, help);
        if let Some(buckets) = buckets {
            opts = opts.buckets(buckets.to_vec());
        }
        self.add(name, HistogramVec::new(opts, labels))
    }

    /// Registers a metric made elsewhere (one a component owns, such as the trace index's).
    pub fn existing<C: Collector + Clone + 'static>(self, name: &str, metric: C) -> C {
        self.add(name, Ok(metric))
    }

    fn add<C: Collector + Clone + 'static>(self, name: &str, made: prometheus::Result<C>) -> C {
        let metric = made.unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
        if let Err(e) = self.registry.register(Box::new(metric.clone())) {
            panic!("metric {name} cannot be registered: {e}");
        }
        metric
    }
}

/// The Prometheus text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // The text encoder fails only on a family without metrics or with an invalid name, which
    // `Declare` never registers.
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("the text exposition of registered metrics");
    String::from_utf8(out).expect("the text exposition is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_metrics_are_rendered() {
        let registry = Registry::new();
        let declare = declare(&registry);
        declare.counter("a_total", "A.").inc_by(3);
        declare
            .counter_vec("b_total", "B.", &["type"])
            .with_label_values(&["x"])
            .inc();
        declare
            .histogram("c_seconds", "C.", &[0.1, 1.0])
            .observe(0.5);
        let text = render(&registry);
        assert!(text.contains("a_total 3"), "{text}");
        assert!(text.contains("b_total{type=\"x\"} 1"), "{text}");
        assert!(text.contains("c_seconds_bucket{le=\"1\"} 1"), "{text}");
        assert!(text.contains("c_seconds_bucket{le=\"0.1\"} 0"), "{text}");
    }

    #[test]
    #[should_panic(expected = "metric a_total cannot be registered")]
    fn a_name_declared_twice_stops_with_the_name() {
        let registry = Registry::new();
        declare(&registry).counter("a_total", "A.");
        declare(&registry).counter("a_total", "A again.");
    }

    #[test]
    #[should_panic(expected = "metric bad name is malformed")]
    fn a_malformed_name_stops_with_the_name() {
        declare(&Registry::new()).counter("bad name", "B.");
    }
}
