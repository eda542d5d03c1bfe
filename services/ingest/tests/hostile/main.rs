//! The ingest API under a hostile corpus generated from the whole catalog (see `corpus.rs`):
//! every request gets its precise refusal as a problem document, nothing internal leaks, and
//! nothing of it reaches Kafka or Redis.

#[path = "../support/mod.rs"]
mod support;

mod corpus;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use corpus::{Builder, Case, Tokens};
use futures::StreamExt;
use serde_json::Value;
use support::{api_with, Api, Reply};

/// Words that would mean an internal detail reached the client.
const INTERNALS: [&str; 7] = [
    "rdkafka",
    "librdkafka",
    "redis",
    "sqlx",
    "panicked",
    "backtrace",
    "apache_avro",
];

fn check(case: &Case, reply: &Reply) -> Result<(), String> {
    let problem = &reply.body;
    let fail = |what: String| {
        Err(format!(
            "{}: {what}; got {} {problem}",
            case.name, reply.status
        ))
    };
    if reply.status.as_u16() != case.status {
        return fail(format!("expected status {}", case.status));
    }
    if reply.header("content-type") != Some("application/problem+json") {
        return fail("not a problem document".into());
    }
    if problem["status"] != case.status || problem["error_code"] != case.error_code {
        return fail(format!("expected error_code {}", case.error_code));
    }
    if !problem["title"].is_string() || !problem["detail"].is_string() {
        return fail("title and detail must be strings".into());
    }
    if reply.header("x-request-id").is_none()
        || problem["instance"].as_str() != reply.header("x-request-id")
    {
        return fail("instance must be the request id".into());
    }
    if case.status == 401 && reply.header("www-authenticate").is_none() {
        return fail("a 401 names its scheme in WWW-Authenticate".into());
    }
    let errors = problem["errors"].as_array().cloned().unwrap_or_default();
    for (index, path) in &case.errors {
        let found = errors.iter().any(|e| {
            e["index"] == *index && e["path"] == path.as_str() && e["message"].is_string()
        });
        if !found {
            return fail(format!("expected error ({index}, {path})"));
        }
    }
    let text = problem.to_string().to_lowercase();
    if let Some(mentions) = case.mentions {
        if !text.contains(&mentions.to_lowercase()) {
            return fail(format!("expected a mention of `{mentions}`"));
        }
    }
    if let Some(leak) = INTERNALS.iter().find(|w| text.contains(*w)) {
        return fail(format!("internal detail `{leak}` leaked"));
    }
    Ok(())
}

async fn send(api: &Api, case: &Case) -> Reply {
    let mut request = Request::builder().method(case.method).uri(case.path);
    for (name, value) in &case.headers {
        request = request.header(*name, value.as_str());
    }
    api.send(request.body(Body::from(case.body.clone())).unwrap())
        .await
}

#[tokio::test]
async fn a_generated_hostile_corpus_over_every_type_is_refused_precisely_and_produces_nothing() {
    let catalog = circulatory_testkit::TestEnv::new().catalog.clone();
    let stored: Vec<&str> = catalog
        .events()
        .filter(|e| e.topic.is_some())
        .map(|e| e.name())
        .collect();
    let api = api_with(
        &stored,
        &["--max-event-bytes", "4096", "--rate-burst", "1000000"],
    )
    .await;
    let marker = uuid::Uuid::new_v4().to_string();

    // Anything broadcast for this corpus would carry the marker: listen on every channel.
    let redis = redis::Client::open(support::redis_url()).unwrap();
    let mut pubsub = redis.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("*").await.unwrap();

    let tokens = Tokens::new(support::SECRET.as_bytes());
    let publisher = api.env.publisher();
    let mut builder = Builder {
        tokens: &tokens,
        cases: Vec::new(),
    };
    for event in api.env.catalog.events() {
        let data = corpus::valid_data(event, &marker);
        // The base of every case is valid: each case is refused for what it changes.
        publisher
            .validate(circulatory::publisher::EventDraft {
                event_type: event.name().into(),
                data: data.clone(),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("the sample of {} is invalid: {e}", event.name()));
        builder.event_type(event, &data);
    }
    let mut cases = builder.cases;
    cases.extend(corpus::service_cases(&tokens, support::SECRET.as_bytes()));
    assert!(
        cases.len() >= 1000,
        "the corpus has only {} cases",
        cases.len()
    );

    let mut failures = Vec::new();
    for case in &cases {
        let reply = send(&api, case).await;
        if let Err(failure) = check(case, &reply) {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    let mut produced = Vec::new();
    let mut topics: Vec<String> = stored.iter().map(|t| api.env.topic_of(t)).collect();
    topics.sort();
    topics.dedup();
    for topic in &topics {
        let count = circulatory_testkit::count_records(&api.env.kafka, topic).await;
        if count > 0 {
            produced.push(format!("{topic}: {count}"));
        }
    }
    assert!(
        produced.is_empty(),
        "refused requests produced {produced:?}"
    );
    let mut messages = pubsub.on_message();
    let broadcast = tokio::time::timeout(Duration::from_millis(500), async {
        while let Some(message) = messages.next().await {
            let payload: String = message.get_payload().unwrap_or_default();
            if payload.contains(&marker) {
                return Some(format!("{}: {payload}", message.get_channel_name()));
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    assert_eq!(broadcast, None, "a refused request was broadcast");
    eprintln!("{} hostile cases refused as expected", cases.len());
}

/// An event within the event limit whose record (value, key, headers) would still exceed what
/// the brokers take is a 413 before anything is produced, not a 500 from the producer.
#[tokio::test]
async fn an_event_whose_record_exceeds_the_broker_limit_is_refused_before_producing() {
    let api = api_with(
        &["search.performed"],
        &[
            "--max-event-bytes",
            "1048576",
            "--max-body-bytes",
            "2097152",
        ],
    )
    .await;
    let mut data = api.sample("search.performed");
    data["query"] = Value::String("q".repeat(1_000_100));
    let reply = api
        .post_json(&serde_json::json!({"type": "search.performed", "data": data}))
        .await;
    assert_eq!(reply.status.as_u16(), 413, "{}", reply.body);
    assert_eq!(reply.body["error_code"], 41301);
    assert!(
        reply.body["detail"].as_str().unwrap().contains("record"),
        "{}",
        reply.body
    );
    let topic = api.env.topic_of("search.performed");
    assert!(circulatory_testkit::is_empty(&api.env.kafka, &topic).await);
    // Just under the limit, the same event is produced.
    data["query"] = Value::String("q".repeat(990_000));
    let reply = api
        .post_json(&serde_json::json!({"type": "search.performed", "data": data}))
        .await;
    assert_eq!(reply.status.as_u16(), 202, "{}", reply.body);
}

/// The corpus's checks fail when they should: a valid event is not a refusal.
#[tokio::test]
async fn the_checks_reject_an_accepted_event() {
    let api = api_with(&["like.added"], &[]).await;
    let tokens = Tokens::new(support::SECRET.as_bytes());
    let event = api.env.catalog.event("like.added").unwrap();
    let data = corpus::valid_data(event, &uuid::Uuid::new_v4().to_string());
    let case = Case {
        name: "a valid event".into(),
        method: "POST",
        path: "/v1/events",
        headers: vec![
            ("content-type", "application/json".into()),
            ("authorization", format!("Bearer {}", tokens.all)),
        ],
        body: serde_json::json!({"type": "like.added", "data": data})
            .to_string()
            .into_bytes(),
        status: 422,
        error_code: 42206,
        errors: Vec::new(),
        mentions: None,
    };
    let reply = send(&api, &case).await;
    assert_eq!(reply.status.as_u16(), 202, "{}", reply.body);
    assert!(check(&case, &reply).is_err());
    let _: &Value = &reply.body;
}
