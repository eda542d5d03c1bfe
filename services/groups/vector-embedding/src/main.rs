//! `vector-embedding`: video embeddings and recommendable videos.

use circulatory_group_vector_embedding::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
