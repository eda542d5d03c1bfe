//! `thumbnailer`.

use circulatory_group_thumbnailer::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_group_common::GroupAllocator =
    circulatory_group_common::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_group_common::runner::main(GROUP, register)
}
