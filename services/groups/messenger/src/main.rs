//! `messenger`: direct messages, receipts and offline notifications.

use circulatory_group_messenger::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
