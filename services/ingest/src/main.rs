//! `ingest`: tracing → configuration → build → serve until SIGTERM/SIGINT → drain.

use std::process::ExitCode;

use circulatory_ingest::config::Config;
use clap::Parser;

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
