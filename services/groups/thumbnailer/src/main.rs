//! `thumbnailer`.

use circulatory_group_thumbnailer::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
