//! `ingest`: tracing → configuration → build → serve until SIGTERM/SIGINT → drain.

use std::process::ExitCode;

use circulatory::process::{init_logs, parse_flags, shutdown_signal, Exit, Logs};
use circulatory_ingest::config::Config;

/// jemalloc for every allocation of the process, librdkafka's included. Per event the producer
/// allocates and frees a message and each of its headers on three threads (request handler,
/// broker thread, delivery reports); glibc's arenas spent a third of the ingest's CPU on that
/// (lock hand-offs between threads, `malloc_consolidate`). See
/// `scripts/bench/results/ingest-investigation.md` §8.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    init_logs(Logs::Service);
    let config: Config = match parse_flags() {
        Ok(config) => config,
        Err(exit) => return exit.into(),
    };
    let problems = config.problems();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("ingest: configuration: {problem}");
        }
        return Exit::Usage.into();
    }
    match run(config).await {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "ingest stopped");
            Exit::Failed.into()
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let service = circulatory_ingest::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "ingest listening");
    circulatory_ingest::serve(listener, service, &config, shutdown_signal()).await?;
    tracing::info!("ingest stopped cleanly");
    Ok(())
}
