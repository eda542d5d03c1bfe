//! `circ`: the Circulatory operator CLI.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CIRC_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    match commands::run(cli).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("circ: {failure:#}");
            failure.exit_code()
        }
    }
}
