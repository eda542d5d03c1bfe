//! `prometheus.yml`: a scrape job per process compose runs, under compose's service names.
//!
//! A consumer group's process labels its series with nothing but the event type: which group it
//! is comes from the scrape job, as the `group` target label, so that its series join the
//! console's (which carry `group`) and the dashboard's `group` variable. Groups are found by DNS:
//! `docker compose up --scale <group>=N` gives a service name N addresses, each scraped as its
//! own target.

use circulatory::catalog::Catalog;
use serde_json::{json, Value};

/// Where compose's processes serve `/metrics` (CIRC_INGEST_LISTEN, CIRC_GATEWAY_LISTEN,
/// CIRC_CONSOLE_LISTEN, CIRC_HANDLER_LISTEN in compose/docker-compose.yml).
pub(crate) const INGEST: (&str, u16) = ("ingest", 8080);
pub(crate) const GATEWAY: (&str, u16) = ("gateway", 8090);
pub(crate) const CONSOLE: (&str, u16) = ("console", 8070);
pub(crate) const GROUP_PORT: u16 = 9100;

/// How often every target is scraped and every rule evaluated.
const INTERVAL: &str = "15s";

pub(crate) fn config(catalog: &Catalog) -> Value {
    let mut jobs: Vec<Value> = [INGEST, GATEWAY, CONSOLE]
        .into_iter()
        .map(|(name, port)| {
            json!({
                "job_name": name,
                "static_configs": [{"targets": [format!("{name}:{port}")]}],
            })
        })
        .collect();
    for group in catalog.topology().groups.values() {
        jobs.push(json!({
            "job_name": group.name,
            "dns_sd_configs": [{
                "names": [group.name],
                "type": "A",
                "port": GROUP_PORT,
                "refresh_interval": "30s",
            }],
            "relabel_configs": [{"target_label": "group", "replacement": group.name}],
        }));
    }
    json!({
        "global": {
            "scrape_interval": INTERVAL,
            "evaluation_interval": INTERVAL,
        },
        "rule_files": ["rules.yml"],
        "scrape_configs": jobs,
    })
}
