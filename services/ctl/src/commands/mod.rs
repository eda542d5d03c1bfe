//! One module per subcommand; this one loads what they share and maps failures to exit codes.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use circulatory::catalog::{Catalog, CatalogPaths};
use circulatory::kafka::KafkaConfig;
use circulatory::process::Exit;
use circulatory::registry::{RegistryConfig, SchemaRegistry};

use crate::cli::{Cli, Command, Global};

mod asyncapi;
mod catalog;
mod db;
mod deploy;
mod dlq;
mod lag;
mod produce;
mod schemas;
mod tail;
mod token;
mod topics;

/// A failed command and the exit code it deserves ([`Exit`]).
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad flags or configuration: 64.
    Usage(String),
    /// The declaration (`topics.yaml`, schemas) or input data is invalid: 65.
    Data(String),
    /// Kafka, the registry or the database could not be reached: 69.
    Unavailable(anyhow::Error),
    /// Anything else: 1.
    Other(anyhow::Error),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Usage(_) => Exit::Usage,
            Failure::Data(_) => Exit::Data,
            Failure::Unavailable(_) => Exit::Unavailable,
            Failure::Other(_) => Exit::Failed,
        }
        .into()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Data(m) => f.write_str(m),
            Failure::Unavailable(e) | Failure::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Other(error.into())
    }
}

pub(crate) type Outcome = Result<ExitCode, Failure>;

pub(crate) async fn run(cli: Cli) -> Outcome {
    let global = &cli.global;
    match cli.command {
        Command::Catalog { json } => catalog::run(&load_catalog(global)?, json),
        Command::Asyncapi(args) => asyncapi::run(global, &load_catalog(global)?, args),
        Command::Deploy { target } => deploy::run(global, &load_catalog(global)?, target),
        Command::Topics { action } => topics::run(global, &load_catalog(global)?, action).await,
        Command::Schemas { action } => {
            schemas::run(&load_catalog(global)?, &*registry(global)?, action).await
        }
        Command::Produce(args) => produce::run(global, load_catalog(global)?, args).await,
        Command::Tail(args) => tail::run(global, args).await,
        Command::Lag(args) => lag::run(global, load_catalog(global)?, args).await,
        Command::Dlq { action } => dlq::run(global, &load_catalog(global)?, action).await,
        Command::Token(args) => token::run(args),
        Command::Db { action } => db::run(action).await,
    }
}

/// The catalog with the namespace applied; problems listed, exit 65.
pub(crate) fn load_catalog(global: &Global) -> Result<Catalog, Failure> {
    let paths = CatalogPaths {
        topology: global.topology.clone(),
        schemas: global.schemas.clone(),
    };
    Catalog::load(&paths)
        .map_err(|e| Failure::Data(e.to_string()))?
        .with_namespace(global.namespace.as_deref())
        .map_err(Failure::Usage)
}

pub(crate) fn kafka_config(global: &Global) -> KafkaConfig {
    KafkaConfig::new(&global.bootstrap, "circ")
}

pub(crate) fn timeout(global: &Global) -> Duration {
    global.timeout.max(Duration::from_secs(1))
}

pub(crate) fn registry(global: &Global) -> Result<Arc<SchemaRegistry>, Failure> {
    let mut config = RegistryConfig::new(&global.registry);
    config.timeout = timeout(global);
    SchemaRegistry::new(config)
        .map(Arc::new)
        .map_err(|e| Failure::Usage(e.to_string()))
}

/// Prints a value as one line of JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
