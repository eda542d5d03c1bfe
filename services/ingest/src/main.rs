//! `ingest`: tracing → configuration → build → serve until SIGTERM/SIGINT → drain.

use std::process::ExitCode;

use circulatory_ingest::config::Config;
use clap::Parser;

/// jemalloc for every allocation of the process, librdkafka's included. Per event the producer
/// allocates and frees a message and each of its headers on three threads (request handler,
/// broker thread, delivery reports); glibc's arenas spent a third of the ingest's CPU on that
/// (lock hand-offs between threads, `malloc_consolidate`). See
/// `scripts/bench/results/ingest-investigation.md` §8.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CIRC_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Config::parse();
    let problems = config.problems();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("ingest: configuration: {problem}");
        }
        return ExitCode::from(64);
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "ingest stopped");
            ExitCode::from(1)
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

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown signal received: draining");
}
