//! The ingest binary's exit codes for what it refuses before it starts: a flag it does not know
//! and a configuration it cannot run are both 64 (usage), never clap's 2. Nothing is contacted.

use std::process::Command;

fn ingest(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ingest"))
        .args(args)
        .env("CIRC_LOG", "off")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn refused_flags_and_configuration_exit_64() {
    let (code, stderr) = ingest(&["--no-such-flag"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    let (code, stderr) = ingest(&["--listen", "not-an-address"]);
    assert_eq!(code, Some(64), "{stderr}");
    let (code, stdout_or_err) = ingest(&["--help"]);
    assert_eq!(code, Some(0), "{stdout_or_err}");
}
