//! `console`: tracing → configuration → build → serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use circulatory_console::config::Config;
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
            eprintln!("console: configuration: {problem}");
        }
        return ExitCode::from(64);
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "console stopped");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let service = circulatory_console::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, "console listening");
    circulatory::http_server::serve(
        listener,
        service.router(),
        Default::default(),
        shutdown_signal(),
    )
    .await?;
    service.shutdown();
    tracing::info!("console stopped cleanly");
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
}
