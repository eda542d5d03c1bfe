//! The cluster's figures as Prometheus series, under the names operators of kafka_exporter,
//! kminion and kafka-lag-exporter know (`kafka_consumergroup_*`), plus the pipeline's own
//! (`circulatory_group_*`, `circulatory_dlq_*`). Labels are groups, topics, partitions,
//! dependencies and reasons: bounded by the topology, never by ids. Set from each refresh of
//! the view; scraping reads them and costs the cluster nothing.

use circulatory::metrics::{declare, render};
use prometheus::{GaugeVec, HistogramVec, IntGaugeVec, Registry};

use crate::cluster::ClusterView;
use crate::verdict::Status;

pub struct Metrics {
    pub registry: Registry,
    lag: IntGaugeVec,
    lag_sum: IntGaugeVec,
    members: IntGaugeVec,
    lag_seconds: GaugeVec,
    max_lag_seconds: GaugeVec,
    group_lag: IntGaugeVec,
    instances: IntGaugeVec,
    dlq_open: IntGaugeVec,
    dlq_records: IntGaugeVec,
    dlq_oldest: GaugeVec,
    breaker_open: IntGaugeVec,
    paused: IntGaugeVec,
    operator_paused: IntGaugeVec,
    stopped: IntGaugeVec,
    status: IntGaugeVec,
    refresh: HistogramVec,
    pub requests: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let cg = ["consumergroup", "topic", "partition"];
        let d = declare(&r);
        let refresh = d.histogram_vec(
            "circulatory_console_refresh_seconds",
            "Time to read the cluster view once.",
            None,
            &["outcome"],
        );
        let requests = d.histogram_vec(
            "circulatory_console_request_duration_seconds",
            "Console requests by route and status.",
            Some(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "status"],
        );
        Metrics {
            lag: d.gauge_vec(
                "kafka_consumergroup_lag",
                "Records not yet consumed, per partition.",
                &cg,
            ),
            lag_sum: d.gauge_vec(
                "kafka_consumergroup_lag_sum",
                "Records not yet consumed, per topic.",
                &["consumergroup", "topic"],
            ),
            members: d.gauge_vec(
                "kafka_consumergroup_members",
                "Members of the consumer group, from Kafka.",
                &["consumergroup"],
            ),
            lag_seconds: d.float_gauge_vec(
                "kafka_consumergroup_group_lag_seconds",
                "Age of the oldest record waiting, per main-topic partition.",
                &["group", "topic", "partition"],
            ),
            max_lag_seconds: d.float_gauge_vec(
                "kafka_consumergroup_group_max_lag_seconds",
                "Age of the oldest record waiting on the group's main topics.",
                &["group"],
            ),
            group_lag: d.gauge_vec(
                "circulatory_group_lag_records",
                "Records waiting, by what the topic is to the group (main, retry, replay).",
                &["group", "role"],
            ),
            instances: d.gauge_vec(
                "circulatory_group_instances",
                "Instances of the group reporting a heartbeat.",
                &["group"],
            ),
            dlq_open: d.gauge_vec(
                "circulatory_dlq_open",
                "Dead letters nobody decided on yet.",
                &["group"],
            ),
            dlq_records: d.gauge_vec(
                "circulatory_dlq_records",
                "Records in the group's dead-letter topic (grows with each dead letter).",
                &["group"],
            ),
            dlq_oldest: d.float_gauge_vec(
                "circulatory_dlq_oldest_age_seconds",
                "Age of the oldest open dead letter.",
                &["group"],
            ),
            breaker_open: d.gauge_vec(
                "circulatory_group_breaker_open",
                "1 while a dependency's breaker is open on any instance.",
                &["group", "dependency"],
            ),
            paused: d.gauge_vec(
                "circulatory_group_paused_partitions",
                "Partitions paused, by reason.",
                &["group", "reason"],
            ),
            operator_paused: d.gauge_vec(
                "circulatory_group_operator_paused",
                "1 while an operator paused the group.",
                &["group"],
            ),
            stopped: d.gauge_vec(
                "circulatory_group_stopped",
                "1 when the dead-letter flood guard stopped the group.",
                &["group"],
            ),
            status: d.gauge_vec(
                "circulatory_group_status",
                "1 for the group's current health verdict.",
                &["group", "status"],
            ),
            refresh,
            requests,
            registry: r,
        }
    }

    pub fn observe_refresh(&self, view: &ClusterView) {
        let outcome = if view.errors.is_empty() {
            "ok"
        } else {
            "partial"
        };
        self.refresh
            .with_label_values(&[outcome])
            .observe(view.refresh_ms as f64 / 1000.0);
    }

    /// Replaces every cluster series with the view's values.
    pub fn set(&self, view: &ClusterView) {
        self.observe_refresh(view);
        if view.errors.iter().any(|e| e.starts_with("kafka")) {
            // Keep the last known values rather than report an empty cluster.
            return;
        }
        for vec in [
            &self.lag,
            &self.lag_sum,
            &self.members,
            &self.group_lag,
            &self.instances,
            &self.dlq_open,
            &self.dlq_records,
            &self.breaker_open,
            &self.paused,
            &self.operator_paused,
            &self.stopped,
            &self.status,
        ] {
            vec.reset();
        }
        self.lag_seconds.reset();
        self.max_lag_seconds.reset();
        self.dlq_oldest.reset();
        for g in &view.groups {
            self.set_group(view, g);
        }
    }

    fn set_group(&self, view: &ClusterView, g: &crate::cluster::GroupView) {
        let id = g.group_id.as_str();
        let name = g.group.as_str();
        let mut per_topic: std::collections::BTreeMap<&str, i64> = Default::default();
        let mut by_role: std::collections::BTreeMap<&str, i64> =
            [("main", 0), ("retry", 0), ("replay", 0)]
                .into_iter()
                .collect();
        for p in &g.partitions {
            let partition = p.partition.to_string();
            self.lag
                .with_label_values(&[id, &p.topic, &partition])
                .set(p.lag);
            *per_topic.entry(&p.topic).or_default() += p.lag;
            *by_role.entry(&p.role).or_default() += p.lag;
            if p.role == "main" {
                self.lag_seconds
                    .with_label_values(&[name, &p.topic, &partition])
                    .set(p.time_lag_seconds.unwrap_or(0.0));
            }
        }
        for (topic, lag) in per_topic {
            self.lag_sum.with_label_values(&[id, topic]).set(lag);
        }
        for (role, lag) in by_role {
            self.group_lag.with_label_values(&[name, role]).set(lag);
        }
        self.members
            .with_label_values(&[id])
            .set(g.members.len() as i64);
        self.max_lag_seconds
            .with_label_values(&[name])
            .set(g.time_lag_seconds);
        self.instances
            .with_label_values(&[name])
            .set(g.instances.len() as i64);
        self.dlq_open
            .with_label_values(&[name])
            .set(g.dlq.open as i64);
        self.dlq_records
            .with_label_values(&[name])
            .set(g.dlq.total as i64);
        let oldest = g
            .dlq
            .oldest_open_at_ms
            .map_or(0.0, |t| ((view.taken_at_ms - t).max(0)) as f64 / 1000.0);
        self.dlq_oldest.with_label_values(&[name]).set(oldest);
        for (dependency, state) in &g.breakers {
            self.breaker_open
                .with_label_values(&[name, dependency])
                .set(i64::from(state == "open"));
        }
        let mut reasons: std::collections::BTreeMap<&str, i64> = Default::default();
        for p in &g.paused_partitions {
            for r in &p.reasons {
                *reasons.entry(r).or_default() += 1;
            }
        }
        for (reason, n) in reasons {
            self.paused.with_label_values(&[name, reason]).set(n);
        }
        self.operator_paused
            .with_label_values(&[name])
            .set(i64::from(g.control.is_some()));
        self.stopped
            .with_label_values(&[name])
            .set(i64::from(g.stopped.is_some()));
        for status in Status::ALL {
            self.status
                .with_label_values(&[name, status.as_str()])
                .set(i64::from(g.health.status == status));
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
