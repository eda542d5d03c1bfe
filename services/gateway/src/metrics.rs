//! Prometheus metrics, served on `/metrics`. Names start with `circ_gateway_`.

use std::sync::atomic::{AtomicUsize, Ordering};

use circulatory::metrics::{declare, render};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

pub struct Metrics {
    registry: Registry,
    /// Open connections, by transport (`ws`, `sse`).
    pub connections: IntGaugeVec,
    /// Connections accepted, by transport.
    pub connections_total: IntCounterVec,
    /// Connections refused before the upgrade, by reason (`unauthorized`, `capacity`,
    /// `unavailable`).
    pub connections_refused: IntCounterVec,
    /// Connections closed by the gateway, by reason (`stale`, `slow`, `write_timeout`,
    /// `shutdown`, `protocol`).
    pub disconnects: IntCounterVec,
    /// Client subscriptions, by channel scope and kind (`exact`, `pattern`).
    pub subscriptions: IntGaugeVec,
    /// Subscriptions refused, by error code.
    pub subscriptions_refused: IntCounterVec,
    /// Channels and patterns this instance listens to on Redis.
    pub redis_subscriptions: IntGauge,
    /// Messages received from Redis.
    pub messages_received: IntCounter,
    /// Messages from Redis that were not a JSON object with a `type` (not forwarded).
    pub messages_malformed: IntCounter,
    /// Messages written to clients, by channel scope.
    pub messages_delivered: IntCounterVec,
    /// Messages not delivered to a client, by reason (`queue_full`, `closing`).
    pub messages_dropped: IntCounterVec,
    /// Publish (`time` of the message) → written to the client socket.
    pub delivery_latency: Histogram,
    /// The deepest any client queue has been since start (never above the queue length).
    pub queue_high_water: IntGauge,
    queue_high_water_value: AtomicUsize,
    /// `user.online` / `user.offline` published, by type.
    pub presence_events: IntCounterVec,
    /// Redis pub/sub (re)connections.
    pub redis_reconnects: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let declare = declare(&registry);
        let delivery_latency = declare.histogram(
            "circ_gateway_delivery_latency_seconds",
            "Publish (the message's time) to written on the client socket.",
            &[
                0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0,
            ],
        );
        Metrics {
            connections: declare.gauge_vec(
                "circ_gateway_connections",
                "Open client connections.",
                &["transport"],
            ),
            connections_total: declare.counter_vec(
                "circ_gateway_connections_total",
                "Client connections accepted.",
                &["transport"],
            ),
            connections_refused: declare.counter_vec(
                "circ_gateway_connections_refused_total",
                "Client connections refused before the upgrade.",
                &["reason"],
            ),
            disconnects: declare.counter_vec(
                "circ_gateway_disconnects_total",
                "Connections closed by the gateway.",
                &["reason"],
            ),
            subscriptions: declare.gauge_vec(
                "circ_gateway_subscriptions",
                "Client subscriptions by channel scope.",
                &["scope", "kind"],
            ),
            subscriptions_refused: declare.counter_vec(
                "circ_gateway_subscriptions_refused_total",
                "Subscriptions refused.",
                &["code"],
            ),
            redis_subscriptions: declare.gauge(
                "circ_gateway_redis_subscriptions",
                "Channels and patterns this instance listens to on Redis.",
            ),
            messages_received: declare.counter(
                "circ_gateway_messages_received_total",
                "Messages received from Redis.",
            ),
            messages_malformed: declare.counter(
                "circ_gateway_messages_malformed_total",
                "Messages from Redis that were not forwarded (not a JSON object with a type).",
            ),
            messages_delivered: declare.counter_vec(
                "circ_gateway_messages_delivered_total",
                "Messages written to clients.",
                &["scope"],
            ),
            messages_dropped: declare.counter_vec(
                "circ_gateway_messages_dropped_total",
                "Messages not delivered to a client.",
                &["reason"],
            ),
            delivery_latency,
            queue_high_water: declare.gauge(
                "circ_gateway_client_queue_high_water",
                "The deepest any client queue has been since start.",
            ),
            queue_high_water_value: AtomicUsize::new(0),
            presence_events: declare.counter_vec(
                "circ_gateway_presence_events_total",
                "Presence messages published.",
                &["type"],
            ),
            redis_reconnects: declare.counter(
                "circ_gateway_redis_connects_total",
                "Redis pub/sub connections made.",
            ),
            registry,
        }
    }

    /// Records a client queue depth.
    pub fn observe_queue_depth(&self, depth: usize) {
        if depth > self.queue_high_water_value.load(Ordering::Relaxed) {
            let previous = self
                .queue_high_water_value
                .fetch_max(depth, Ordering::Relaxed);
            if depth > previous {
                self.queue_high_water.set(depth as i64);
            }
        }
    }

    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
