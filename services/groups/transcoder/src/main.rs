//! `transcoder`: probes uploads and transcodes videos to HLS.

use circulatory_group_transcoder::{register, GROUP};

fn main() -> std::process::ExitCode {
    circulatory_groups::runner::main(GROUP, register)
}
