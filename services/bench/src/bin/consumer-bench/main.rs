//! `consumer-bench`: measurements of the consumer runtime (`ConsumerGroup`) on the local stack,
//! driven by `scripts/bench/consumer/run`. Not part of any test.
//!
//! Every subcommand works in one topic namespace (`--namespace`), prints one JSON document on
//! stdout and logs to stderr:
//!
//! - `setup`: creates the topics of the named groups (main topics, retry rungs, dead letters,
//!   replay) and any extra topics, as the catalog declares them with replication factor 1.
//! - `produce`: publishes N events of one type with the runtime's `EventPublisher`.
//! - `throughput`: runs a group with no-op handlers until N events were handled.
//! - `latency`: runs a group and sends single events to the ingest API at fixed rates; joins each
//!   request's send and 202 times with the time its handler ran.
//! - `retry`: runs a group whose handler fails every first attempt; measures when the second
//!   attempt runs against the retry ladder's first delay.
//! - `cleanup`: deletes the namespace's topics and consumer groups.

mod admin;
mod latency;
mod retry;
mod sample;
mod stats;
mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use circulatory::catalog::{Catalog, CatalogPaths};
use circulatory::consumer::{ConsumerGroup, Handler};
use circulatory::kafka::KafkaConfig;
use circulatory::registry::{RegistryConfig, SchemaRegistry};
use clap::{Args, Parser, Subcommand};

/// The allocator the consumer-group binaries use (see `circulatory_group_common`), so the group measured
/// here allocates like a deployed one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "consumer-bench",
    about = "Consumer runtime benchmark: throughput, end-to-end latency, retry delay accuracy."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

/// Where the stack is and which namespace the run uses.
#[derive(Debug, Clone, Args)]
struct Common {
    /// Topic namespace of this run (fresh per run; its topics are deleted by `cleanup`).
    #[arg(long, global = true, env = "CIRC_NAMESPACE", default_value = "bench")]
    namespace: String,
    /// The topology file.
    #[arg(
        long,
        global = true,
        env = "CIRC_TOPOLOGY",
        default_value = "topics.yaml"
    )]
    topology: PathBuf,
    /// The Avro schemas folder.
    #[arg(long, global = true, env = "CIRC_SCHEMAS", default_value = "schemas")]
    schemas: PathBuf,
    #[arg(
        long,
        global = true,
        env = "CIRC_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    #[arg(
        long,
        global = true,
        env = "CIRC_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    registry: String,
    /// Extra librdkafka property `KEY=VALUE` for the group's clients (repeatable), applied last:
    /// to try a client setting without changing the runtime.
    #[arg(long = "client-config", global = true)]
    client_config: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Setup(admin::SetupArgs),
    Produce(ProduceArgs),
    Throughput(throughput::ThroughputArgs),
    Latency(latency::LatencyArgs),
    Retry(retry::RetryArgs),
    Cleanup,
}

/// Publishes `count` events of one type into the namespace.
#[derive(Debug, Args)]
struct ProduceArgs {
    #[arg(long, default_value = "like.added")]
    event_type: String,
    #[arg(long, default_value_t = 300_000)]
    count: u64,
    /// Events published concurrently (one `publish_all` call each).
    #[arg(long, default_value_t = 5_000)]
    chunk: usize,
}

/// The catalog, clients and settings every subcommand shares.
pub(crate) struct Env {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) kafka: KafkaConfig,
    pub(crate) registry: Arc<SchemaRegistry>,
    pub(crate) namespace: String,
    /// `--client-config` entries, for the group's clients only.
    group_overrides: Vec<(String, String)>,
}

impl Env {
    fn new(common: &Common) -> Result<Env, String> {
        let catalog = Catalog::load(&CatalogPaths {
            topology: common.topology.clone(),
            schemas: common.schemas.clone(),
        })
        .map_err(|e| e.to_string())?
        .with_namespace(Some(&common.namespace))?;
        let registry = SchemaRegistry::new(RegistryConfig::new(common.registry.clone()))
            .map_err(|e| e.to_string())?;
        let mut group_overrides = Vec::new();
        for entry in &common.client_config {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| format!("--client-config `{entry}`: expected KEY=VALUE"))?;
            group_overrides.push((key.to_string(), value.to_string()));
        }
        Ok(Env {
            catalog: Arc::new(catalog),
            group_overrides,
            kafka: KafkaConfig::new(
                common.bootstrap.clone(),
                format!("consumer-bench-{}", std::process::id()),
            ),
            registry: Arc::new(registry),
            namespace: common.namespace.clone(),
        })
    }

    /// A publisher for the namespace, with the runtime's default (durable) producer.
    pub(crate) fn publisher(&self) -> Result<circulatory::publisher::EventPublisher, String> {
        let producer = circulatory::kafka::producer(
            &self.kafka,
            &circulatory::kafka::ProducerSettings::default(),
        )
        .map_err(|e| e.to_string())?;
        Ok(circulatory::publisher::EventPublisher::new(
            self.catalog.clone(),
            self.registry.clone(),
            producer,
            "/circulatory/bench",
        ))
    }

    /// A consumer group of the catalog whose consumer group id is `<namespaced group>.<run>`, so
    /// each measurement reads the topics from the start as a fresh group; `handler` serves every
    /// type the group subscribes to.
    pub(crate) fn group<H: Handler + Clone>(
        &self,
        group: &str,
        run: &str,
        handler: H,
    ) -> Result<(ConsumerGroup, String), String> {
        let declared = self
            .catalog
            .group(group)
            .ok_or_else(|| format!("no group `{group}` in the topology"))?
            .clone();
        let group_id = format!("{}.{run}", self.catalog.topic_name(group));
        let mut kafka = self.kafka.clone();
        kafka.client_id = format!("consumer-bench-{group}-{run}");
        // Applied last by the engine, so it replaces the catalog's group id.
        kafka.overrides.push(("group.id".into(), group_id.clone()));
        kafka.overrides.extend(self.group_overrides.iter().cloned());
        let mut consumer =
            ConsumerGroup::new(self.catalog.clone(), group, kafka, self.registry.clone())
                .map_err(|e| e.to_string())?;
        for event_type in &declared.subscribe {
            consumer = consumer.handler(event_type, handler.clone());
        }
        Ok((consumer, group_id))
    }
}

async fn produce(env: &Env, args: &ProduceArgs) -> Result<serde_json::Value, String> {
    let event = env
        .catalog
        .event(&args.event_type)
        .ok_or_else(|| format!("unknown event type `{}`", args.event_type))?
        .clone();
    let topic = event
        .topic
        .clone()
        .ok_or_else(|| format!("`{}` has no topic", args.event_type))?;
    let publisher = env.publisher()?;
    let draft = || circulatory::publisher::EventDraft {
        event_type: args.event_type.clone(),
        data: sample::data(&event.schema_json),
        ..Default::default()
    };
    // The size of one encoded value (Confluent wire format), as a Kafka tool would send it.
    let one = publisher
        .validate(draft())
        .map_err(|e| format!("sample event: {e}"))?;
    let value_bytes = publisher
        .encode(one)
        .await
        .map_err(|e| format!("encoding: {e}"))?
        .payload
        .len();
    let started = std::time::Instant::now();
    let mut published = 0u64;
    let mut partitions = std::collections::BTreeSet::new();
    let deadline = started + Duration::from_secs(600);
    while published < args.count {
        if std::time::Instant::now() > deadline {
            return Err(format!("only {published} events published in 600 s"));
        }
        let n = (args.count - published).min(args.chunk as u64);
        let mut batch = Vec::with_capacity(n as usize);
        for _ in 0..n {
            batch.push(publisher.validate(draft()).map_err(|e| e.to_string())?);
        }
        for result in publisher.publish_all(batch).await {
            let delivered = result.map_err(|e| format!("publish: {e}"))?;
            partitions.insert(delivered.partition);
        }
        published += n;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "event_type": args.event_type,
        "topic": topic,
        "count": published,
        "partitions_written": partitions.len(),
        "value_bytes": value_bytes,
        "seconds": seconds,
        "events_per_s": published as f64 / seconds,
    }))
}

/// Seconds of CPU this process used so far (user + system), from /proc/self/stat.
pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from after the command name (field 3 is index 0).
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((user + system) / 100.0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    circulatory::process::init_logs(circulatory::process::Logs::Tool);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("consumer-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let env = Env::new(&cli.common)?;
        match &cli.command {
            Command::Setup(args) => admin::setup(&env, args).await,
            Command::Produce(args) => produce(&env, args).await,
            Command::Throughput(args) => throughput::run(&env, args).await,
            Command::Latency(args) => latency::run(&env, args).await,
            Command::Retry(args) => retry::run(&env, args).await,
            Command::Cleanup => admin::cleanup(&env).await,
        }
    });
    // librdkafka clients still closing must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(doc) => {
            println!("{doc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("consumer-bench: {e}");
            ExitCode::from(1)
        }
    }
}
