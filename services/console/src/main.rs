//! `console`: tracing → configuration → build → serve until SIGTERM/SIGINT.

use std::process::ExitCode;

use circulatory::process::{init_logs, parse_flags, shutdown_signal, Exit, Logs};
use circulatory_console::config::Config;

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
            eprintln!("console: configuration: {problem}");
        }
        return Exit::Usage.into();
    }
    match run(config).await {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "console stopped");
            Exit::Failed.into()
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
