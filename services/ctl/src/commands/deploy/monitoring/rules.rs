//! `rules.yml`: the groups' objectives as recorded series, then the alerting rules, one rule
//! group per concern (lag, dead letters, consumers, ingest).
//!
//! What differs per group (the time-lag objective, the lag threshold) is a recorded series
//! labelled with the group, and each alert compares against it `on (group)`: one rule serves
//! every group, and a group added to `topics.yaml` gets its objectives by running the command
//! again. Every annotation is a template over `$labels` only, so that the unit tests can state
//! the exact text an alert carries.
//!
//! Runbook links are paths on the console (`/groups/<group>`, `/dead-letters?group=<group>`),
//! relative because the console's address is the deployment's business.

use circulatory::catalog::Catalog;
use serde_json::{json, Map, Value};

use super::prometheus::INGEST;

/// The recorded series each alert compares against.
pub(crate) const TIME_LAG_OBJECTIVE: &str = "circulatory:time_lag_objective_seconds";
pub(crate) const LAG_THRESHOLD: &str = "circulatory:lag_threshold_records";

pub(crate) struct RuleGroup {
    pub(crate) name: &'static str,
    /// The unit-test file of its alerts (`tests/<file>.yml`).
    pub(crate) file: &'static str,
    pub(crate) rules: Vec<Rule>,
}

pub(crate) enum Rule {
    Record {
        record: &'static str,
        expr: String,
        labels: Vec<(&'static str, String)>,
    },
    Alert(Alert),
}

pub(crate) struct Alert {
    pub(crate) name: &'static str,
    pub(crate) expr: String,
    /// How long the condition holds before the alert fires (Prometheus' `for`).
    pub(crate) hold: Option<&'static str>,
    pub(crate) severity: &'static str,
    pub(crate) summary: &'static str,
    /// One line: what it means, what to do, which console page to open.
    pub(crate) runbook: &'static str,
}

impl Alert {
    pub(crate) fn annotations(&self) -> [(&'static str, &'static str); 2] {
        [("summary", self.summary), ("runbook", self.runbook)]
    }
}

/// Every rule group, in the order Prometheus evaluates them (objectives first, so an alert reads
/// the objectives recorded at the same evaluation).
pub(crate) fn groups(catalog: &Catalog) -> Vec<RuleGroup> {
    vec![
        objectives(catalog),
        lag(catalog),
        dead_letters(),
        consumers(),
        ingest(),
    ]
}

fn objectives(catalog: &Catalog) -> RuleGroup {
    let mut rules = Vec::new();
    for group in catalog.topology().groups.values() {
        rules.push(Rule::Record {
            record: TIME_LAG_OBJECTIVE,
            expr: format!("vector({})", group.time_lag_objective.as_secs_f64()),
            labels: vec![("group", group.name.clone())],
        });
        rules.push(Rule::Record {
            record: LAG_THRESHOLD,
            expr: format!("vector({})", group.lag_threshold),
            labels: vec![("group", group.name.clone())],
        });
    }
    RuleGroup {
        name: "circulatory-objectives",
        file: "objectives",
        rules,
    }
}

/// `consumergroup` (the group id on the cluster, namespace included) as `group` (the name in
/// `topics.yaml`).
fn group_from_consumergroup(expr: &str, catalog: &Catalog) -> String {
    let pattern = match catalog.namespace() {
        Some(namespace) => format!("{}\\\\.(.*)", namespace.replace('.', "\\\\.")),
        None => "(.*)".to_string(),
    };
    format!(r#"label_replace({expr}, "group", "$1", "consumergroup", "{pattern}")"#)
}

fn lag(catalog: &Catalog) -> RuleGroup {
    let members = group_from_consumergroup(
        "max by (consumergroup) (kafka_consumergroup_members)",
        catalog,
    );
    RuleGroup {
        name: "circulatory-lag",
        file: "lag",
        rules: vec![
            Rule::Alert(Alert {
                name: "CirculatoryLagGrowing",
                expr: format!(
                    r#"(sum by (group) (deriv(circulatory_group_lag_records{{role="main"}}[5m])) > 0) and on (group) (sum by (group) (circulatory_group_lag_records{{role="main"}}) > on (group) {LAG_THRESHOLD})"#
                ),
                hold: Some("10m"),
                severity: "warning",
                summary: "{{ $labels.group }}: records waiting on its main topics above its lag threshold and growing for 10 minutes",
                runbook: "The group consumes more slowly than events arrive (retry-topic lag is not counted): check its handler p99, breakers and replicas, scale it out (at most one replica per partition) or fix the slow dependency; console: /groups/{{ $labels.group }}",
            }),
            Rule::Alert(Alert {
                name: "CirculatoryTimeLagAboveObjective",
                expr: format!(
                    "max by (group) (kafka_consumergroup_group_max_lag_seconds) > on (group) {TIME_LAG_OBJECTIVE}"
                ),
                hold: Some("2m"),
                severity: "critical",
                summary: "{{ $labels.group }}: the oldest record waiting on its main topics is older than its time-lag objective",
                runbook: "Events reach the group later than topics.yaml's time_lag_objective allows: look for stalled or paused partitions, an open breaker or a slow handler, then scale out or fix the dependency; console: /groups/{{ $labels.group }}",
            }),
            Rule::Alert(Alert {
                name: "CirculatoryLagWithoutMembers",
                expr: format!(
                    "(sum by (group) (circulatory_group_lag_records) > 0) unless on (group) ({members} > 0) unless on (group) (max by (group) (circulatory_group_stopped) == 1)"
                ),
                hold: Some("5m"),
                severity: "critical",
                summary: "{{ $labels.group }}: records are waiting and the group has no member in Kafka",
                runbook: "Nothing consumes the group's topics: its processes are down, crash-looping or cannot reach Kafka; check their logs and restart them; console: /groups/{{ $labels.group }}",
            }),
        ],
    }
}

fn dead_letters() -> RuleGroup {
    RuleGroup {
        name: "circulatory-dead-letters",
        file: "dead-letters",
        rules: vec![
            Rule::Alert(Alert {
                name: "CirculatoryDeadLettersArriving",
                // Records ever written to the DLQ topic: a gauge that only grows, except when
                // the topic is recreated, which `increase` takes for a reset, not a drop.
                expr: "sum by (group) (increase(circulatory_dlq_records[5m])) > 0".into(),
                hold: None,
                severity: "warning",
                summary: "{{ $labels.group }}: events are being dead-lettered",
                runbook: "Events failed every attempt of the retry ladder or failed permanently: read their errors, fix the cause, then replay or discard them; console: /dead-letters?group={{ $labels.group }}",
            }),
            Rule::Alert(Alert {
                name: "CirculatoryDeadLetterUnresolved",
                expr: "(max by (group) (circulatory_dlq_oldest_age_seconds) > 86400) and on (group) (max by (group) (circulatory_dlq_open) > 0)".into(),
                hold: None,
                severity: "warning",
                summary: "{{ $labels.group }}: a dead letter has been open for more than 24 hours",
                runbook: "Nobody has replayed or discarded the group's oldest dead letter: decide for each open one (replay once the cause is fixed, or discard); console: /dead-letters?group={{ $labels.group }}",
            }),
        ],
    }
}

fn consumers() -> RuleGroup {
    RuleGroup {
        name: "circulatory-consumers",
        file: "consumers",
        rules: vec![
            Rule::Alert(Alert {
                name: "CirculatoryBreakerOpen",
                expr: "max by (group, dependency) (circulatory_group_breaker_open) == 1".into(),
                hold: Some("5m"),
                severity: "critical",
                summary: "{{ $labels.group }}: the circuit breaker on {{ $labels.dependency }} has been open for 5 minutes",
                runbook: "The group stopped calling {{ $labels.dependency }} after repeated failures and its partitions wait: restore the dependency, the breaker closes by itself; console: /groups/{{ $labels.group }}",
            }),
            Rule::Alert(Alert {
                name: "CirculatoryPartitionsPaused",
                expr: "(sum by (group, reason) (circulatory_group_paused_partitions) > 0) unless on (group) (max by (group) (circulatory_group_operator_paused) == 1)".into(),
                hold: Some("15m"),
                severity: "warning",
                summary: "{{ $labels.group }}: partitions paused ({{ $labels.reason }}) for 15 minutes",
                runbook: "The group holds partitions without consuming them (not by an operator): look at what the reason points to (backpressure, breaker, a stuck handler) and at its in-flight events; console: /groups/{{ $labels.group }}",
            }),
            Rule::Alert(Alert {
                name: "CirculatoryGroupStopped",
                expr: "max by (group) (circulatory_group_stopped) == 1".into(),
                hold: None,
                severity: "critical",
                summary: "{{ $labels.group }}: stopped by its flood guard",
                runbook: "Too many events failed in a row and the group stopped consuming rather than dead-letter them all: fix the cause (a bad deploy, a broken dependency, a poison event), then resume it; console: /groups/{{ $labels.group }}",
            }),
        ],
    }
}

fn ingest() -> RuleGroup {
    let job = INGEST.0;
    // The API's own routes: probes and scrapes are not traffic.
    let api = format!(r#"job="{job}",route!~"/healthz|/readyz|/metrics""#);
    let requests = format!("sum(rate(circulatory_http_requests_total{{{api}}}[5m]))");
    RuleGroup {
        name: "circulatory-ingest",
        file: "ingest",
        rules: vec![
            Rule::Alert(Alert {
                name: "CirculatoryIngestServerErrors",
                expr: format!(
                    r#"sum(rate(circulatory_http_requests_total{{{api},status=~"5..",status!="503"}}[5m])) / {requests} > 0.01"#
                ),
                hold: Some("5m"),
                severity: "critical",
                summary: "ingest: more than 1% of requests fail with a server error (5xx other than 503)",
                runbook: "The ingest API fails requests it should serve (a bug or a broken dependency, not load): read its logs by correlation_id and roll back a bad deploy; console: / and Grafana's Ingest panels",
            }),
            Rule::Alert(Alert {
                name: "CirculatoryIngestUnavailable",
                expr: format!(
                    r#"sum(rate(circulatory_http_requests_total{{{api},status="503"}}[5m])) / {requests} > 0.05"#
                ),
                hold: Some("5m"),
                severity: "warning",
                summary: "ingest: more than 5% of requests answered 503",
                runbook: "Ingest sheds load or cannot reach Kafka, the registry, Redis or PostgreSQL (clients retry after Retry-After): check its /readyz and those dependencies, scale ingest out if it is at capacity; console: /",
            }),
            Rule::Alert(Alert {
                name: "CirculatoryProduceLatencyHigh",
                expr: format!(
                    r#"histogram_quantile(0.99, sum by (le) (rate(circulatory_produce_duration_seconds_bucket{{job="{job}"}}[5m]))) > 0.5"#
                ),
                hold: Some("10m"),
                severity: "warning",
                summary: "ingest: p99 of encode, produce and broker acknowledgement above 500 ms",
                runbook: "Kafka acknowledges slowly (a broker down or out of the ISR, disk or network saturation) or the producer queue is full: check the brokers and under-replicated partitions; past the ack timeout clients get 503 kafka_unconfirmed; console: /",
            }),
        ],
    }
}

/// Every expression, recorded series and alerts alike.
pub(crate) fn exprs(groups: &[RuleGroup]) -> impl Iterator<Item = &str> {
    groups.iter().flat_map(|g| &g.rules).map(|rule| match rule {
        Rule::Record { expr, .. } => expr.as_str(),
        Rule::Alert(alert) => alert.expr.as_str(),
    })
}

pub(crate) fn document(groups: &[RuleGroup]) -> Value {
    let groups: Vec<Value> = groups
        .iter()
        .map(|group| {
            let rules: Vec<Value> = group.rules.iter().map(rule).collect();
            json!({"name": group.name, "rules": rules})
        })
        .collect();
    json!({ "groups": groups })
}

fn rule(rule: &Rule) -> Value {
    match rule {
        Rule::Record {
            record,
            expr,
            labels,
        } => {
            let labels: Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({"record": record, "expr": expr, "labels": labels})
        }
        Rule::Alert(alert) => {
            let mut value = json!({"alert": alert.name, "expr": alert.expr});
            if let Some(hold) = alert.hold {
                value["for"] = json!(hold);
            }
            value["labels"] = json!({"severity": alert.severity});
            let annotations: Map<String, Value> = alert
                .annotations()
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            value["annotations"] = Value::Object(annotations);
            value
        }
    }
}
