//! `moderation`: screens posts and comments, keeps the review queue, enforces decisions.

use circulatory_group_moderation::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
