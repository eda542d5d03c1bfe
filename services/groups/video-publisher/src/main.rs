//! `video-publisher`.

use circulatory_group_video_publisher::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
