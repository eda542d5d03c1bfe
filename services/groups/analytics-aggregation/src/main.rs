//! `analytics-aggregation`: counters, creator statistics, trending and rollups.

use circulatory_group_analytics_aggregation::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_groups::GroupAllocator = circulatory_groups::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
