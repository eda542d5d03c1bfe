//! `realtime-bridge`: publishes routed events on their Redis pub/sub channels.

use circulatory_group_realtime_bridge::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
