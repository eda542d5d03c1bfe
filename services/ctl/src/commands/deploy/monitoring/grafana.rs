//! Grafana: the Prometheus data source, a provider loading the dashboards folder, and the
//! Circulatory dashboard (groups, ingest, gateway).
//!
//! Panels name their data source `${DS_PROMETHEUS}`: a data-source variable of that name when
//! the dashboard is provisioned, the `__inputs` placeholder Grafana asks to fill when the file is
//! imported elsewhere. The `uid` never changes, so links to the dashboard survive regeneration.

use circulatory::catalog::Catalog;
use serde_json::{json, Value};

use super::prometheus::{GATEWAY, INGEST};
use super::rules::TIME_LAG_OBJECTIVE;

pub(crate) const UID: &str = "circulatory";
/// Grafana 12's dashboard schema.
const SCHEMA_VERSION: u32 = 41;
/// The provisioned data source: compose's Prometheus.
const DATASOURCE_UID: &str = "prometheus";
/// Where compose mounts `grafana/dashboards`.
const DASHBOARDS_DIR: &str = "/etc/grafana/dashboards";

pub(crate) fn datasources() -> Value {
    json!({
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "type": "prometheus",
            "uid": DATASOURCE_UID,
            "access": "proxy",
            "url": "http://prometheus:9090",
            "isDefault": true,
            "editable": false,
            "jsonData": {"timeInterval": "15s"},
        }],
    })
}

pub(crate) fn providers() -> Value {
    json!({
        "apiVersion": 1,
        "providers": [{
            "name": "circulatory",
            "folder": "Circulatory",
            "type": "file",
            "disableDeletion": true,
            "allowUiUpdates": false,
            "updateIntervalSeconds": 30,
            "options": {"path": DASHBOARDS_DIR},
        }],
    })
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"})
}

/// One query of a panel: a PromQL expression and its legend.
struct Query {
    expr: String,
    legend: &'static str,
}

fn query(expr: impl Into<String>, legend: &'static str) -> Query {
    Query {
        expr: expr.into(),
        legend,
    }
}

struct Panel {
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<Query>,
    /// A table of the current values instead of a time series.
    table: bool,
}

fn chart(
    title: &'static str,
    description: &'static str,
    unit: &'static str,
    queries: Vec<Query>,
) -> Panel {
    Panel {
        title,
        description,
        unit,
        queries,
        table: false,
    }
}

fn panels() -> Vec<Panel> {
    let group = r#"group=~"$group""#;
    let rate = |metric: &str| format!("rate({metric}{{{group}}}[$__rate_interval])");
    let api = format!(r#"job="{}",route!~"/healthz|/readyz|/metrics""#, INGEST.0);
    let gateway = format!(r#"job="{}""#, GATEWAY.0);
    vec![
        chart(
            "Throughput",
            "Events handled per second by each group (successes, and handler failures before routing).",
            "ops",
            vec![
                query(
                    format!("sum by (group) ({})", rate("circulatory_events_processed_total")),
                    "{{group}}",
                ),
                query(
                    format!("sum by (group) ({})", rate("circulatory_events_failed_total")),
                    "{{group}} failed",
                ),
            ],
        ),
        chart(
            "Lag",
            "Records waiting, by topic role: main topics, retry topics (waiting until due, by design) and replays.",
            "short",
            vec![query(
                format!("sum by (group, role) (circulatory_group_lag_records{{{group}}})"),
                "{{group}} {{role}}",
            )],
        ),
        chart(
            "Time lag",
            "Age of the oldest record waiting on each group's main topics, and the group's time_lag_objective from topics.yaml.",
            "s",
            vec![
                query(
                    format!("max by (group) (kafka_consumergroup_group_max_lag_seconds{{{group}}})"),
                    "{{group}}",
                ),
                query(
                    format!("{TIME_LAG_OBJECTIVE}{{{group}}}"),
                    "{{group}} objective",
                ),
            ],
        ),
        chart(
            "Retries and dead letters",
            "Events sent to a retry topic and to the dead-letter topic, per second.",
            "ops",
            vec![
                query(
                    format!("sum by (group) ({})", rate("circulatory_events_retried_total")),
                    "{{group}} retried",
                ),
                query(
                    format!(
                        "sum by (group) ({})",
                        rate("circulatory_events_dead_lettered_total")
                    ),
                    "{{group}} dead-lettered",
                ),
            ],
        ),
        chart(
            "Open dead letters",
            "Dead letters neither replayed nor discarded (console: /dead-letters?group=<group>).",
            "short",
            vec![query(
                format!("sum by (group) (circulatory_dlq_open{{{group}}})"),
                "{{group}}",
            )],
        ),
        chart(
            "Handler p99",
            "99th percentile of one handler call (decode to effects).",
            "s",
            vec![query(
                format!(
                    "histogram_quantile(0.99, sum by (group, le) ({}))",
                    rate("circulatory_handler_duration_seconds_bucket")
                ),
                "{{group}}",
            )],
        ),
        chart(
            "Breakers and paused partitions",
            "Open circuit breakers (1 while open) and partitions held without consuming, by reason.",
            "short",
            vec![
                query(
                    format!(
                        "max by (group, dependency) (circulatory_group_breaker_open{{{group}}})"
                    ),
                    "{{group}} breaker {{dependency}}",
                ),
                query(
                    format!(
                        "sum by (group, reason) (circulatory_group_paused_partitions{{{group}}})"
                    ),
                    "{{group}} paused ({{reason}})",
                ),
            ],
        ),
        Panel {
            title: "Group status",
            description: "Each group's current verdict (ok, idle, lagging, stalled, no_members, no_heartbeat, stopped, paused) and the instances heartbeating.",
            unit: "short",
            queries: vec![
                query(
                    format!("max by (group, status) (circulatory_group_status{{{group}}}) == 1"),
                    "{{group}}: {{status}}",
                ),
                query(
                    format!("max by (group) (circulatory_group_instances{{{group}}})"),
                    "{{group}} instances",
                ),
            ],
            table: true,
        },
        chart(
            "Ingest requests by status",
            "API requests per second (probes and scrapes left out).",
            "reqps",
            vec![query(
                format!(
                    "sum by (status) (rate(circulatory_http_requests_total{{{api}}}[$__rate_interval]))"
                ),
                "{{status}}",
            )],
        ),
        chart(
            "Ingest latency p99 by status",
            "99th percentile of API requests by status, and of encode + produce + broker acknowledgement per event.",
            "s",
            vec![
                query(
                    format!(
                        "histogram_quantile(0.99, sum by (status, le) (rate(circulatory_http_request_duration_seconds_bucket{{{api}}}[$__rate_interval])))"
                    ),
                    "{{status}}",
                ),
                query(
                    format!(
                        r#"histogram_quantile(0.99, sum by (le) (rate(circulatory_produce_duration_seconds_bucket{{job="{}"}}[$__rate_interval])))"#,
                        INGEST.0
                    ),
                    "produce",
                ),
            ],
        ),
        chart(
            "Gateway connections",
            "Open WebSocket and SSE connections.",
            "short",
            vec![query(
                format!("sum by (transport) (circ_gateway_connections{{{gateway}}})"),
                "{{transport}}",
            )],
        ),
        chart(
            "Gateway delivery latency",
            "Publish (the message's time) to written on the client socket.",
            "s",
            vec![
                query(
                    format!(
                        "histogram_quantile(0.5, sum by (le) (rate(circ_gateway_delivery_latency_seconds_bucket{{{gateway}}}[$__rate_interval])))"
                    ),
                    "p50",
                ),
                query(
                    format!(
                        "histogram_quantile(0.99, sum by (le) (rate(circ_gateway_delivery_latency_seconds_bucket{{{gateway}}}[$__rate_interval])))"
                    ),
                    "p99",
                ),
            ],
        ),
        chart(
            "Gateway messages",
            "Messages written to clients per second, by channel scope, and those dropped, by reason.",
            "ops",
            vec![
                query(
                    format!(
                        "sum by (scope) (rate(circ_gateway_messages_delivered_total{{{gateway}}}[$__rate_interval]))"
                    ),
                    "delivered {{scope}}",
                ),
                query(
                    format!(
                        "sum by (reason) (rate(circ_gateway_messages_dropped_total{{{gateway}}}[$__rate_interval]))"
                    ),
                    "dropped {{reason}}",
                ),
            ],
        ),
    ]
}

fn panel(id: usize, panel: &Panel) -> Value {
    const WIDTH: usize = 12;
    const HEIGHT: usize = 8;
    let index = id - 1;
    let targets: Vec<Value> = panel
        .queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut target = json!({
                "datasource": datasource(),
                "refId": ((b'A' + i as u8) as char).to_string(),
                "expr": q.expr,
                "legendFormat": q.legend,
            });
            if panel.table {
                target["instant"] = json!(true);
                target["range"] = json!(false);
                target["format"] = json!("table");
            }
            target
        })
        .collect();
    json!({
        "id": id,
        "type": if panel.table { "table" } else { "timeseries" },
        "title": panel.title,
        "description": panel.description,
        "datasource": datasource(),
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": (index % 2) * WIDTH, "y": (index / 2) * HEIGHT},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": if panel.table {
            json!({"showHeader": true})
        } else {
            json!({
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
                "tooltip": {"mode": "multi", "sort": "desc"},
            })
        },
        "targets": targets,
    })
}

pub(crate) fn dashboard(catalog: &Catalog) -> Value {
    let panels: Vec<Value> = panels()
        .iter()
        .enumerate()
        .map(|(i, p)| panel(i + 1, p))
        .collect();
    // The topology's groups, so that the variable lists them before its first query.
    let mut options = vec![json!({"text": "All", "value": "$__all", "selected": true})];
    options.extend(
        catalog
            .topology()
            .groups
            .keys()
            .map(|name| json!({"text": name, "value": name, "selected": false})),
    );
    let variable_query = "label_values(circulatory_group_lag_records, group)";
    json!({
        "__inputs": [{
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": "The Prometheus that scrapes Circulatory (compose/prometheus/prometheus.yml).",
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "12.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
            {"type": "panel", "id": "table", "name": "Table", "version": ""},
        ],
        "uid": UID,
        "title": "Circulatory",
        "description": "Written by `circ deploy monitoring` from topics.yaml: consumer groups, ingest API, realtime gateway.",
        "tags": ["circulatory", "kafka", "events"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": false,
        "graphTooltip": 1,
        "timezone": "browser",
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            },
            {
                "name": "group",
                "label": "Group",
                "type": "query",
                "datasource": datasource(),
                "query": variable_query,
                "definition": variable_query,
                "refresh": 2,
                "multi": true,
                "includeAll": true,
                "sort": 1,
                "current": {"text": ["All"], "value": ["$__all"]},
                "options": options,
                "hide": 0,
            },
        ]},
        "panels": panels,
    })
}

/// Every expression of the dashboard's panels and variables.
pub(crate) fn exprs(dashboard: &Value) -> impl Iterator<Item = &str> {
    let panels = dashboard["panels"].as_array().into_iter().flatten();
    let targets = panels.flat_map(|p| p["targets"].as_array().into_iter().flatten());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query");
    targets
        .filter_map(|t| t["expr"].as_str())
        .chain(variables.filter_map(|v| v["query"].as_str()))
}
