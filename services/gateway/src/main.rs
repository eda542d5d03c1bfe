//! `gateway`: tracing → configuration → build → serve until SIGTERM/SIGINT → close connections.

use std::process::ExitCode;
use std::time::Duration;

use circulatory_gateway::config::Config;
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
    // Bad flags exit 64 like every other configuration problem (help and version exit 0).
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(64);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let problems = config.problems();
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("gateway: configuration: {problem}");
        }
        return ExitCode::from(64);
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gateway stopped");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let gateway = circulatory_gateway::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, instance = %gateway.instance, "gateway listening");
    circulatory_gateway::serve(
        listener,
        gateway,
        Duration::from_millis(config.drain_ms),
        shutdown_signal(),
    )
    .await?;
    tracing::info!("gateway stopped cleanly");
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
    tracing::info!("shutdown signal received: closing connections");
}
