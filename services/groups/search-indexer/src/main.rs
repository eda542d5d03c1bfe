//! `search-indexer`: the full-text index of posts, comments and users.

use circulatory_group_search_indexer::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
