//! `circ deploy monitoring`: what Prometheus and Grafana need to watch the pipeline, derived from
//! the catalog so that a group added to `topics.yaml` is scraped, alerted on and charted without
//! anyone writing YAML.
//!
//! It writes, under `--out` (compose/ by default):
//! - `prometheus/prometheus.yml`: one scrape job per process compose runs (ingest, gateway,
//!   console, each consumer group), the group's name as the `group` target label;
//! - `prometheus/rules.yml`: each group's objectives as recorded series, then the alerting rules,
//!   one rule group per concern;
//! - `prometheus/tests/*.yml`: `promtool test rules` cases, one that fires each alert and one that
//!   does not;
//! - `grafana/provisioning/`: the Prometheus data source and the dashboard provider;
//! - `grafana/dashboards/circulatory.json`: the dashboard.
//!
//! The series read come from the processes' own `/metrics` (names as they expose them today) and
//! from the console's cluster-level `/metrics` (lag, members, time lag, dead letters, verdicts).

mod grafana;
mod prometheus;
mod rule_tests;
mod rules;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use circulatory::catalog::Catalog;
use serde_json::Value;

use crate::cli::MonitoringArgs;
use crate::commands::Failure;
use crate::commands::Outcome;

/// One file of the output: its path under `--out` and its text.
pub(crate) struct File {
    pub(crate) path: PathBuf,
    pub(crate) text: String,
}

/// The folders this command owns under `--out`, and the kind of file it writes in each: a
/// file of that kind there that it no longer writes (a removed group's) is deleted.
const OWNED: [(&str, &str); 5] = [
    ("prometheus", "yml"),
    ("prometheus/tests", "yml"),
    ("grafana/provisioning/datasources", "yml"),
    ("grafana/provisioning/dashboards", "yml"),
    ("grafana/dashboards", "json"),
];

/// Names of the series the rules and the dashboard read start with one of these; anything else
/// in an expression is a function, a keyword or a recorded series.
pub(crate) const METRIC_PREFIXES: [&str; 3] = ["kafka_", "circulatory_", "circ_gateway_"];

pub(crate) fn run(catalog: &Catalog, args: &MonitoringArgs) -> Outcome {
    let groups = rules::groups(catalog);
    let dashboard = grafana::dashboard(catalog);
    if args.list_metrics {
        let exprs = rules::exprs(&groups).chain(grafana::exprs(&dashboard));
        for name in metric_names(exprs) {
            println!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut files = vec![
        yaml("prometheus/prometheus.yml", &prometheus::config(catalog))?,
        yaml("prometheus/rules.yml", &rules::document(&groups))?,
    ];
    for (name, document) in rule_tests::documents(catalog, &groups) {
        files.push(yaml(&format!("prometheus/tests/{name}.yml"), &document)?);
    }
    files.push(yaml(
        "grafana/provisioning/datasources/prometheus.yml",
        &grafana::datasources(),
    )?);
    files.push(yaml(
        "grafana/provisioning/dashboards/circulatory.yml",
        &grafana::providers(),
    )?);
    files.push(File {
        path: "grafana/dashboards/circulatory.json".into(),
        text: serde_json::to_string_pretty(&dashboard)? + "\n",
    });
    write(&args.out, &files)?;
    eprintln!(
        "wrote {} files to {}/prometheus and {}/grafana \
         (docker compose -f compose/docker-compose.yml up -d prometheus grafana)",
        files.len(),
        args.out.display(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

const HEADER: &str =
    "# Written by `circ deploy monitoring` from topics.yaml; edit that and run it again.\n";

fn yaml(path: &str, document: &Value) -> Result<File, Failure> {
    Ok(File {
        path: path.into(),
        text: format!("{HEADER}{}", serde_yaml::to_string(document)?),
    })
}

/// Writes the files, first removing the files of the owned kinds in the owned folders.
fn write(out: &Path, files: &[File]) -> Result<(), Failure> {
    for (folder, extension) in OWNED {
        if let Ok(entries) = std::fs::read_dir(out.join(folder)) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() && path.extension().is_some_and(|e| e == extension) {
                    std::fs::remove_file(path)?;
                }
            }
        }
    }
    for file in files {
        let path = out.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &file.text)?;
    }
    Ok(())
}

/// Every metric name the PromQL expressions read, sorted: identifiers outside string literals,
/// label matchers, ranges and the label lists of `by`, `without`, `on`, `ignoring`,
/// `group_left` and `group_right`, kept when they start with a [`METRIC_PREFIXES`] prefix.
/// Crude on purpose: it serves to check the names against what the processes expose.
pub(crate) fn metric_names<'a>(exprs: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut names = BTreeSet::new();
    for expr in exprs {
        let chars: Vec<char> = outside_selectors(expr).chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !(c.is_ascii_alphabetic() || c == '_' || c == ':') {
                i += 1;
                continue;
            }
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if LABEL_LISTS.contains(&word.as_str()) {
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '(' {
                    while j < chars.len() && chars[j] != ')' {
                        j += 1;
                    }
                    i = j;
                }
            } else if METRIC_PREFIXES.iter().any(|p| word.starts_with(p)) {
                names.insert(word);
            }
        }
    }
    names
}

/// `expr` with string literals and the insides of `{...}` and `[...]` blanked out.
fn outside_selectors(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut depth = 0usize;
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            out.push(' ');
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                quote = Some(c);
                out.push(' ');
            }
            '{' | '[' => {
                depth += 1;
                out.push(' ');
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                out.push(' ');
            }
            _ if depth > 0 => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    #[test]
    fn metric_names_are_the_series_an_expression_reads() {
        let names = metric_names([
            r#"sum by (group, circulatory_x) (rate(circulatory_events_processed_total{group=~"$group"}[$__rate_interval]))"#,
            r#"label_replace(max by (consumergroup) (kafka_consumergroup_members), "group", "circulatory_not_a_metric", "consumergroup", "(.*)") == 0"#,
            r#"max by (group) (kafka_consumergroup_group_max_lag_seconds) > on (group) circulatory:time_lag_objective_seconds"#,
            r#"histogram_quantile(0.99, sum by (le) (rate(circ_gateway_delivery_latency_seconds_bucket[5m])))"#,
            r#"circulatory_dlq_open and on(group) group_left(circulatory_y) up{job='circulatory_z'}"#,
        ]);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "circ_gateway_delivery_latency_seconds_bucket",
                "circulatory_dlq_open",
                "circulatory_events_processed_total",
                "kafka_consumergroup_group_max_lag_seconds",
                "kafka_consumergroup_members",
            ]
        );
    }
}
