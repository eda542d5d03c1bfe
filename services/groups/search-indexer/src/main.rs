//! `search-indexer`: the full-text index of posts, comments and users.

use circulatory_group_search_indexer::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_groups::GroupAllocator = circulatory_groups::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
