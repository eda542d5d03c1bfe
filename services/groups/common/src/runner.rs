//! What every consumer-group binary shares: flags and environment, connections to the stack, the
//! `/metrics`, `/healthz` and `/readyz` endpoints, signals, and the exit codes.
//!
//! A group binary is one line: `runner::main(GROUP, register)`, where `register` adds the group's
//! handlers and `O` are the group's own flags (`runner::NoOptions` when it has none).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use circulatory::catalog::Catalog;
use circulatory::consumer::telemetry::GroupMetrics;
use circulatory::consumer::{ConsumerGroup, GroupSettings};
use circulatory::kafka::KafkaConfig;
use circulatory::process::flags::{self, CatalogFlags, DatabaseFlags, KafkaFlags, RedisFlags};
use circulatory::process::{init_logs, parse_flags, shutdown_signal, Exit, Logs};
use circulatory::registry::{RegistryConfig, SchemaRegistry};
use circulatory::trace::TraceSettings;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::deps::Deps;

/// Adds a group's handlers, given the shared handles and the group's own flags.
pub type Register<O> = fn(ConsumerGroup, &Deps, O) -> Registered;

/// What a group's `register` returns: the group with its handlers, or why it cannot run with
/// these options (the runner reports it and exits 64, before anything is consumed).
pub type Registered = Result<ConsumerGroup, RegisterError>;

/// Why a group refused its options.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RegisterError(pub String);

/// A group without flags of its own.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NoOptions {}

/// Flags shared by every group binary (each also readable from the environment).
#[derive(Debug, Clone, Parser)]
#[command(version, args_override_self = true)]
pub struct Config<O: clap::Args> {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "CIRC_HANDLER_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub catalog: CatalogFlags,
    #[command(flatten)]
    pub kafka: KafkaFlags,
    /// Redis (projections, realtime broadcasts, operators' figures).
    #[command(flatten)]
    pub redis: RedisFlags,
    /// PostgreSQL (projections, exactly-once bookkeeping).
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// Most PostgreSQL connections of this process.
    #[arg(long, env = "CIRC_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Replaces the group's max_in_flight from topics.yaml.
    #[arg(long, env = "CIRC_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// How long shutdown and revocation wait for in-flight events.
    #[arg(
        long,
        env = "CIRC_DRAIN_TIMEOUT",
        default_value = "10s",
        value_parser = flags::duration
    )]
    pub drain_timeout: Duration,
    /// A stable id for this replica, unique in its group (Kubernetes: the pod name). Turns on
    /// static membership: restarted under the same id, the replica takes its partitions back at
    /// once rather than after the session timeout. Without it every start is a new member.
    #[arg(long, env = "CIRC_INSTANCE_ID", value_parser = parse_instance_id)]
    pub instance_id: Option<String>,
    /// How long Kafka waits for a silent member before giving its partitions to others, in
    /// seconds. With static membership this is also how long a replica that stopped for good
    /// holds its partitions.
    #[arg(
        long,
        env = "CIRC_SESSION_TIMEOUT",
        default_value = "30s",
        value_parser = flags::duration
    )]
    pub session_timeout: Duration,
    /// How long the trace index keeps what this group reports (retries, dead letters, the
    /// events it emits); 0 turns its reports off.
    #[arg(
        long,
        env = "CIRC_TRACE_WINDOW",
        default_value = "1d",
        value_parser = flags::duration
    )]
    pub trace_window: Duration,
    /// Trace index entries this process writes per second at most (0: no ceiling); past it
    /// they are dropped and counted in circulatory_trace_dropped_total.
    #[arg(long, env = "CIRC_TRACE_MAX_PER_SEC", default_value_t = circulatory::trace::DEFAULT_MAX_PER_SEC)]
    pub trace_max_per_sec: u32,
    /// The group's own flags.
    #[command(flatten)]
    pub options: O,
}

/// Runs group `group` with the handlers `register` adds, until SIGTERM/SIGINT.
/// Exit codes: 0 clean stop, 64 bad configuration, 69 a dependency unreachable at start, 1 the
/// group stopped on its own (e.g. the dead-letter flood guard).
pub fn main<O>(group: &'static str, register: Register<O>) -> ExitCode
where
    O: clap::Args + Send + 'static,
{
    init_logs(Logs::Service);
    let config: Config<O> = match parse_flags() {
        Ok(config) => config,
        Err(exit) => return exit.into(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{group}: cannot start the runtime: {e}");
            return Exit::Failed.into();
        }
    };
    runtime.block_on(run(group, register, config))
}

async fn run<O: clap::Args>(
    group: &'static str,
    register: Register<O>,
    config: Config<O>,
) -> ExitCode {
    let catalog = match Catalog::load(&config.catalog.paths())
        .map_err(|e| e.to_string())
        .and_then(|c| c.with_namespace(config.catalog.namespace.as_deref()))
    {
        Ok(catalog) => Arc::new(catalog),
        Err(e) => {
            eprintln!("{group}: {e}");
            return Exit::Usage.into();
        }
    };
    let registry = match SchemaRegistry::new(RegistryConfig::new(config.kafka.registry.clone())) {
        Ok(registry) => Arc::new(registry),
        Err(e) => {
            eprintln!("{group}: registry: {e}");
            return Exit::Usage.into();
        }
    };
    let deps = match Deps::connect(catalog.clone(), &config).await {
        Ok(deps) => deps,
        Err(e) => {
            eprintln!("{group}: {e:#}");
            return Exit::Unavailable.into();
        }
    };
    let client_id = match &config.instance_id {
        Some(instance) => format!("{group}-{instance}"),
        None => format!("{group}-{}", std::process::id()),
    };
    let kafka = KafkaConfig::new(config.kafka.bootstrap.clone(), client_id);
    let metrics_registry = prometheus::Registry::new();
    let settings = GroupSettings {
        max_in_flight: config.max_in_flight,
        drain_timeout: config.drain_timeout,
        session_timeout: config.session_timeout,
        instance_id: config.instance_id.clone(),
        trace: TraceSettings {
            window: config.trace_window,
            max_per_sec: config.trace_max_per_sec,
        },
        ..GroupSettings::default()
    };
    if let Err(e) = check_timeouts(&settings) {
        eprintln!("{group}: {e}");
        return Exit::Usage.into();
    }
    let consumer = match ConsumerGroup::new(catalog, group, kafka, registry) {
        Ok(consumer) => consumer
            .redis(deps.redis.clone())
            .settings(settings)
            .metrics(GroupMetrics::new(&metrics_registry)),
        Err(e) => {
            eprintln!("{group}: {e}");
            return Exit::Usage.into();
        }
    };
    let consumer = match register(consumer, &deps, config.options) {
        Ok(consumer) => consumer,
        Err(e) => {
            eprintln!("{group}: {e}");
            tracing::error!(group, error = %e, "the group refused its options");
            return Exit::Usage.into();
        }
    };

    // Ready once the group has joined and holds its partitions, not merely once it started.
    let ready = consumer.joined();
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{group}: cannot listen on {}: {e}", config.listen);
            return Exit::Unavailable.into();
        }
    };
    let shutdown = CancellationToken::new();
    let endpoints = tokio::spawn(serve_endpoints(
        listener,
        Endpoints {
            metrics: metrics_registry,
            ready,
        },
        shutdown.clone(),
    ));
    tokio::spawn(stop_on_signal(shutdown.clone()));
    tracing::info!(group, listen = %config.listen, "consumer group starting");
    let outcome = consumer.run(shutdown.clone()).await;
    shutdown.cancel();
    let _ = endpoints.await;
    match outcome {
        Ok(()) => {
            tracing::info!(group, "consumer group stopped cleanly");
            Exit::Ok.into()
        }
        Err(e) => {
            tracing::error!(group, error = %e, "consumer group stopped");
            Exit::Failed.into()
        }
    }
}

/// The broker accepts session timeouts of 6 s to 30 min by default; the drain must end first, so
/// a slow handler never gets this member evicted while it stops.
fn check_timeouts(settings: &GroupSettings) -> Result<(), String> {
    let session = settings.session_timeout;
    if session < Duration::from_secs(6) || session > Duration::from_secs(1800) {
        return Err("the session timeout must be 6 to 1800 seconds".into());
    }
    if settings.drain_timeout >= session {
        return Err("the drain timeout must be shorter than the session timeout".into());
    }
    Ok(())
}

/// Kafka allows up to 249 characters; a pod name is at most 63.
fn parse_instance_id(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 200
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(value.to_string())
    } else {
        Err("1 to 200 characters among letters, digits, '-', '_' and '.'".into())
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: prometheus::Registry,
    ready: Arc<AtomicBool>,
}

async fn serve_endpoints(
    listener: tokio::net::TcpListener,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(endpoints);
    let _ = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
}

async fn metrics(State(endpoints): State<Endpoints>) -> String {
    circulatory::metrics::render(&endpoints.metrics)
}

async fn readyz(State(endpoints): State<Endpoints>) -> StatusCode {
    if endpoints.ready.load(Ordering::Acquire) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    tokio::select! {
        _ = shutdown_signal() => shutdown.cancel(),
        _ = shutdown.cancelled() => {}
    }
}
