//! `compose/prometheus/` and `compose/grafana/` are what `circ deploy monitoring` writes now, and
//! they hold together: Prometheus scrapes every process compose runs, under the names and ports
//! compose gives them; every consumer group has its objectives and is alerted on; every alert has
//! a summary, a runbook and unit tests that fire it and keep it quiet; `promtool` accepts the
//! config and the rules and runs those tests; the dashboard is a valid provisioned dashboard; and
//! every series read is one a process exposes.
//!
//! promtool is Debian's `prometheus` package (scripts/test installs it). Without it these checks
//! fail when `CI` is set and are skipped, loudly, otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use circulatory::catalog::{Catalog, CatalogPaths};
use serde::Deserialize;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn circ(args: &[&str], namespace: Option<&str>) -> Output {
    let root = root();
    let mut command = Command::new(env!("CARGO_BIN_EXE_circ"));
    command
        .args(["deploy", "monitoring"])
        .args(args)
        .arg("--topology")
        .arg(root.join("topics.yaml"))
        .arg("--schemas")
        .arg(root.join("schemas"))
        .env_remove("CIRC_NAMESPACE");
    if let Some(namespace) = namespace {
        command.env("CIRC_NAMESPACE", namespace);
    }
    let output = command.output().expect("circ runs");
    assert!(output.status.success(), "{output:?}");
    output
}

/// Every file under `dir`, by path relative to it.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, files);
            } else {
                let name = path
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    for sub in ["prometheus", "grafana"] {
        walk(dir, &dir.join(sub), &mut files);
    }
    files
}

/// A fresh output folder (removed when dropped).
struct Generated(PathBuf);

impl Generated {
    fn new(namespace: Option<&str>) -> Generated {
        let out = std::env::temp_dir().join(format!("circ-monitoring-{}", uuid::Uuid::new_v4()));
        circ(&["--out", out.to_str().unwrap()], namespace);
        Generated(out)
    }
}

impl Drop for Generated {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn committed() -> PathBuf {
    root().join("compose")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // A merged mapping may itself hold `<<` (compose's groups: `<<: *group`, which merges
    // `*circulatory`): merge until none is left.
    for _ in 0..8 {
        value.apply_merge().unwrap();
    }
    Value::deserialize(value).unwrap()
}

fn catalog() -> Catalog {
    Catalog::load(&CatalogPaths::in_dir(root())).unwrap()
}

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("prometheus/tests"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn compose_monitoring_is_what_circ_deploy_monitoring_writes() {
    let generated = Generated::new(None);
    let fresh = tree(&generated.0);
    let committed = tree(&committed());
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        fresh.keys().collect::<Vec<_>>(),
        "run `circ deploy monitoring`"
    );
    for (path, text) in &fresh {
        assert!(
            committed[path] == *text,
            "compose/{path} is stale: run `circ deploy monitoring`"
        );
    }
}

#[test]
fn prometheus_scrapes_every_process_compose_runs_with_groups_labelled() {
    let compose = yaml(&committed().join("docker-compose.yml"));
    let config = yaml(&committed().join("prometheus/prometheus.yml"));
    let jobs: BTreeMap<&str, &Value> = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["job_name"].as_str().unwrap(), j))
        .collect();
    assert_eq!(config["rule_files"], serde_json::json!(["rules.yml"]));
    let catalog = catalog();
    let groups = &catalog.topology().groups;
    let mut scraped = BTreeSet::new();
    for (service, definition) in compose["services"].as_object().unwrap() {
        if definition["image"] != "circulatory:local" || service == "setup" {
            continue;
        }
        let binary = definition["command"][0].as_str().unwrap();
        assert_eq!(
            binary, service,
            "compose names each service after its binary"
        );
        let env = &definition["environment"];
        let listen = [
            "CIRC_INGEST_LISTEN",
            "CIRC_GATEWAY_LISTEN",
            "CIRC_CONSOLE_LISTEN",
        ]
        .iter()
        .find_map(|name| env[*name].as_str())
        .or_else(|| env["CIRC_HANDLER_LISTEN"].as_str())
        .unwrap();
        let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
        let job = jobs
            .get(service.as_str())
            .unwrap_or_else(|| panic!("no scrape job for compose service {service}"));
        if groups.contains_key(service) {
            let sd = &job["dns_sd_configs"][0];
            assert_eq!(sd["names"], serde_json::json!([service]), "{service}");
            assert_eq!(sd["port"], port, "{service}");
            let relabel = &job["relabel_configs"][0];
            assert_eq!(relabel["target_label"], "group", "{service}");
            assert_eq!(relabel["replacement"], service.as_str(), "{service}");
        } else {
            let target = &job["static_configs"][0]["targets"][0];
            assert_eq!(*target, format!("{service}:{port}"), "{service}");
        }
        scraped.insert(service.clone());
    }
    for group in groups.keys() {
        assert!(
            scraped.contains(group),
            "compose runs no service for {group}"
        );
    }
    for required in ["ingest", "gateway", "console"] {
        assert!(scraped.contains(required), "compose runs no {required}");
    }
    assert_eq!(
        jobs.keys().copied().collect::<BTreeSet<_>>(),
        scraped.iter().map(String::as_str).collect(),
        "a scrape job for a service compose does not run"
    );
}

#[test]
fn compose_runs_prometheus_and_grafana_on_the_written_files() {
    let compose = yaml(&committed().join("docker-compose.yml"));
    let services = &compose["services"];
    for (service, image) in [
        ("prometheus", "prom/prometheus:"),
        ("grafana", "grafana/grafana:"),
    ] {
        let tag = services[service]["image"].as_str().unwrap();
        assert!(tag.starts_with(image), "{service}: {tag}");
        let version = &tag[image.len()..];
        assert!(
            version
                .trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit()),
            "{service} is pinned to a version, not {version}"
        );
    }
    let mounts = |service: &str| -> Vec<String> {
        services[service]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(mounts("prometheus").contains(&"./prometheus:/etc/prometheus:ro".to_string()));
    let grafana = mounts("grafana");
    assert!(grafana.contains(&"./grafana/provisioning:/etc/grafana/provisioning:ro".to_string()));
    let providers = yaml(&committed().join("grafana/provisioning/dashboards/circulatory.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert!(
        grafana.contains(&format!("./grafana/dashboards:{path}:ro")),
        "the dashboards folder is mounted where the provider reads it ({path})"
    );
    let sources = yaml(&committed().join("grafana/provisioning/datasources/prometheus.yml"));
    assert_eq!(sources["datasources"][0]["type"], "prometheus");
    assert_eq!(sources["datasources"][0]["url"], "http://prometheus:9090");
    let console = &services["console"];
    assert_eq!(console["command"], serde_json::json!(["console"]));
    assert_eq!(
        console["environment"]["CIRC_CONSOLE_LISTEN"],
        "0.0.0.0:8070"
    );
    for name in [
        "CIRC_KAFKA_BOOTSTRAP",
        "CIRC_REGISTRY_URL",
        "CIRC_REDIS_URL",
        "DATABASE_URL",
        "CIRC_JWT_SECRET",
    ] {
        assert_eq!(
            console["environment"][name], services["ingest"]["environment"][name],
            "the console reaches {name} as the ingest does"
        );
    }
}

#[test]
fn every_group_has_its_objectives_and_is_alerted_on() {
    let catalog = catalog();
    let rules = yaml(&committed().join("prometheus/rules.yml"));
    let records: Vec<&Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .filter(|r| r.get("record").is_some())
        .collect();
    let value = |record: &str, group: &str| -> f64 {
        let rule = records
            .iter()
            .find(|r| r["record"] == record && r["labels"]["group"] == group)
            .unwrap_or_else(|| panic!("no {record} for {group}"));
        let expr = rule["expr"].as_str().unwrap();
        expr.strip_prefix("vector(")
            .and_then(|e| e.strip_suffix(')'))
            .unwrap()
            .parse()
            .unwrap()
    };
    for group in catalog.topology().groups.values() {
        assert_eq!(
            value("circulatory:time_lag_objective_seconds", &group.name),
            group.time_lag_objective.as_secs_f64(),
            "{}",
            group.name
        );
        assert_eq!(
            value("circulatory:lag_threshold_records", &group.name),
            f64::from(group.lag_threshold),
            "{}",
            group.name
        );
    }
    assert_eq!(records.len(), 2 * catalog.topology().groups.len());
    // What topics.yaml declares for the groups whose delays matter most.
    let objective = |name: &str| catalog.group(name).unwrap().time_lag_objective.as_secs();
    assert_eq!(objective("payments"), 30);
    assert_eq!(objective("messenger"), 60);
    assert_eq!(objective("notifier"), 60);
    assert_eq!(objective("search-indexer"), 300, "the default");

    // The time-lag alert is tried on every group at its own objective.
    let lag = yaml(&committed().join("prometheus/tests/lag.yml"));
    let firing: BTreeSet<&str> = lag["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
        .filter(|a| a["alertname"] == "CirculatoryTimeLagAboveObjective")
        .flat_map(|a| a["exp_alerts"].as_array().unwrap())
        .map(|a| a["exp_labels"]["group"].as_str().unwrap())
        .collect();
    let groups: BTreeSet<&str> = catalog
        .topology()
        .groups
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(firing, groups);
}

#[test]
fn every_alert_has_a_severity_a_summary_a_runbook_and_both_kinds_of_case() {
    let dir = committed();
    let rules = yaml(&dir.join("prometheus/rules.yml"));
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in test_files(&dir) {
        let tests = yaml(&file);
        assert_eq!(tests["rule_files"], serde_json::json!(["../rules.yml"]));
        for test in tests["tests"].as_array().unwrap() {
            for check in test["alert_rule_test"].as_array().into_iter().flatten() {
                let entry = cases
                    .entry(check["alertname"].as_str().unwrap().to_string())
                    .or_default();
                if check["exp_alerts"].as_array().unwrap().is_empty() {
                    entry.1 += 1;
                } else {
                    entry.0 += 1;
                }
            }
        }
    }
    let names: Vec<&str> = alerts(&rules)
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    for wanted in [
        "CirculatoryLagGrowing",
        "CirculatoryTimeLagAboveObjective",
        "CirculatoryLagWithoutMembers",
        "CirculatoryDeadLettersArriving",
        "CirculatoryDeadLetterUnresolved",
        "CirculatoryBreakerOpen",
        "CirculatoryPartitionsPaused",
        "CirculatoryGroupStopped",
        "CirculatoryIngestServerErrors",
        "CirculatoryIngestUnavailable",
        "CirculatoryProduceLatencyHigh",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing");
    }
    for alert in alerts(&rules) {
        let name = alert["alert"].as_str().unwrap();
        let severity = alert["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning"].contains(&severity), "{name}");
        for key in ["summary", "runbook"] {
            let text = alert["annotations"][key].as_str().unwrap_or_default();
            assert!(!text.is_empty() && !text.contains('\n'), "{name}: {key}");
            // Only label templates: the unit tests state the exact text.
            let templates = text.matches("{{").count();
            assert_eq!(templates, text.matches("{{ $labels.").count(), "{name}");
        }
        let runbook = alert["annotations"]["runbook"].as_str().unwrap();
        assert!(runbook.contains("console: /"), "{name}: {runbook}");
        let expr = alert["expr"].as_str().unwrap();
        if expr.contains("group") && !expr.contains("job=\"ingest\"") {
            assert!(
                runbook.contains("{{ $labels.group }}"),
                "{name}: the runbook points at the group's console page"
            );
        }
        let (fires, quiet) = cases.get(name).copied().unwrap_or_default();
        assert!(fires >= 1, "{name}: no unit test fires it");
        assert!(quiet >= 1, "{name}: no unit test keeps it quiet");
    }
}

/// promtool, or `None` (with a loud message) when it is not installed and this is not CI.
fn promtool() -> Option<PathBuf> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(PathBuf::from("promtool"));
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "promtool is not installed (Debian package `prometheus`; scripts/test installs it)"
    );
    eprintln!(
        "\n********************************************************************************\n\
         SKIPPED: promtool is not installed, so the Prometheus config and rules were not\n\
         checked. Install Debian's `prometheus` package (scripts/test does).\n\
         ********************************************************************************\n"
    );
    None
}

fn run(promtool: &Path, args: &[&str], files: &[PathBuf]) -> String {
    let output = Command::new(promtool)
        .args(args)
        .args(files)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn promtool_accepts_the_config_and_the_rules_and_their_unit_tests_pass() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = committed();
    let prometheus = dir.join("prometheus");
    let config = run(
        &promtool,
        &["check", "config"],
        &[prometheus.join("prometheus.yml")],
    );
    assert!(config.contains("SUCCESS"), "{config}");
    let rules = run(
        &promtool,
        &["check", "rules"],
        &[prometheus.join("rules.yml")],
    );
    assert!(rules.contains("SUCCESS"), "{rules}");
    let tests = run(&promtool, &["test", "rules"], &test_files(&dir));
    assert!(!tests.contains("FAILED"), "{tests}");
}

#[test]
fn with_a_namespace_the_rules_still_find_the_groups_on_the_cluster() {
    let Some(promtool) = promtool() else {
        return;
    };
    let generated = Generated::new(Some("staging"));
    let rules = std::fs::read_to_string(generated.0.join("prometheus/rules.yml")).unwrap();
    assert!(
        rules.contains(r#""consumergroup", "staging\\.(.*)")"#),
        "{rules}"
    );
    let lag = std::fs::read_to_string(generated.0.join("prometheus/tests/lag.yml")).unwrap();
    assert!(lag.contains(r#"consumergroup="staging.payments""#), "{lag}");
    run(&promtool, &["test", "rules"], &test_files(&generated.0));
}

#[test]
fn the_dashboard_is_importable_and_provisionable() {
    let text =
        std::fs::read_to_string(committed().join("grafana/dashboards/circulatory.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["uid"], "circulatory");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 39);
    assert!(dashboard["tags"]
        .as_array()
        .unwrap()
        .contains(&"circulatory".into()));
    let input = &dashboard["__inputs"][0];
    assert_eq!(input["name"], "DS_PROMETHEUS");
    assert_eq!(input["pluginId"], "prometheus");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(variable("DS_PROMETHEUS")["type"], "datasource");
    let group = variable("group");
    assert_eq!(
        group["query"],
        "label_values(circulatory_group_lag_records, group)"
    );
    assert_eq!(group["includeAll"], true);
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: id");
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_default();
            assert!(!expr.is_empty(), "{title}: a target without expr");
            assert!(target["legendFormat"].is_string(), "{title}");
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
    }
    let exprs: Vec<&str> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    for (what, metric) in [
        ("throughput", "circulatory_events_processed_total"),
        ("lag", "circulatory_group_lag_records"),
        ("time lag", "kafka_consumergroup_group_max_lag_seconds"),
        ("retries", "circulatory_events_retried_total"),
        ("dead letters", "circulatory_events_dead_lettered_total"),
        ("handler p99", "circulatory_handler_duration_seconds_bucket"),
        ("ingest rate", "circulatory_http_requests_total"),
        (
            "ingest latency",
            "circulatory_http_request_duration_seconds_bucket",
        ),
        ("gateway connections", "circ_gateway_connections"),
        (
            "gateway delivery latency",
            "circ_gateway_delivery_latency_seconds_bucket",
        ),
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "no {what} panel ({metric})"
        );
    }
}

/// The series the console serves on its /metrics (cluster-level, computed from Kafka, Redis and
/// PostgreSQL), as agreed with it.
const CONSOLE_SERIES: [&str; 15] = [
    "kafka_consumergroup_lag",
    "kafka_consumergroup_lag_sum",
    "kafka_consumergroup_members",
    "kafka_consumergroup_group_lag_seconds",
    "kafka_consumergroup_group_max_lag_seconds",
    "circulatory_group_lag_records",
    "circulatory_group_instances",
    "circulatory_dlq_open",
    "circulatory_dlq_records",
    "circulatory_dlq_oldest_age_seconds",
    "circulatory_group_breaker_open",
    "circulatory_group_paused_partitions",
    "circulatory_group_operator_paused",
    "circulatory_group_stopped",
    "circulatory_group_status",
];

/// Where the other processes declare their metrics.
const EXPOSED_BY: [&str; 3] = [
    "services/ingest/src/metrics.rs",
    "services/gateway/src/metrics.rs",
    "services/runtime/src/consumer/telemetry.rs",
];

#[test]
fn every_series_read_is_one_a_process_exposes() {
    let output = circ(&["--list-metrics"], None);
    let listed = String::from_utf8(output.stdout).unwrap();
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.len() >= 20, "{listed}");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names, "sorted, once each");
    let sources: String = EXPOSED_BY
        .iter()
        .map(|p| std::fs::read_to_string(root().join(p)).unwrap())
        .collect();
    for name in &names {
        if CONSOLE_SERIES.contains(name) {
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        assert!(
            sources.contains(&format!("\"{family}\"")),
            "{name} is neither a console series nor declared in {EXPOSED_BY:?}"
        );
    }
    // What the rules and the dashboard are built on.
    for name in [
        "kafka_consumergroup_group_max_lag_seconds",
        "kafka_consumergroup_members",
        "circulatory_dlq_records",
        "circulatory_http_requests_total",
        "circ_gateway_delivery_latency_seconds_bucket",
    ] {
        assert!(names.contains(&name), "{name} not listed");
    }
}
