//! Where a binary's logs go: one setup, `CIRC_LOG` as the filter everywhere.

/// The two kinds of binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// Services (ingest, gateway, console, groups): JSON lines on stdout, `info` by default.
    Service,
    /// Command-line tools (`circ`): plain text on stderr, `warn` by default, so that stdout
    /// stays the command's output.
    Tool,
}

/// Installs the process's log subscriber. `CIRC_LOG` (an `EnvFilter`, e.g.
/// `info,circulatory=debug`) overrides the default level.
pub fn init_logs(kind: Logs) {
    let default = match kind {
        Logs::Service => "info",
        Logs::Tool => "warn",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("CIRC_LOG").unwrap_or_else(|_| default.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match kind {
        Logs::Service => builder.json().init(),
        Logs::Tool => builder.with_writer(std::io::stderr).init(),
    }
}
