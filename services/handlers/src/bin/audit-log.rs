//! `audit-log`: the audit trail of admin actions, mutes and health changes.

use circulatory_handlers::{groups::audit_log, runner};

fn main() -> std::process::ExitCode {
    runner::main(audit_log::GROUP, audit_log::register)
}
