//! moderation against the real stack: screened posts and comments flag what the rules match
//! (through Kafka back into the review queue), decisions close the queue item and emit their
//! enforcement, a redelivered event emits and changes nothing more, an unreachable database ends
//! in the dead letters, and an invalid rules file stops the binary with exit code 64.

use std::path::PathBuf;
use std::time::Duration;

use circulatory::codec::avro_to_json;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_moderation::{register, Options, GROUP};
use circulatory_testkit::{count_records, header, read_records, repo_root, TestEnv};
use rdkafka::message::Message;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(30);

fn default_rules() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules.yaml")
}

/// Starts the group with the default rules, after creating the topics of what it emits.
async fn start(env: &TestEnv, deps: &circulatory_group_common::deps::Deps) -> support::Running {
    create_emitted_topics(env).await;
    support::start(
        env,
        deps,
        GROUP,
        register,
        Options::with_rules(default_rules()),
    )
    .await
}

async fn create_emitted_topics(env: &TestEnv) {
    // content.flagged and user.muted share a topic: each name once.
    let emitted: std::collections::BTreeSet<String> =
        ["content.flagged", "post.deleted", "user.muted"]
            .into_iter()
            .map(|t| env.topic_of(t))
            .collect();
    let emitted: Vec<&str> = emitted.iter().map(String::as_str).collect();
    env.create_topics_if_missing(&emitted).await;
}

/// Events of `event_type` in its topic so far: (id, data).
async fn emitted(env: &TestEnv, event_type: &str) -> Vec<(String, Value)> {
    let topic = env.topic_of(event_type);
    let count = count_records(&env.kafka, &topic).await;
    if count == 0 {
        return Vec::new();
    }
    let records = read_records(&env.kafka, &topic, count as usize, WITHIN).await;
    let mut out = Vec::new();
    for record in records {
        if header(&record, "ce_type").as_deref() != Some(event_type) {
            continue;
        }
        let decoded = env
            .oracle
            .decode(record.payload().expect("payload"))
            .await
            .expect("decoded");
        let id = header(&record, "ce_id").expect("ce_id");
        out.push((id, avro_to_json(&decoded.value)));
    }
    out
}

/// Waits until `event_type` has events matching `filter`, returns them.
async fn wait_emitted(
    env: &TestEnv,
    event_type: &str,
    filter: impl Fn(&Value) -> bool,
) -> Vec<(String, Value)> {
    eventually(&format!("{event_type} emitted"), WITHIN, || async {
        let found: Vec<_> = emitted(env, event_type)
            .await
            .into_iter()
            .filter(|(_, d)| filter(d))
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await
}

fn post(post_id: &str, author: &str, text: &str) -> Value {
    json!({
        "postId": post_id,
        "authorId": author,
        "text": text,
        "hashtags": [],
        "mentions": [],
        "mediaType": "TEXT",
        "videoId": null,
        "visibility": "PUBLIC",
        "createdAt": "2026-11-27T10:00:00Z"
    })
}

fn comment(comment_id: &str, post_id: &str, author: &str, text: &str) -> Value {
    json!({
        "commentId": comment_id,
        "postId": post_id,
        "authorId": author,
        "postAuthorId": uuid(),
        "parentCommentId": null,
        "text": text,
        "mentions": [],
        "createdAt": "2026-11-27T10:01:00Z"
    })
}

/// (status, content_kind, flag_count, reasons, sources, decision) of a content's items, oldest first.
type Item = (
    String,
    String,
    i32,
    Vec<String>,
    Vec<String>,
    Option<String>,
);

async fn items(pool: &sqlx::PgPool, content_id: &str) -> Vec<Item> {
    sqlx::query_as(
        "SELECT status, content_kind, flag_count, reasons, sources, decision \
         FROM moderation_queue WHERE content_id = $1 ORDER BY id",
    )
    .bind(content_id)
    .fetch_all(pool)
    .await
    .expect("query")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn screened_content_is_flagged_once_and_queued_for_review() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = start(&env, &deps).await;
    let publisher = env.publisher();
    let (spam_post, author) = (uuid(), uuid());
    let spam_event = uuid();
    let text = "Want to BUY   followers?! Also: I will, kill you.";
    publish_with_id(
        &env,
        &publisher,
        "post.created",
        &spam_event,
        post(&spam_post, &author, text),
    )
    .await;
    // A regex-only match (a shortened link), in a comment.
    let link_comment = uuid();
    publish_with_id(
        &env,
        &publisher,
        "comment.added",
        &uuid(),
        comment(&link_comment, &spam_post, &author, "see BIT.LY/x9Y2 now"),
    )
    .await;
    // Clean text flags nothing, even with a listed word inside another word.
    let (clean_post, clean_comment) = (uuid(), uuid());
    publish_with_id(
        &env,
        &publisher,
        "post.created",
        &uuid(),
        post(
            &clean_post,
            &author,
            "Sunset over the Nile; the losers' bracket starts at 5",
        ),
    )
    .await;
    publish_with_id(
        &env,
        &publisher,
        "comment.added",
        &uuid(),
        comment(
            &clean_comment,
            &clean_post,
            &author,
            "Lovely colours, thanks for sharing",
        ),
    )
    .await;
    // The spam post again (the same event id): nothing more is flagged.
    publish_with_id(
        &env,
        &publisher,
        "post.created",
        &spam_event,
        post(&spam_post, &author, text),
    )
    .await;

    // One flag per category, through Kafka.
    let flags = eventually("two flags of the post", WITHIN, || async {
        let flags: Vec<_> = emitted(&env, "content.flagged")
            .await
            .into_iter()
            .filter(|(_, d)| d["contentId"] == spam_post.as_str())
            .collect();
        (flags.len() >= 2).then_some(flags)
    })
    .await;
    let mut reasons: Vec<&str> = flags
        .iter()
        .map(|(_, d)| d["reason"].as_str().unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(reasons, ["SPAM", "VIOLENCE"]);
    let violence = &flags
        .iter()
        .find(|(_, d)| d["reason"] == "VIOLENCE")
        .unwrap()
        .1;
    assert_eq!(violence["contentKind"], "POST");
    assert_eq!(violence["authorId"], author.as_str());
    assert_eq!(violence["source"], "AUTOMATED");
    assert_eq!(violence["reporterId"], Value::Null);
    assert_eq!(violence["score"], 0.9);
    assert_eq!(violence["details"], "threats (high): i will kill you");
    let spam = &flags.iter().find(|(_, d)| d["reason"] == "SPAM").unwrap().1;
    assert_eq!(spam["details"], "engagement-spam (medium): buy followers");

    // The flags come back through Kafka into one open review item.
    let item = eventually("the post's review item", WITHIN, || async {
        items(&deps.pool, &spam_post)
            .await
            .into_iter()
            .find(|i| i.2 == 2)
    })
    .await;
    assert_eq!(
        item,
        (
            "OPEN".into(),
            "POST".into(),
            2,
            vec!["SPAM".into(), "VIOLENCE".into()],
            vec!["AUTOMATED".into()],
            None
        )
    );
    let link = eventually("the comment's review item", WITHIN, || async {
        items(&deps.pool, &link_comment).await.into_iter().next()
    })
    .await;
    assert_eq!(
        (link.1.as_str(), link.2, link.3.clone()),
        ("COMMENT", 1, vec!["SPAM".to_string()])
    );
    let (details, score): (Option<String>, Option<f64>) =
        sqlx::query_as("SELECT details, score FROM moderation_flags WHERE content_id = $1")
            .bind(&link_comment)
            .fetch_one(&deps.pool)
            .await
            .expect("flag row");
    assert_eq!(
        details.as_deref(),
        Some(r"shortened-links (low): /\m(bit\.ly|tinyurl\.com|t\.co)/\w+/")
    );
    assert_eq!(score, Some(0.3));

    // Let the duplicate and the clean content be handled, then check nothing more appeared.
    env.wait_until_settled(GROUP, WITHIN).await;
    let all = emitted(&env, "content.flagged").await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all
        .iter()
        .all(|(_, d)| d["contentId"] != clean_post.as_str()
            && d["contentId"] != clean_comment.as_str()));
    assert!(items(&deps.pool, &clean_post).await.is_empty());
    assert!(items(&deps.pool, &clean_comment).await.is_empty());
    assert_eq!(items(&deps.pool, &spam_post).await.len(), 1);
    assert_eq!(items(&deps.pool, &spam_post).await[0].2, 2);
    group.stop().await;
}

fn flag(content_id: &str, kind: &str, author: &str, reason: &str) -> Value {
    json!({
        "flagId": uuid(),
        "contentId": content_id,
        "contentKind": kind,
        "authorId": author,
        "reporterId": uuid(),
        "source": "USER_REPORT",
        "reason": reason,
        "details": "reported",
        "score": null,
        "flaggedAt": "2026-11-27T10:10:00Z"
    })
}

fn review(content_id: &str, kind: &str, author: &str, decision: &str, mute_until: Value) -> Value {
    json!({
        "reviewId": uuid(),
        "contentId": content_id,
        "contentKind": kind,
        "authorId": author,
        "flagId": null,
        "reviewerId": "7b0c3a52-6f38-4c8e-9a64-0c7f0b8e2f11",
        "decision": decision,
        "policy": "HARASSMENT",
        "muteUntil": mute_until,
        "notes": null,
        "reviewedAt": "2026-11-27T12:00:00Z"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decisions_close_the_item_and_are_enforced_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = start(&env, &deps).await;
    let publisher = env.publisher();
    let author = uuid();
    let (taken_down, muted, default_muted, approved) = (uuid(), uuid(), uuid(), uuid());

    // Two reports of one post aggregate into one open item.
    for (content, reason) in [
        (&taken_down, "HARASSMENT"),
        (&taken_down, "SPAM"),
        (&muted, "HARASSMENT"),
        (&default_muted, "HARASSMENT"),
        (&approved, "OTHER"),
    ] {
        env.publish(
            &publisher,
            "content.flagged",
            flag(content, "POST", &author, reason),
        )
        .await;
    }
    eventually("the reports queued", WITHIN, || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT coalesce(sum(flag_count), 0) FROM moderation_queue \
             WHERE content_id = ANY($1) AND status = 'OPEN'",
        )
        .bind(vec![
            taken_down.clone(),
            muted.clone(),
            default_muted.clone(),
            approved.clone(),
        ])
        .fetch_one(&deps.pool)
        .await
        .expect("query");
        (n == 5).then_some(())
    })
    .await;
    let item = &items(&deps.pool, &taken_down).await[0];
    assert_eq!(
        (item.2, item.3.clone(), item.4.clone()),
        (
            2,
            vec!["HARASSMENT".into(), "SPAM".into()],
            vec!["USER_REPORT".into()]
        )
    );

    // A takedown, delivered twice: one post.deleted.
    let takedown = review(&taken_down, "POST", &author, "TAKEDOWN", Value::Null);
    let takedown_id = uuid();
    publish_with_id(
        &env,
        &publisher,
        "content.moderation.reviewed",
        &takedown_id,
        takedown.clone(),
    )
    .await;
    publish_with_id(
        &env,
        &publisher,
        "content.moderation.reviewed",
        &takedown_id,
        takedown.clone(),
    )
    .await;
    // The same review under another event id (a client retry): no second enforcement either.
    publish_with_id(
        &env,
        &publisher,
        "content.moderation.reviewed",
        &uuid(),
        takedown.clone(),
    )
    .await;
    let deleted = wait_emitted(&env, "post.deleted", |d| d["postId"] == taken_down.as_str()).await;
    assert_eq!(deleted[0].1["reason"], "MODERATION_TAKEDOWN");
    assert_eq!(deleted[0].1["authorId"], author.as_str());
    assert_eq!(deleted[0].1["deletedBy"], takedown["reviewerId"]);
    assert_eq!(deleted[0].1["deletedAt"], "2026-11-27T12:00:00.000Z");

    // A mute with an end, one without (the default 24 h), and an approval (dismissal).
    env.publish(
        &publisher,
        "content.moderation.reviewed",
        review(
            &muted,
            "POST",
            &author,
            "MUTE_AUTHOR",
            json!("2026-12-04T12:00:00Z"),
        ),
    )
    .await;
    env.publish(
        &publisher,
        "content.moderation.reviewed",
        review(&default_muted, "POST", &author, "MUTE_AUTHOR", Value::Null),
    )
    .await;
    env.publish(
        &publisher,
        "content.moderation.reviewed",
        review(&approved, "POST", &author, "APPROVE", Value::Null),
    )
    .await;
    let mutes = eventually("two mutes", WITHIN, || async {
        let m = emitted(&env, "user.muted").await;
        (m.len() >= 2).then_some(m)
    })
    .await;
    let until_of = |content: &str| {
        mutes
            .iter()
            .find(|(_, d)| d["contentId"] == content)
            .map(|(_, d)| d["until"].clone())
    };
    assert_eq!(until_of(&muted), Some(json!("2026-12-04T12:00:00.000Z")));
    assert_eq!(
        until_of(&default_muted),
        Some(json!("2026-11-28T12:00:00.000Z"))
    );
    let mute = &mutes[0].1;
    assert_eq!(mute["userId"], author.as_str());
    assert_eq!(mute["reason"], "HARASSMENT");
    assert_eq!(mute["mutedAt"], "2026-11-27T12:00:00.000Z");

    eventually("every item closed", WITHIN, || async {
        let (open,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM moderation_queue WHERE content_id = ANY($1) AND status = 'OPEN'",
        )
        .bind(vec![
            taken_down.clone(),
            muted.clone(),
            default_muted.clone(),
            approved.clone(),
        ])
        .fetch_one(&deps.pool)
        .await
        .expect("query");
        (open == 0).then_some(())
    })
    .await;
    assert_eq!(
        items(&deps.pool, &approved).await[0].5.as_deref(),
        Some("APPROVE")
    );
    assert_eq!(
        items(&deps.pool, &taken_down).await[0].5.as_deref(),
        Some("TAKEDOWN")
    );
    let decisions: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT decision, enforcement, item_id IS NOT NULL FROM moderation_decisions \
         WHERE content_id = ANY($1) ORDER BY decision, enforcement",
    )
    .bind(vec![
        taken_down.clone(),
        muted.clone(),
        default_muted.clone(),
        approved.clone(),
    ])
    .fetch_all(&deps.pool)
    .await
    .expect("query");
    assert_eq!(
        decisions,
        vec![
            ("APPROVE".into(), None, true),
            ("MUTE_AUTHOR".into(), Some("user.muted".into()), true),
            ("MUTE_AUTHOR".into(), Some("user.muted".into()), true),
            ("TAKEDOWN".into(), Some("post.deleted".into()), true),
        ]
    );
    // Nothing more was enforced: one deletion, two mutes.
    env.wait_until_settled(GROUP, WITHIN).await;
    assert_eq!(emitted(&env, "post.deleted").await.len(), 1);
    assert_eq!(emitted(&env, "user.muted").await.len(), 2);
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    create_emitted_topics(&env).await;
    // The rules' regexes cannot be checked at start without a database: they are checked on use.
    let dead = DatabaseOutage {
        group: GROUP,
        register,
        options: Options::with_rules(default_rules()),
        event_type: "post.created",
        data: post(&uuid(), &uuid(), "buy followers"),
    }
    .dead_letters(env)
    .await;
    assert!(emitted(&dead.env, "content.flagged").await.is_empty());
}

/// A flag the group does not know is a usage error, 64, like any bad configuration (the runner
/// every group binary shares).
#[test]
fn an_unknown_flag_exits_64() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moderation"))
        .arg("--no-such-flag")
        .env("CIRC_LOG", "off")
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

/// Runs the binary with a rules file; returns its exit code and what it wrote on stderr.
fn run_binary_with_rules(rules: &std::path::Path) -> (Option<i32>, String) {
    let root = repo_root();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_moderation"))
        .arg("--rules")
        .arg(rules)
        .arg("--topology")
        .arg(root.join("topics.yaml"))
        .arg("--schemas")
        .arg(root.join("schemas"))
        .arg("--namespace")
        .arg(circulatory_testkit::fresh_namespace())
        .env("CIRC_LOG", "off")
        .output()
        .expect("binary runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn an_invalid_rules_file_stops_the_group_with_exit_code_64() {
    let dir = std::env::temp_dir().join(format!("moderation-rules-{}", uuid()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cases = [
        (
            "unknown-category.yaml",
            "rules:\n  - name: a\n    category: RUDE\n    severity: low\n    words: [x]\n",
            "unknown category `RUDE`",
        ),
        (
            "bad-regex.yaml",
            "rules:\n  - name: a\n    category: SPAM\n    severity: low\n    regexes: ['(unclosed']\n",
            "rule a: invalid regex `(unclosed`",
        ),
        ("not-yaml.yaml", "rules: [\n", "rules file"),
    ];
    for (name, text, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let (code, stderr) = run_binary_with_rules(&path);
        assert_eq!(code, Some(64), "{name}: {stderr}");
        assert!(stderr.contains(says), "{name}: {stderr}");
    }
    let (code, stderr) = run_binary_with_rules(&dir.join("missing.yaml"));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("cannot read rules file"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
