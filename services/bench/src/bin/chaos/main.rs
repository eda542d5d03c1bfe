//! `chaos`: the load generator and verifier of the fault suite (`scripts/chaos`). Not part of
//! any test.
//!
//! - `load`: records the end offsets of the topics the run writes to, then POSTs events with
//!   fresh ids to the ingest API at a fixed rate (open loop, bounded in flight) until SIGTERM,
//!   SIGINT or `--max-secs`, and writes one outcome per event (status, times, offset).
//! - `verify`: waits until the consumer groups applied what the topics hold, reads the topics
//!   back from the recorded offsets with a `read_committed` consumer, checks the groups' effects
//!   in PostgreSQL, and prints one JSON row: acknowledged, lost, duplicated, refused,
//!   refused-but-written, the 503 window, recovery times, effects applied once.
//!
//! Times are wall-clock milliseconds since the Unix epoch, so the fault marks the script writes
//! (`date +%s%3N`) and PostgreSQL's `processed_at` share one clock with the outcomes.

mod bodies;
mod effects;
mod load;
mod marks;
mod offsets;
mod outcome;
mod readback;
mod tally;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use circulatory::catalog::{Catalog, CatalogPaths};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chaos",
    about = "Fault suite load generator and verifier (driven by scripts/chaos)."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Where the stack is.
#[derive(Debug, Clone, Args)]
struct Common {
    /// Topic namespace of the services under test.
    #[arg(long, global = true, env = "CIRC_NAMESPACE")]
    namespace: Option<String>,
    #[arg(
        long,
        global = true,
        env = "CIRC_TOPOLOGY",
        default_value = "topics.yaml"
    )]
    topology: PathBuf,
    #[arg(long, global = true, env = "CIRC_SCHEMAS", default_value = "schemas")]
    schemas: PathBuf,
    #[arg(
        long,
        global = true,
        env = "CIRC_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// The groups whose effects are checked (and whose dead-letter topics are read).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "user-lifecycle,payments"
    )]
    groups: Vec<String>,
    /// The run's folder: start offsets, outcomes, marks.
    #[arg(long, global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    Load(load::LoadArgs),
    Verify(verify::VerifyArgs),
}

/// What both subcommands share.
pub(crate) struct Env {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) bootstrap: String,
    pub(crate) groups: Vec<String>,
    pub(crate) dir: PathBuf,
}

impl Env {
    fn new(common: &Common) -> Result<Env, String> {
        let catalog = Catalog::load(&CatalogPaths {
            topology: common.topology.clone(),
            schemas: common.schemas.clone(),
        })
        .map_err(|e| e.to_string())?
        .with_namespace(common.namespace.as_deref())?;
        for group in &common.groups {
            catalog
                .group(group)
                .ok_or_else(|| format!("no group `{group}` in the topology"))?;
        }
        Ok(Env {
            catalog: Arc::new(catalog),
            bootstrap: common.bootstrap.clone(),
            groups: common.groups.clone(),
            dir: common.dir.clone(),
        })
    }

    /// The Kafka topic of an event type (namespaced).
    pub(crate) fn topic_of(&self, event_type: &str) -> Result<String, String> {
        self.catalog
            .event(event_type)
            .and_then(|e| e.topic.clone())
            .ok_or_else(|| format!("`{event_type}` is not a Kafka event type of the catalog"))
    }

    /// The dead-letter topic of a group (namespaced).
    pub(crate) fn dead_letter_topic(&self, group: &str) -> Option<String> {
        let group = self.catalog.group(group)?;
        Some(self.catalog.topic_name(&group.dead_letter_topic_base()))
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> ExitCode {
    circulatory::process::init_logs(circulatory::process::Logs::Tool);
    let cli = Cli::parse();
    let env = match Env::new(&cli.common) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("chaos: {e}");
            return ExitCode::from(64);
        }
    };
    let result = match &cli.command {
        Command::Load(args) => load::run(&env, args).await,
        Command::Verify(args) => verify::run(&env, args).await,
    };
    match result {
        Ok(doc) => {
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chaos: {e}");
            ExitCode::from(1)
        }
    }
}
