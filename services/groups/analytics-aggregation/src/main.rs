//! `analytics-aggregation`: counters, creator statistics, trending and rollups.

use circulatory_group_analytics_aggregation::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_group_common::GroupAllocator =
    circulatory_group_common::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_group_common::runner::main(GROUP, register)
}
