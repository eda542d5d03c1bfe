//! `vector-update`: users' preference vectors and served recommendations.

use circulatory_group_vector_update::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_group_common::GroupAllocator =
    circulatory_group_common::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_group_common::runner::main(GROUP, register)
}
