//! `user-lifecycle`: profiles, settings, the follow graph and blocks.

use circulatory_group_user_lifecycle::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_groups::GroupAllocator = circulatory_groups::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
