//! `feed-fanout`: followers' feeds in Redis.

use circulatory_group_feed_fanout::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
