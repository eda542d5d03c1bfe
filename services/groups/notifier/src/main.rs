//! `notifier`: the notification inbox, its delivery, and notifications derived from activity.

use circulatory_group_notifier::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_groups::GroupAllocator = circulatory_groups::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
