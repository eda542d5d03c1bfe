//! `moderation`: screens posts and comments, keeps the review queue, enforces decisions.

use circulatory_group_moderation::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_groups::GroupAllocator = circulatory_groups::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
