//! An event the broker has not acknowledged by the ack timeout is answered 503
//! `kafka_unconfirmed`, and its id stays claimed while the producer keeps trying. Once the record
//! lands, a retry with the same id gets the first attempt's answer (200, Idempotent-Replayed)
//! and the topic holds the event once: "retry with the same id" never writes it twice.
//!
//! The topic is created only after the first answer, so the first attempt cannot be
//! acknowledged in time whatever the machine's speed: the producer holds the record until the
//! topic appears, then delivers it.

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use circulatory_testkit::{count_records, header, read_records};
use serde_json::json;
use support::api_with;

#[tokio::test]
async fn a_retry_after_an_unconfirmed_answer_gets_the_first_outcome_and_writes_nothing_twice() {
    let api = api_with(&[], &["--ack-timeout", "1s"]).await;
    let topic = api.env.topic_of("like.added");
    let id = uuid::Uuid::new_v4().to_string();
    let event = json!({"type": "like.added", "id": id, "data": api.sample("like.added")});

    let first = api.post_json(&event).await;
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        first.body
    );
    assert_eq!(first.body["error_code"], 50307, "{}", first.body);
    assert!(first.header("retry-after").is_some());

    api.env.create_topics(&[topic.as_str()]).await;
    let started = Instant::now();
    let replay = loop {
        let retry = api.post_json(&event).await;
        if retry.status == StatusCode::OK {
            break retry;
        }
        assert_eq!(
            retry.status,
            StatusCode::CONFLICT,
            "while the first attempt is in flight a retry waits, then is told so: {}",
            retry.body
        );
        assert!(started.elapsed() < Duration::from_secs(40), "never settled");
    };
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body["id"], id.as_str());
    assert_eq!(replay.body["topic"], topic.as_str());

    let records = read_records(&api.env.kafka, &topic, 1, Duration::from_secs(20)).await;
    assert_eq!(header(&records[0], "ce_id").as_deref(), Some(id.as_str()));
    assert_eq!(
        replay.body["offset"],
        rdkafka::Message::offset(&records[0]),
        "the answer is where the first attempt landed"
    );
    // Another retry after settling is a replay too, and nothing more was written.
    let again = api.post_json(&event).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(count_records(&api.env.kafka, &topic).await, 1);

    let metrics = api.get("/metrics").await;
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains(r#"circulatory_unconfirmed_outcomes_total{outcome="delivered"} 1"#),
        "{text}"
    );
}

/// An ack timeout close to the request timeout: the request stops waiting early enough to
/// answer 50307 (its event may be written) instead of being cut off by the request timeout,
/// whose 503 would say nothing was written.
#[tokio::test]
async fn the_ack_wait_ends_in_time_to_answer_within_the_request_timeout() {
    let api = api_with(
        &[],
        &[
            "--request-timeout",
            "3s",
            "--redis-timeout",
            "1s",
            "--body-timeout",
            "1s",
            "--ack-timeout",
            "2900ms",
        ],
    )
    .await;
    let event = json!({"type": "like.added", "id": uuid::Uuid::new_v4().to_string(),
                       "data": api.sample("like.added")});
    let started = Instant::now();
    let reply = api.post_json(&event).await;
    let took = started.elapsed();
    assert_eq!(reply.body["error_code"], 50307, "{}", reply.body);
    // 3 s less the Redis timeout and the margin.
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(2900),
        "answered after {took:?}"
    );
}
