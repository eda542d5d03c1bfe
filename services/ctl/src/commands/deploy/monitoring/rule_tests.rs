//! `tests/*.yml`: `promtool test rules` files, one per rule group, with for every alert a case
//! that fires it and one that does not (often with a near miss: just under a threshold, held
//! for less than `for`, or excluded on purpose). The objectives get a check of every group's
//! recorded values, and the time-lag alert is tried on every group at and just past its own
//! objective.

use circulatory::catalog::Catalog;
use circulatory::topology::Group;
use serde_json::{json, Map, Value};

use super::prometheus::INGEST;
use super::rules::{Alert, Rule, RuleGroup, LAG_THRESHOLD, TIME_LAG_OBJECTIVE};

/// The labels of one expected alert, besides `severity`.
type Labels = Vec<(&'static str, String)>;

/// Input series and what is expected of one alert at one instant.
struct Case {
    what: String,
    /// (series, values in promtool's expanding notation), one sample a minute.
    series: Vec<(String, String)>,
    eval_time: &'static str,
    /// The alerts firing at `eval_time`; none for a quiet case.
    fires: Vec<Labels>,
}

fn series(name: impl Into<String>, values: impl Into<String>) -> (String, String) {
    (name.into(), values.into())
}

fn group(name: &str) -> Labels {
    vec![("group", name.to_string())]
}

/// The test files by name (without `.yml`), in the order of the rule groups.
pub(crate) fn documents(catalog: &Catalog, groups: &[RuleGroup]) -> Vec<(&'static str, Value)> {
    // A topology without groups has nothing to write cases with (nor much to alert on).
    let examples = Examples::of(catalog);
    groups
        .iter()
        .map(|rule_group| {
            let mut tests = Vec::new();
            for rule in &rule_group.rules {
                if let (Rule::Alert(alert), Some(examples)) = (rule, &examples) {
                    for case in cases(examples, alert) {
                        tests.push(test(alert, case));
                    }
                }
            }
            if rule_group.name == "circulatory-objectives" {
                tests.push(objectives(catalog));
            }
            let document = json!({
                "rule_files": ["../rules.yml"],
                "evaluation_interval": "1m",
                "tests": tests,
            });
            (rule_group.file, document)
        })
        .collect()
}

/// The groups the cases are written with: a main one (`payments` when there is one) and
/// another, with what the catalog says of them.
struct Examples<'a> {
    catalog: &'a Catalog,
    main: &'a Group,
    other: String,
}

impl<'a> Examples<'a> {
    fn of(catalog: &'a Catalog) -> Option<Examples<'a>> {
        let groups = &catalog.topology().groups;
        let main = groups.get("payments").or_else(|| groups.values().next())?;
        let other = groups
            .keys()
            .find(|name| **name != main.name)
            .cloned()
            .unwrap_or_else(|| format!("{}-other", main.name));
        Some(Examples {
            catalog,
            main,
            other,
        })
    }

    /// The group id on the cluster (the `consumergroup` label).
    fn consumer_group(&self, group: &str) -> String {
        self.catalog.topic_name(group)
    }
}

fn cases(examples: &Examples, alert: &Alert) -> Vec<Case> {
    let main = examples.main.name.as_str();
    let other = examples.other.as_str();
    let lag = |group: &str, role: &str, values: String| {
        series(
            format!(r#"circulatory_group_lag_records{{group="{group}",role="{role}"}}"#),
            values,
        )
    };
    let by_group = |metric: &str, group: &str, values: &str| {
        series(format!(r#"{metric}{{group="{group}"}}"#), values)
    };
    match alert.name {
        "CirculatoryLagGrowing" => {
            let threshold = examples.main.lag_threshold;
            let step = f64::from(threshold) / 20.0;
            vec![
                Case {
                    what: "main-topic lag above the lag threshold grows for 10 minutes".into(),
                    series: vec![
                        lag(main, "main", format!("{}+5x20", threshold + 1)),
                        lag(other, "retry", "0+1000x20".into()),
                    ],
                    eval_time: "15m",
                    fires: vec![group(main)],
                },
                Case {
                    what: "flat lag, growing retry-topic lag".into(),
                    series: vec![
                        lag(main, "main", format!("{}x20", threshold * 5)),
                        lag(other, "retry", "0+1000x20".into()),
                    ],
                    eval_time: "15m",
                    fires: vec![],
                },
                Case {
                    what: "growing lag still under the lag threshold".into(),
                    series: vec![lag(main, "main", format!("0+{step}x20"))],
                    eval_time: "15m",
                    fires: vec![],
                },
            ]
        }
        "CirculatoryTimeLagAboveObjective" => {
            let at = |extra: f64| -> Vec<(String, String)> {
                examples
                    .catalog
                    .topology()
                    .groups
                    .values()
                    .map(|g| {
                        let objective = g.time_lag_objective.as_secs_f64();
                        by_group(
                            "kafka_consumergroup_group_max_lag_seconds",
                            &g.name,
                            &format!("{}x10", objective + extra),
                        )
                    })
                    .collect()
            };
            let every_group = examples
                .catalog
                .topology()
                .groups
                .keys()
                .map(|name| group(name))
                .collect();
            vec![
                Case {
                    what: "every group one second past its own objective".into(),
                    series: at(1.0),
                    eval_time: "5m",
                    fires: every_group,
                },
                Case {
                    what: "every group exactly at its own objective".into(),
                    series: at(0.0),
                    eval_time: "5m",
                    fires: vec![],
                },
            ]
        }
        "CirculatoryLagWithoutMembers" => {
            let members = |group: &str, values: &str| {
                series(
                    format!(
                        r#"kafka_consumergroup_members{{consumergroup="{}"}}"#,
                        examples.consumer_group(group)
                    ),
                    values,
                )
            };
            vec![
                Case {
                    what: "lag and no member; a stopped group is not counted".into(),
                    series: vec![
                        lag(main, "main", "5x10".into()),
                        members(main, "0x10"),
                        lag(other, "retry", "5x10".into()),
                        members(other, "0x10"),
                        by_group("circulatory_group_stopped", other, "1x10"),
                    ],
                    eval_time: "6m",
                    fires: vec![group(main)],
                },
                Case {
                    what: "lag with members; no members and no lag".into(),
                    series: vec![
                        lag(main, "main", "5x10".into()),
                        members(main, "2x10"),
                        lag(other, "main", "0x10".into()),
                        members(other, "0x10"),
                    ],
                    eval_time: "6m",
                    fires: vec![],
                },
            ]
        }
        "CirculatoryDeadLettersArriving" => vec![
            Case {
                what: "a record written to the DLQ topic".into(),
                series: vec![by_group(
                    "circulatory_dlq_records",
                    main,
                    "10 10 10 11 11 11",
                )],
                eval_time: "4m",
                fires: vec![group(main)],
            },
            Case {
                what: "no new dead letter; a recreated, empty DLQ topic".into(),
                series: vec![
                    by_group("circulatory_dlq_records", main, "10x10"),
                    by_group("circulatory_dlq_records", other, "10 10 10 0 0 0"),
                ],
                eval_time: "4m",
                fires: vec![],
            },
        ],
        "CirculatoryDeadLetterUnresolved" => vec![
            Case {
                what: "an open dead letter older than 24 hours".into(),
                series: vec![
                    by_group("circulatory_dlq_oldest_age_seconds", main, "90000x5"),
                    by_group("circulatory_dlq_open", main, "3x5"),
                ],
                eval_time: "1m",
                fires: vec![group(main)],
            },
            Case {
                what: "an old one no longer open; a young open one".into(),
                series: vec![
                    by_group("circulatory_dlq_oldest_age_seconds", main, "90000x5"),
                    by_group("circulatory_dlq_open", main, "0x5"),
                    by_group("circulatory_dlq_oldest_age_seconds", other, "3600x5"),
                    by_group("circulatory_dlq_open", other, "2x5"),
                ],
                eval_time: "1m",
                fires: vec![],
            },
        ],
        "CirculatoryBreakerOpen" => {
            let breaker = |dependency: &str, values: &str| {
                series(
                    format!(
                        r#"circulatory_group_breaker_open{{group="{main}",dependency="{dependency}"}}"#
                    ),
                    values,
                )
            };
            vec![
                Case {
                    what: "open for 6 minutes".into(),
                    series: vec![breaker("postgres", "1x10"), breaker("redis", "0x10")],
                    eval_time: "6m",
                    fires: vec![vec![
                        ("dependency", "postgres".to_string()),
                        ("group", main.to_string()),
                    ]],
                },
                Case {
                    what: "open for 4 minutes".into(),
                    series: vec![
                        breaker("postgres", "0 0 0 0 0 0 1 1 1 1 1"),
                        breaker("redis", "0x10"),
                    ],
                    eval_time: "10m",
                    fires: vec![],
                },
            ]
        }
        "CirculatoryPartitionsPaused" => {
            let paused = |group: &str, reason: &str, values: &str| {
                series(
                    format!(
                        r#"circulatory_group_paused_partitions{{group="{group}",reason="{reason}"}}"#
                    ),
                    values,
                )
            };
            vec![
                Case {
                    what: "paused by the group for 16 minutes".into(),
                    series: vec![
                        paused(main, "backpressure", "4x20"),
                        by_group("circulatory_group_operator_paused", main, "0x20"),
                    ],
                    eval_time: "16m",
                    fires: vec![vec![
                        ("group", main.to_string()),
                        ("reason", "backpressure".to_string()),
                    ]],
                },
                Case {
                    what: "paused by an operator; paused for 10 minutes".into(),
                    series: vec![
                        paused(main, "operator", "6x20"),
                        by_group("circulatory_group_operator_paused", main, "1x20"),
                        paused(other, "breaker", "0x5 3x10"),
                    ],
                    eval_time: "16m",
                    fires: vec![],
                },
            ]
        }
        "CirculatoryGroupStopped" => vec![
            Case {
                what: "stopped by the flood guard".into(),
                series: vec![by_group("circulatory_group_stopped", main, "0 1 1")],
                eval_time: "2m",
                fires: vec![group(main)],
            },
            Case {
                what: "running; resumed".into(),
                series: vec![
                    by_group("circulatory_group_stopped", main, "0x5"),
                    by_group("circulatory_group_stopped", other, "1 0 0"),
                ],
                eval_time: "2m",
                fires: vec![],
            },
        ],
        "CirculatoryIngestServerErrors" => vec![
            Case {
                what: "2% of requests answered 500".into(),
                series: vec![
                    requests("/v1/events", "202", "0+1000x10"),
                    requests("/v1/events", "500", "0+20x10"),
                ],
                eval_time: "7m",
                fires: vec![vec![]],
            },
            Case {
                what: "0.5% answered 500; many 503s are not server errors here".into(),
                series: vec![
                    requests("/v1/events", "202", "0+1000x10"),
                    requests("/v1/events", "500", "0+5x10"),
                    requests("/v1/events", "503", "0+200x10"),
                ],
                eval_time: "7m",
                fires: vec![],
            },
        ],
        "CirculatoryIngestUnavailable" => vec![
            Case {
                what: "9% of requests answered 503".into(),
                series: vec![
                    requests("/v1/events", "202", "0+1000x10"),
                    requests("/v1/events", "503", "0+100x10"),
                ],
                eval_time: "7m",
                fires: vec![vec![]],
            },
            Case {
                what: "2% answered 503; an unready probe is not traffic".into(),
                series: vec![
                    requests("/v1/events", "202", "0+1000x10"),
                    requests("/v1/events", "503", "0+20x10"),
                    requests("/readyz", "503", "0+500x10"),
                ],
                eval_time: "7m",
                fires: vec![],
            },
        ],
        "CirculatoryProduceLatencyHigh" => {
            let buckets = |slow: &str, fast: &str| -> Vec<(String, String)> {
                [("0.25", fast), ("0.5", fast), ("1", slow), ("+Inf", slow)]
                    .into_iter()
                    .map(|(le, values)| {
                        series(
                            format!(
                                r#"circulatory_produce_duration_seconds_bucket{{job="{}",type="post.created",le="{le}"}}"#,
                                INGEST.0
                            ),
                            values,
                        )
                    })
                    .collect()
            };
            vec![
                Case {
                    what: "every produce between 0.5 s and 1 s".into(),
                    series: buckets("0+100x15", "0x15"),
                    eval_time: "12m",
                    fires: vec![vec![]],
                },
                Case {
                    what: "every produce under 0.25 s".into(),
                    series: buckets("0+100x15", "0+100x15"),
                    eval_time: "12m",
                    fires: vec![],
                },
            ]
        }
        _ => vec![],
    }
}

/// `circulatory_http_requests_total` of the ingest API, one sample a minute.
fn requests(route: &str, status: &str, values: &str) -> (String, String) {
    let method = if route.starts_with("/v1/") {
        "POST"
    } else {
        "GET"
    };
    series(
        format!(
            r#"circulatory_http_requests_total{{job="{}",route="{route}",method="{method}",status="{status}"}}"#,
            INGEST.0
        ),
        values,
    )
}

fn test(alert: &Alert, case: Case) -> Value {
    let input: Vec<Value> = case
        .series
        .iter()
        .map(|(name, values)| json!({"series": name, "values": values}))
        .collect();
    let expected: Vec<Value> = case
        .fires
        .iter()
        .map(|labels| {
            let mut all = labels.clone();
            all.push(("severity", alert.severity.to_string()));
            all.sort();
            let exp_labels: Map<String, Value> =
                all.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
            let exp_annotations: Map<String, Value> = alert
                .annotations()
                .iter()
                .map(|(k, template)| (k.to_string(), json!(expand(template, labels))))
                .collect();
            json!({"exp_labels": exp_labels, "exp_annotations": exp_annotations})
        })
        .collect();
    json!({
        "name": format!("{}: {}", alert.name, case.what),
        "interval": "1m",
        "input_series": input,
        "alert_rule_test": [{
            "eval_time": case.eval_time,
            "alertname": alert.name,
            "exp_alerts": expected,
        }],
    })
}

/// Every group's recorded objective and lag threshold, as `topics.yaml` declares them.
fn objectives(catalog: &Catalog) -> Value {
    let samples = |record: &str, value: &dyn Fn(&Group) -> f64| -> Vec<Value> {
        catalog
            .topology()
            .groups
            .values()
            .map(|g| json!({"labels": format!(r#"{record}{{group="{}"}}"#, g.name), "value": value(g)}))
            .collect()
    };
    json!({
        "name": "every group's objectives, as topics.yaml declares them",
        "interval": "1m",
        "input_series": [],
        "promql_expr_test": [
            {
                "expr": TIME_LAG_OBJECTIVE,
                "eval_time": "1m",
                "exp_samples": samples(TIME_LAG_OBJECTIVE, &|g| g.time_lag_objective.as_secs_f64()),
            },
            {
                "expr": LAG_THRESHOLD,
                "eval_time": "1m",
                "exp_samples": samples(LAG_THRESHOLD, &|g| f64::from(g.lag_threshold)),
            },
        ],
    })
}

/// An annotation as Prometheus renders it for an alert with these labels: the rules' templates
/// use `{{ $labels.<name> }}` and nothing else.
fn expand(template: &str, labels: &[(&str, String)]) -> String {
    const OPEN: &str = "{{ $labels.";
    const CLOSE: &str = " }}";
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after.find(CLOSE).unwrap_or(after.len());
        let name = &after[..end];
        let value = labels.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
        out.push_str(value.map_or("<no value>", String::as_str));
        rest = after.get(end + CLOSE.len()..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::expand;

    #[test]
    fn annotations_expand_the_alert_labels() {
        let labels = [
            ("group", "payments".to_string()),
            ("dependency", "postgres".to_string()),
        ];
        assert_eq!(
            expand(
                "{{ $labels.group }} on {{ $labels.dependency }}: /groups/{{ $labels.group }}",
                &labels
            ),
            "payments on postgres: /groups/payments"
        );
        assert_eq!(expand("{{ $labels.reason }}", &labels), "<no value>");
        assert_eq!(expand("no template", &labels), "no template");
    }
}
