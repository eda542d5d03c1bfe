//! One exit-code table for every binary, after sysexits(3) where a code fits.

use std::process::ExitCode;

/// Why a process ends. Every binary uses these codes and no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, or a clean stop on a signal; also `--help` and `--version`.
    Ok,
    /// 1: stopped by a failure of its own (the dead-letter flood guard, a lost transaction, ...).
    Failed,
    /// 2: `circ` only: the cluster differs from the declaration (`circ topics plan`).
    Differs,
    /// 64 (`EX_USAGE`): bad flags or configuration; nothing was started.
    Usage,
    /// 65 (`EX_DATAERR`): the declaration (`topics.yaml`, schemas) or the input is invalid.
    Data,
    /// 69 (`EX_UNAVAILABLE`): a dependency (Kafka, the registry, Redis, PostgreSQL) is unreachable.
    Unavailable,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Differs => 2,
            Exit::Usage => 64,
            Exit::Data => 65,
            Exit::Unavailable => 69,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Parses the process's flags and environment. A usage error is printed and is [`Exit::Usage`]
/// (clap's own default, 2, would read as "plan differs" from `circ`); `--help` and `--version`
/// print and are [`Exit::Ok`].
pub fn parse_flags<T: clap::Parser>() -> Result<T, Exit> {
    parse_from(std::env::args_os())
}

fn parse_from<T, I, A>(args: I) -> Result<T, Exit>
where
    T: clap::Parser,
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    T::try_parse_from(args).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            Exit::Usage
        } else {
            Exit::Ok
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(version)]
    struct Flags {
        #[arg(long)]
        port: u16,
    }

    #[test]
    fn a_usage_error_is_64_and_help_is_0() {
        let parsed: Flags = parse_from(["bin", "--port", "8080"]).expect("valid flags");
        assert_eq!(parsed.port, 8080);
        assert_eq!(
            parse_from::<Flags, _, _>(["bin", "--port", "eighty"]).unwrap_err(),
            Exit::Usage
        );
        assert_eq!(
            parse_from::<Flags, _, _>(["bin", "--nope"]).unwrap_err(),
            Exit::Usage
        );
        assert_eq!(
            parse_from::<Flags, _, _>(["bin", "--help"]).unwrap_err(),
            Exit::Ok
        );
        assert_eq!(
            parse_from::<Flags, _, _>(["bin", "--version"]).unwrap_err(),
            Exit::Ok
        );
    }

    #[test]
    fn the_codes_are_distinct() {
        let all = [
            Exit::Ok,
            Exit::Failed,
            Exit::Differs,
            Exit::Usage,
            Exit::Data,
            Exit::Unavailable,
        ];
        let codes: std::collections::BTreeSet<u8> = all.iter().map(|e| e.code()).collect();
        assert_eq!(codes.len(), all.len());
        assert_eq!(Exit::Usage.code(), 64);
        assert_eq!(Exit::Unavailable.code(), 69);
    }
}
