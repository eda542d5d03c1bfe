//! `vector-embedding`: video embeddings and recommendable videos.

use circulatory_group_vector_embedding::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_groups::GroupAllocator = circulatory_groups::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
