//! `video-publisher`.

use circulatory_group_video_publisher::{register, GROUP};

#[global_allocator]
static ALLOCATOR: circulatory_group_common::GroupAllocator =
    circulatory_group_common::GroupAllocator;

fn main() -> std::process::ExitCode {
    circulatory_group_common::runner::main(GROUP, register)
}
