//! `payments`: the wallet ledger.

use circulatory_group_payments::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
