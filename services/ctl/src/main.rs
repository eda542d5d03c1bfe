//! `circ`: the Circulatory operator CLI.

use std::process::ExitCode;

use circulatory::process::{init_logs, parse_flags, Logs};

mod cli;
mod commands;

#[tokio::main]
async fn main() -> ExitCode {
    init_logs(Logs::Tool);
    let cli: cli::Cli = match parse_flags() {
        Ok(cli) => cli,
        Err(exit) => return exit.into(),
    };
    match commands::run(cli).await {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("circ: {failure:#}");
            failure.exit_code()
        }
    }
}
