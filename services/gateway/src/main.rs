//! `gateway`: tracing → configuration → build → serve until SIGTERM/SIGINT → close connections.

use std::process::ExitCode;

use circulatory::process::{init_logs, parse_flags, shutdown_signal, Exit, Logs};
use circulatory_gateway::config::Config;

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
            eprintln!("gateway: configuration: {problem}");
        }
        return Exit::Usage.into();
    }
    match run(config).await {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gateway stopped");
            Exit::Failed.into()
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let gateway = circulatory_gateway::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, instance = %gateway.instance, "gateway listening");
    circulatory_gateway::serve(listener, gateway, config.drain, shutdown_signal()).await?;
    tracing::info!("gateway stopped cleanly");
    Ok(())
}
