//! `circ` as an operator runs it, against the real local stack, each test in a fresh namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use circulatory::topics::TopicAdmin;
use circulatory_testkit::{fresh_namespace, repo_root, sample_data, TestEnv};

fn circ(namespace: &str, args: &[&str]) -> Output {
    circ_in(&repo_root(), namespace, args)
}

/// Runs `circ` with `root` holding `topics.yaml` and `schemas/`.
fn circ_in(root: &Path, namespace: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_circ"))
        .args(args)
        .env("CIRC_TOPOLOGY", root.join("topics.yaml"))
        .env("CIRC_SCHEMAS", root.join("schemas"))
        .env("CIRC_NAMESPACE", namespace)
        .env("CIRC_KAFKA_BOOTSTRAP", circulatory_testkit::bootstrap())
        .env("CIRC_REGISTRY_URL", circulatory_testkit::registry_url())
        .env("CIRC_LOG", "error")
        .output()
        .expect("circ runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn topics_apply_creates_every_topic_and_is_a_noop_the_second_time() {
    let env = TestEnv::new();
    let namespace = env.namespace.clone();
    let catalog = env.catalog.as_ref().clone();
    let wanted = catalog.topic_specs(Some(1));

    let plan = circ(&namespace, &["topics", "plan", "--replication-factor", "1"]);
    assert_eq!(
        plan.status.code(),
        Some(2),
        "plan differs: {}",
        describe(&plan)
    );
    assert!(stdout(&plan).contains(&format!("{} to create", wanted.len())));

    let first = circ(
        &namespace,
        &["topics", "apply", "--replication-factor", "1"],
    );
    assert!(first.status.success(), "{}", describe(&first));
    assert!(stdout(&first).contains(&format!("applied: {} created", wanted.len())));

    let second = circ(
        &namespace,
        &["topics", "apply", "--replication-factor", "1"],
    );
    assert!(second.status.success(), "{}", describe(&second));
    assert!(
        stdout(&second).contains("nothing to do"),
        "{}",
        describe(&second)
    );
    assert!(stdout(&second).contains(&format!("{} unchanged", wanted.len())));

    let existing = TopicAdmin::new(&env.kafka, Duration::from_secs(15))
        .unwrap()
        .existing()
        .await
        .unwrap();
    for group in catalog.topology().groups.values() {
        let dlq = format!("{namespace}.{}.dlq", group.name);
        assert!(existing.contains_key(&dlq), "{dlq} missing");
        for delay in &group.retry_delays {
            let retry = catalog.topic_name(&group.retry_topic_base(*delay));
            assert!(existing.contains_key(&retry), "{retry} missing");
        }
    }
    let payments = &existing[&format!("{namespace}.payments.critical")];
    assert_eq!(
        payments.configs["retention.ms"],
        (30u64 * 86_400_000).to_string()
    );
}

#[tokio::test]
async fn produce_then_tail_shows_the_decoded_event_with_its_headers() {
    let env = TestEnv::new();
    let topic = env.topic_of("comment.added");
    env.create_topics(&[&topic]).await;
    let data = sample_data(&env.catalog.event("comment.added").unwrap().schema_json);

    let produced = circ(
        &env.namespace,
        &[
            "produce",
            "comment.added",
            "--data",
            &data.to_string(),
            "--correlation-id",
            "corr-cli",
        ],
    );
    assert!(produced.status.success(), "{}", describe(&produced));
    let delivered: serde_json::Value = serde_json::from_str(stdout(&produced).trim()).unwrap();
    assert_eq!(delivered["topic"], topic);

    let tailed = circ(
        &env.namespace,
        &[
            "tail",
            &topic,
            "--from-beginning",
            "--max",
            "1",
            "--idle",
            "20s",
        ],
    );
    assert!(tailed.status.success(), "{}", describe(&tailed));
    let line: serde_json::Value = serde_json::from_str(stdout(&tailed).trim()).unwrap();
    assert_eq!(line["data"], data);
    assert_eq!(line["offset"], delivered["offset"]);
    assert_eq!(line["key"], data["postId"]);
    assert_eq!(line["headers"]["ce_type"], "comment.added");
    assert_eq!(line["headers"]["ce_id"], delivered["id"]);
    assert_eq!(line["headers"]["ce_specversion"], "1.0");
    assert_eq!(line["headers"]["content-type"], "application/avro");
    assert_eq!(line["headers"]["correlation_id"], "corr-cli");
    assert_eq!(line["record"], "circulatory.content.CommentAdded");
}

#[test]
fn produce_reports_every_schema_violation_and_exits_65() {
    let output = circ(
        &fresh_namespace(),
        &[
            "produce",
            "payment.initiated",
            "--data",
            r#"{"amountMinor":"5","extra":1}"#,
        ],
    );
    assert_eq!(output.status.code(), Some(65), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/amountMinor: expected integer, found string"),
        "{stderr}"
    );
    assert!(stderr.contains("/extra: unknown field"), "{stderr}");
    assert!(
        stderr.contains("/paymentId: missing required field"),
        "{stderr}"
    );
}

/// A private copy of the repository's declaration, to change without touching the real one.
fn copy_declaration(namespace: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("circ-{namespace}"));
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
                    std::fs::copy(file.path(), target.join(file.file_name())).unwrap();
                }
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    };
    copy(&repo_root().join("schemas"), &root.join("schemas"));
    std::fs::copy(repo_root().join("topics.yaml"), root.join("topics.yaml")).unwrap();
    root
}

#[test]
fn schemas_register_then_an_incompatible_copy_is_rejected_with_the_reason() {
    let namespace = fresh_namespace();
    let registered = circ(&namespace, &["schemas", "register"]);
    assert!(registered.status.success(), "{}", describe(&registered));
    assert!(stdout(&registered).contains("registered with FULL_TRANSITIVE"));
    let check = circ(&namespace, &["schemas", "check"]);
    assert!(check.status.success(), "{}", describe(&check));

    let root = copy_declaration(&namespace);
    let path = root.join("schemas/payments/payment.initiated.avsc");
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Changing a field's type breaks every reader and writer: FULL_TRANSITIVE must refuse it.
    for field in schema["fields"].as_array_mut().unwrap() {
        if field["name"] == "amountMinor" {
            field["type"] = serde_json::json!("string");
        }
    }
    std::fs::write(&path, schema.to_string()).unwrap();

    let check = circ_in(&root, &namespace, &["schemas", "check"]);
    assert_ne!(check.status.code(), Some(0), "{}", describe(&check));
    assert!(stdout(&check).contains("rejected"), "{}", describe(&check));
    let register = circ_in(&root, &namespace, &["schemas", "register"]);
    assert_eq!(register.status.code(), Some(65), "{}", describe(&register));
    let out = stdout(&register);
    let line = out
        .lines()
        .find(|l| l.starts_with("rejected") && l.contains("PaymentInitiated"))
        .unwrap_or_else(|| panic!("{}", describe(&register)));
    assert!(
        line.len() > "rejected ".len() + 60,
        "the registry's reason is shown: {line}"
    );
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_broken_topology_lists_every_problem_and_exits_65() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/fixtures/broken");
    let output = circ_in(&fixture, "unused", &["catalog"]);
    assert_eq!(output.status.code(), Some(65), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("problem(s) in the topology"), "{stderr}");
    assert!(stderr.contains("unknown tier `urgent`"), "{stderr}");
    assert!(stderr.contains("strictly increasing"), "{stderr}");
}

mod dead_letters {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use circulatory::consumer::{ConsumerGroup, Event, HandlerError};
    use tokio_util::sync::CancellationToken;

    type Calls = Arc<Mutex<Vec<(String, u32)>>>;

    fn start(
        env: &TestEnv,
        group: &str,
        calls: Calls,
        broken: Arc<AtomicBool>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let mut consumer = ConsumerGroup::new(
            env.catalog.clone(),
            group,
            env.kafka.clone(),
            env.registry.clone(),
        )
        .unwrap();
        for event_type in &env.catalog.group(group).unwrap().subscribe {
            let calls = calls.clone();
            let broken = broken.clone();
            consumer = consumer.handler(event_type, move |event: Event, _ctx| {
                let calls = calls.clone();
                let broken = broken.clone();
                async move {
                    calls
                        .lock()
                        .unwrap()
                        .push((event.id().to_string(), event.attempt));
                    if broken.load(Ordering::SeqCst) {
                        Err(HandlerError::permanent("classifier rejected the text"))
                    } else {
                        Ok(())
                    }
                }
            });
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { consumer.run(stop).await.unwrap() }
        });
        (stop, task)
    }

    fn dlq(env: &TestEnv, args: &[&str]) -> Output {
        let database = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory".into()
        });
        let mut all = vec!["dlq"];
        all.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_circ"))
            .args(&all)
            .env("CIRC_TOPOLOGY", repo_root().join("topics.yaml"))
            .env("CIRC_SCHEMAS", repo_root().join("schemas"))
            .env("CIRC_NAMESPACE", &env.namespace)
            .env("CIRC_KAFKA_BOOTSTRAP", circulatory_testkit::bootstrap())
            .env("CIRC_REGISTRY_URL", circulatory_testkit::registry_url())
            .env("DATABASE_URL", database)
            .env("CIRC_LOG", "error")
            .output()
            .unwrap()
    }

    fn listed(output: &Output) -> Vec<serde_json::Value> {
        assert!(output.status.success(), "{}", describe(output));
        stdout(output)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn list_show_discard_and_replay_to_the_failed_group_only() {
        let env = TestEnv::new();
        env.create_group_topics("moderation").await;
        env.create_group_topics("search-indexer").await;
        let pool = circulatory::db::connect(
            &std::env::var("DATABASE_URL").unwrap_or_else(|_| {
                "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory".into()
            }),
            2,
        )
        .await
        .unwrap();
        circulatory::db::migrate(&pool).await.unwrap();
        let publisher = env.publisher();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let data = sample_data(&env.catalog.event("comment.added").unwrap().schema_json);
            ids.push(env.publish(&publisher, "comment.added", data).await.id);
        }
        let moderation_calls: Calls = Arc::default();
        let indexer_calls: Calls = Arc::default();
        let broken = Arc::new(AtomicBool::new(true));
        let (stop_a, task_a) = start(&env, "moderation", moderation_calls.clone(), broken.clone());
        let (stop_b, task_b) = start(
            &env,
            "search-indexer",
            indexer_calls.clone(),
            Arc::new(AtomicBool::new(false)),
        );
        wait_until("3 dead letters and 3 indexed", || {
            moderation_calls.lock().unwrap().len() >= 3 && indexer_calls.lock().unwrap().len() >= 3
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;

        let open = listed(&dlq(&env, &["list", "--group", "moderation", "--json"]));
        assert_eq!(open.len(), 3, "{open:?}");
        assert!(open
            .iter()
            .all(|l| l["reason"] == "permanent" && l["type"] == "comment.added"));
        let first = open[0]["id"].as_str().unwrap().to_string();

        let shown = dlq(&env, &["show", "--group", "moderation", &first]);
        assert!(shown.status.success(), "{}", describe(&shown));
        let shown: serde_json::Value = serde_json::from_str(&stdout(&shown)).unwrap();
        assert_eq!(
            shown["headers"]["circ_error_message"],
            "classifier rejected the text"
        );
        assert!(shown["data"]["commentId"].is_string(), "{shown}");

        let discarded = dlq(&env, &["discard", "--group", "moderation", "--id", &first]);
        assert!(
            stdout(&discarded).contains("1 dead letter(s) discarded"),
            "{}",
            describe(&discarded)
        );
        let refused = dlq(&env, &["replay", "--group", "moderation"]);
        assert_eq!(
            refused.status.code(),
            Some(64),
            "replay without a selection is refused"
        );

        broken.store(false, Ordering::SeqCst);
        let replayed = dlq(
            &env,
            &[
                "replay",
                "--group",
                "moderation",
                "--all-open",
                "--rate",
                "20",
            ],
        );
        assert!(
            stdout(&replayed).contains("2 dead letter(s) replayed"),
            "{}",
            describe(&replayed)
        );
        wait_until("the replays", || {
            moderation_calls.lock().unwrap().len() >= 5
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop_a.cancel();
        stop_b.cancel();
        task_a.await.unwrap();
        task_b.await.unwrap();

        let calls = moderation_calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 5, "3 failures, then 2 replays: {calls:?}");
        assert!(
            calls[3..].iter().all(|(_, attempt)| *attempt == 1),
            "attempt count reset"
        );
        assert_eq!(
            indexer_calls.lock().unwrap().len(),
            3,
            "the other group saw nothing again"
        );
        assert!(listed(&dlq(&env, &["list", "--group", "moderation", "--json"])).is_empty());
        let everything = listed(&dlq(
            &env,
            &["list", "--group", "moderation", "--json", "--all"],
        ));
        let mut resolutions: Vec<&str> = everything
            .iter()
            .map(|l| l["resolution"].as_str().unwrap())
            .collect();
        resolutions.sort();
        assert_eq!(resolutions, ["discarded", "replayed", "replayed"]);
    }
}

#[tokio::test]
async fn lag_counts_what_a_group_has_not_committed() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let env = TestEnv::new();
    env.create_group_topics("messenger").await;
    let publisher = env.publisher();
    let schema = env
        .catalog
        .event("message.sent")
        .unwrap()
        .schema_json
        .clone();
    let mut last = None;
    for _ in 0..5 {
        last = Some(
            env.publish(&publisher, "message.sent", sample_data(&schema))
                .await,
        );
    }
    let lag_of = |output: &Output| -> serde_json::Value {
        assert_eq!(output.status.code(), Some(0), "{}", describe(output));
        serde_json::from_str(stdout(output).lines().next().expect("one line")).unwrap()
    };
    // Never committed: everything is waiting.
    let before = lag_of(&circ(
        &env.namespace,
        &["lag", "--group", "messenger", "--json"],
    ));
    assert_eq!(before["group"], "messenger");
    assert_eq!(before["waiting"], 5);
    assert_eq!(before["delayed"], 0);

    // The group commits past the last event's partition: that partition's events are done.
    let last = last.unwrap();
    let committer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", circulatory_testkit::bootstrap())
        .set("group.id", env.catalog.topic_name("messenger"))
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    list.add_partition_offset(
        &last.topic,
        last.partition,
        rdkafka::Offset::Offset(last.offset + 1),
    )
    .unwrap();
    committer.commit(&list, CommitMode::Sync).unwrap();
    let on_that_partition = before["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == last.topic.as_str() && p["partition"] == last.partition)
        .map(|p| p["end"].as_i64().unwrap() - p["start"].as_i64().unwrap())
        .unwrap();
    let after = lag_of(&circ(
        &env.namespace,
        &["lag", "--group", "messenger", "--json"],
    ));
    assert_eq!(after["waiting"], 5 - on_that_partition);

    let table = circ(&env.namespace, &["lag", "--partitions"]);
    assert_eq!(table.status.code(), Some(0), "{}", describe(&table));
    let text = stdout(&table);
    assert!(text.starts_with("GROUP"), "{text}");
    assert!(text.contains("messenger"), "{text}");
    assert!(
        text.contains(&format!("{}[{}]", last.topic, last.partition)),
        "{text}"
    );
    let unknown = circ(&env.namespace, &["lag", "--group", "nope"]);
    assert_eq!(unknown.status.code(), Some(64), "{}", describe(&unknown));
}

/// Usage errors are 64, like every binary's bad configuration, and never 2, which says that the
/// cluster differs from the declaration. Nothing is contacted: the flags are refused first.
#[test]
fn a_usage_error_exits_64_and_help_exits_0() {
    let usage: [&[&str]; 4] = [
        &["topics", "plan", "--no-such-flag"],
        &["no-such-command"],
        &["lag", "--group"],
        &["topics", "plan", "--replication-factor", "three"],
    ];
    for args in usage {
        let output = circ("usage", args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).starts_with("error:"),
            "{args:?}: {}",
            describe(&output)
        );
    }
    let help = circ("usage", &["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", describe(&help));
    assert!(stdout(&help).contains("Usage"), "{}", describe(&help));
}
