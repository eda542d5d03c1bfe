//! `vector-update`: users' preference vectors and served recommendations.

use circulatory_group_vector_update::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
