//! `realtime-bridge`: publishes routed events on their Redis pub/sub channels.

use circulatory_group_realtime_bridge::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_groups::GroupAllocator = circulatory_groups::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
