//! `audit-log`: the audit trail of admin actions, mutes and health changes.

use circulatory_group_audit_log::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
