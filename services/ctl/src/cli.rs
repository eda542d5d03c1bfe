//! Command-line shape. Every connection setting has an environment variable, so a shell that
//! sourced the local stack's `env` file needs no flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "circ",
    version,
    about = "Operate Circulatory: topics, schemas, events."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The topology file.
    #[arg(
        long,
        env = "CIRC_TOPOLOGY",
        default_value = "topics.yaml",
        global = true
    )]
    pub(crate) topology: PathBuf,
    /// The folder of Avro schemas (`<domain>/<event.type>.avsc`).
    #[arg(long, env = "CIRC_SCHEMAS", default_value = "schemas", global = true)]
    pub(crate) schemas: PathBuf,
    /// Prefix for every topic (`<namespace>.<domain>.<tier>`): isolated environments on a shared cluster.
    #[arg(long, env = "CIRC_NAMESPACE", global = true)]
    pub(crate) namespace: Option<String>,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        env = "CIRC_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub(crate) bootstrap: String,
    /// Confluent-compatible schema registry API.
    #[arg(
        long,
        env = "CIRC_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7",
        global = true
    )]
    pub(crate) registry: String,
    /// Timeout of each Kafka admin or registry call.
    #[arg(
        long,
        env = "CIRC_TIMEOUT",
        default_value = "15s",
        value_parser = circulatory::process::flags::duration,
        global = true
    )]
    pub(crate) timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List every event type with its topic, partition key and flags.
    Catalog {
        /// Print the full catalog (with schemas) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the AsyncAPI 3.0 document of every topic, event type and consumer group.
    Asyncapi(AsyncapiArgs),
    /// Write deployment manifests derived from the catalog.
    Deploy {
        #[command(subcommand)]
        target: DeployTarget,
    },
    /// Compare the cluster with the catalog, or make it match.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Check schemas against the registry, or register them.
    Schemas {
        #[command(subcommand)]
        action: SchemasAction,
    },
    /// Validate, encode and publish one event; prints where the broker stored it.
    Produce(ProduceArgs),
    /// Print a topic's records as JSON lines, decoded, with their headers.
    Tail(TailArgs),
    /// How far consumer groups are behind: waiting (main topics), delayed (retry topics) and
    /// replaying, from their committed offsets.
    Lag(LagArgs),
    /// Inspect and act on a group's dead letters.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Mint a development bearer token (HS256 with CIRC_JWT_SECRET).
    Token(TokenArgs),
    /// Database operations.
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TopicSettings {
    /// Replication factor to use instead of the declared one (1 on a single local broker).
    #[arg(long, env = "CIRC_REPLICATION_FACTOR")]
    pub(crate) replication_factor: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum TopicsAction {
    /// Show what `apply` would change; exit code 2 when the cluster differs.
    Plan(TopicSettings),
    /// Create missing topics, raise partition counts, realign drifted configs.
    Apply {
        #[command(flatten)]
        settings: TopicSettings,
        /// Also delete topics of the project's shape that the catalog no longer declares.
        #[arg(long)]
        prune: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SchemasAction {
    /// Check every schema against its subject's registered versions.
    Check,
    /// Set FULL_TRANSITIVE compatibility and register every schema.
    Register,
}

#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Event type, e.g. `video.uploaded`.
    pub(crate) event_type: String,
    /// The event's `data` as JSON.
    #[arg(long)]
    pub(crate) data: String,
    /// Event id (default: a new UUIDv7).
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// CloudEvents subject.
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// Correlation id carried in the `correlation_id` header.
    #[arg(long)]
    pub(crate) correlation_id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Topic to read (the namespace is not applied: give the full name).
    pub(crate) topic: String,
    /// Start at the oldest record instead of new ones.
    #[arg(long)]
    pub(crate) from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub(crate) max: Option<u64>,
    /// Stop after this long without a record.
    #[arg(long, value_parser = circulatory::process::flags::duration)]
    pub(crate) idle: Option<Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct DlqScope {
    /// The consumer group whose dead letters to read.
    #[arg(long)]
    pub(crate) group: String,
    /// PostgreSQL URL (operators' decisions are recorded there).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: String,
}

#[derive(Debug, Args)]
pub(crate) struct DlqFilter {
    /// Only this event type.
    #[arg(long = "type")]
    pub(crate) event_type: Option<String>,
    /// Event ids (`ce_id`) or dead-letter ids (`<partition>-<offset>`); repeatable.
    #[arg(long = "id")]
    pub(crate) ids: Vec<String>,
    /// Dead-lettered at or after this time (RFC 3339).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Dead-lettered at or before this time (RFC 3339).
    #[arg(long)]
    pub(crate) until: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqAction {
    /// Open dead letters (or all with --all), oldest first.
    List {
        #[command(flatten)]
        scope: DlqScope,
        #[command(flatten)]
        filter: DlqFilter,
        /// Include replayed and discarded ones.
        #[arg(long)]
        all: bool,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter in full: headers, error, decoded data.
    Show {
        #[command(flatten)]
        scope: DlqScope,
        /// Dead-letter id (`<partition>-<offset>`) or event id.
        id: String,
    },
    /// Send dead letters back to their group only, attempt count reset.
    Replay {
        #[command(flatten)]
        scope: DlqScope,
        #[command(flatten)]
        filter: DlqFilter,
        /// Select every open dead letter (required when no filter is given).
        #[arg(long)]
        all_open: bool,
        /// Most replays per second.
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Show what would be replayed, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Mark dead letters as handled without replaying them.
    Discard {
        #[command(flatten)]
        scope: DlqScope,
        #[command(flatten)]
        filter: DlqFilter,
        /// Select every open dead letter (required when no filter is given).
        #[arg(long)]
        all_open: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// The principal (client id, or user id).
    #[arg(long)]
    pub(crate) sub: String,
    /// Event types it may publish: names, `prefix.*` or `*` (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) events: Vec<String>,
    /// Domains whose every type it may publish (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) domains: Vec<String>,
    /// Grant access to admin routes.
    #[arg(long)]
    pub(crate) admin: bool,
    /// The admin's role on the console: `viewer` reads, `operator` may also act (implies --admin).
    #[arg(long, value_parser = ["viewer", "operator"])]
    pub(crate) role: Option<String>,
    /// Let the bearer act for other users (name another author of an upload).
    #[arg(long)]
    pub(crate) on_behalf: bool,
    /// Lifetime.
    #[arg(long, default_value = "1h", value_parser = circulatory::process::flags::duration)]
    pub(crate) ttl: Duration,
    /// HS256 secret (at least 32 bytes).
    #[arg(long, env = "CIRC_JWT_SECRET", hide_env_values = true)]
    pub(crate) secret: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DbAction {
    /// Apply pending migrations.
    Migrate {
        /// PostgreSQL URL.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LagArgs {
    /// Only these groups (repeatable); all groups of the topology by default.
    #[arg(long = "group")]
    pub(crate) groups: Vec<String>,
    /// Also list every partition: committed offset, log end, lag.
    #[arg(long)]
    pub(crate) partitions: bool,
    /// One JSON line per group, with its partitions.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AsyncapiArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = DocumentFormat::Yaml)]
    pub(crate) format: DocumentFormat,
    /// The ingest API's `host:port`, as its clients reach it.
    #[arg(long, env = "CIRC_INGEST_ADDRESS", default_value = "127.0.0.1:8080")]
    pub(crate) ingest: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DocumentFormat {
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeployTarget {
    /// Kubernetes: the services, one StatefulSet and one KEDA ScaledObject per consumer group.
    Kubernetes(KubernetesArgs),
    /// Prometheus and Grafana for compose: scrape jobs, alerting rules with their promtool unit
    /// tests, data source and dashboard.
    Monitoring(MonitoringArgs),
}

#[derive(Debug, Args)]
pub(crate) struct MonitoringArgs {
    /// Folder to write `prometheus/` and `grafana/` into (the files of the project's shape there
    /// are replaced).
    #[arg(long, default_value = "compose")]
    pub(crate) out: PathBuf,
    /// Print every metric name the rules and the dashboard read, one per line, and write nothing.
    #[arg(long)]
    pub(crate) list_metrics: bool,
}

#[derive(Debug, Args)]
pub(crate) struct KubernetesArgs {
    /// Folder to write the manifests to (files of the project's shape there are replaced).
    #[arg(long, default_value = "compose/kubernetes")]
    pub(crate) out: PathBuf,
    /// The image holding every binary (compose/Dockerfile builds it).
    #[arg(long, default_value = "circulatory:latest")]
    pub(crate) image: String,
    /// The Kubernetes namespace.
    #[arg(long, default_value = "circulatory")]
    pub(crate) kube_namespace: String,
    /// Kafka bootstrap servers as pods reach them (e.g. a Strimzi cluster's bootstrap service).
    #[arg(long = "cluster-kafka", default_value = "kafka-bootstrap:9092")]
    pub(crate) kafka: String,
    /// The schema registry's Confluent-compatible API as pods reach it (not `--registry`, which
    /// is where this command would reach it).
    #[arg(
        long = "cluster-registry",
        default_value = "http://registry:8080/apis/ccompat/v7"
    )]
    pub(crate) cluster_registry: String,
    /// Redis as pods reach it.
    #[arg(long = "cluster-redis", default_value = "redis://redis:6379")]
    pub(crate) redis: String,
    /// Where uploads, renditions and thumbnails are stored.
    #[arg(long, default_value = "s3://circulatory-objects")]
    pub(crate) object_store: String,
}
