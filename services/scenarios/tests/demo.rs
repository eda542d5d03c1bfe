//! The `demo` binary (what `scripts/demo` runs): against the scenario's pipeline started in this
//! process it prints the STEP table and succeeds; without a pipeline it says so and exits 69
//! before sending anything.

mod support;

use std::process::Output;

use tokio::process::Command;

fn demo() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_demo"));
    command.current_dir(circulatory_testkit::repo_root());
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_walks_through_every_step() {
    let pipeline = support::Pipeline::start().await;
    let connect = pipeline.connect();
    let output = demo()
        .args(["--ingest-url", &connect.ingest_url])
        .args(["--jwt-secret", support::SECRET])
        .args(["--namespace", &pipeline.env.namespace])
        .args(["--bootstrap", &connect.bootstrap])
        .args(["--redis", &connect.redis_url])
        .args(["--database-url", &connect.database_url])
        .args(["--object-store", pipeline.store.dir.to_str().unwrap()])
        .args(["--timeout", "3m"])
        .arg("--no-group-check")
        .env_remove("CIRC_TOKEN")
        .output()
        .await
        .expect("demo runs");
    let (stdout, stderr) = text(&output);
    println!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for step in 1..=7 {
        assert!(
            stdout.contains(&format!("STEP {step} ")),
            "no STEP {step}:\n{stdout}"
        );
    }
    assert!(stdout.contains("Your video is now live!"), "{stdout}");
    assert!(
        stdout.contains("realtime: feed:updates:{follower} received video.published 3/3"),
        "{stdout}"
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn without_a_pipeline_the_demo_says_so() {
    // Nothing listens on port 1.
    let output = demo()
        .args(["--ingest-url", "http://127.0.0.1:1"])
        .args(["--jwt-secret", support::SECRET])
        .args(["--group", "transcoder=127.0.0.1:1"])
        .env_remove("CIRC_TOKEN")
        .output()
        .await
        .expect("demo runs");
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(69), "{stdout}\n{stderr}");
    assert!(stderr.contains("the pipeline is not up"), "{stderr}");
    assert!(
        stderr.contains("the ingest API at http://127.0.0.1:1 does not answer"),
        "{stderr}"
    );
    assert!(
        stderr.contains("consumer group transcoder does not answer at http://127.0.0.1:1/readyz"),
        "{stderr}"
    );
    assert!(stderr.contains("scripts/up"), "{stderr}");
    assert!(!stdout.contains("STEP 1"), "{stdout}");

    // No token, no secret, no secret file.
    let output = demo()
        .args(["--jwt-secret-file", "/nonexistent/jwt-secret"])
        .env_remove("CIRC_TOKEN")
        .env_remove("CIRC_JWT_SECRET")
        .output()
        .await
        .expect("demo runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/jwt-secret cannot be read (scripts/up creates it)"),
        "{stderr}"
    );
}
