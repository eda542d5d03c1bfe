//! messenger against the real stack: messages are stored once and broadcast to the recipient, an
//! offline recipient gets a notification and an online one does not, receipts only move a status
//! forward and reach the sender, an unreachable database ends in the dead letters, and so does,
//! at once, a message PostgreSQL refuses to store (U+0000 in its text), without opening the
//! `postgres` breaker.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use circulatory::consumer::retry::header as retry_header;
use circulatory::consumer::telemetry::GroupMetrics;

use circulatory::realtime::RealtimeMessage;
use circulatory_group_common::deps::Deps;
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_messenger::{offline_notification_id, received_channel, register, GROUP};
use circulatory_testkit::{count_records, header, read_records, TestEnv};
use futures::StreamExt;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
use serde_json::json;
use uuid::Uuid;

const WITHIN: Duration = Duration::from_secs(30);

async fn decoded(env: &TestEnv, record: &OwnedMessage) -> serde_json::Value {
    let decoded = env
        .oracle
        .decode(record.payload().expect("a value"))
        .await
        .expect("decodable");
    circulatory::codec::avro_to_json(&decoded.value)
}

async fn handled(deps: &Deps, event_id: &str) {
    eventually(&format!("event {event_id} handled"), WITHIN, || async {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT event_id FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        )
        .bind(GROUP)
        .bind(event_id)
        .fetch_optional(&deps.pool)
        .await
        .expect("query");
        row.map(|_| ())
    })
    .await
}

/// A subscriber to the `message:received` channels of `users`.
async fn subscribe(users: &[&str]) -> redis::aio::PubSub {
    let client = redis::Client::open(support::redis_url()).expect("redis url");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    for user in users {
        pubsub
            .subscribe(received_channel(Uuid::parse_str(user).unwrap()))
            .await
            .expect("subscribed");
    }
    pubsub
}

/// Broadcasts received within `wait`, as (channel, message).
async fn broadcasts(
    pubsub: &mut redis::aio::PubSub,
    wait: Duration,
) -> Vec<(String, RealtimeMessage)> {
    let mut out = Vec::new();
    let mut stream = pubsub.on_message();
    while let Ok(Some(message)) = tokio::time::timeout(wait, stream.next()).await {
        let payload: String = message.get_payload().expect("text");
        out.push((
            message.get_channel_name().to_string(),
            serde_json::from_str(&payload).expect("json"),
        ));
    }
    out
}

fn sent(
    id: &str,
    conversation: &str,
    from: &str,
    to: &str,
    body: &str,
    at: &str,
) -> serde_json::Value {
    json!({"messageId": id, "conversationId": conversation, "senderId": from, "recipientId": to,
           "body": body, "replyToMessageId": null, "sentAt": at})
}

async fn status(deps: &Deps, message: &str) -> (String, bool, bool, bool) {
    sqlx::query_as(
        "SELECT status, delivered_at IS NOT NULL, read_at IS NOT NULL, recipient_was_offline \
         FROM messages WHERE id = $1",
    )
    .bind(Uuid::parse_str(message).unwrap())
    .fetch_one(&deps.pool)
    .await
    .expect("a stored message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_reach_the_recipient_and_offline_recipients_are_notified() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let notifications = env.topic_of("notification.created");
    env.create_topics_if_missing(&[&notifications]).await;
    let (online, offline, conversation) = (uuid(), uuid(), uuid());
    // The gateway's presence key: `online` is connected, `offline` is not.
    let mut redis = deps.redis.clone();
    let presence = deps.redis_key(&format!("presence:{online}"));
    redis::cmd("SET")
        .arg(&presence)
        .arg("1")
        .arg("EX")
        .arg(120)
        .query_async::<()>(&mut redis)
        .await
        .expect("presence set");
    let mut pubsub = subscribe(&[&online, &offline]).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();

    let (to_online, to_offline) = (uuid(), uuid());
    let first = sent(
        &to_online,
        &conversation,
        &offline,
        &online,
        "are you there?",
        "2026-11-27T10:00:00Z",
    );
    let id = uuid();
    publish_with_id(&env, &publisher, "message.sent", &id, first.clone()).await;
    // Delivered again: stored once, no notification either time.
    publish_with_id(&env, &publisher, "message.sent", &id, first).await;
    publish_with_id(
        &env,
        &publisher,
        "message.sent",
        &uuid(),
        sent(
            &to_offline,
            &conversation,
            &online,
            &offline,
            "yes! see you at 8",
            "2026-11-27T10:01:00Z",
        ),
    )
    .await;

    // Keyed by the conversation, so the reply is handled last: the one notification is its.
    let emitted = read_records(&env.kafka, &notifications, 1, WITHIN).await;
    assert_eq!(
        header(&emitted[0], "ce_type").as_deref(),
        Some("notification.created")
    );
    let notification = decoded(&env, &emitted[0]).await;
    assert_eq!(
        notification["notificationId"],
        json!(offline_notification_id(Uuid::parse_str(&to_offline).unwrap()).to_string())
    );
    assert_eq!(notification["userId"], json!(offline));
    assert_eq!(notification["actorId"], json!(online));
    assert_eq!(notification["entityId"], json!(conversation));
    assert_eq!(notification["kind"], json!("MESSAGE"));
    assert_eq!(notification["body"], json!("yes! see you at 8"));
    assert_eq!(count_records(&env.kafka, &notifications).await, 1);

    assert_eq!(
        status(&deps, &to_online).await,
        ("SENT".into(), false, false, false)
    );
    assert_eq!(
        status(&deps, &to_offline).await,
        ("SENT".into(), false, false, true)
    );
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM messages WHERE conversation_id = $1")
            .bind(Uuid::parse_str(&conversation).unwrap())
            .fetch_one(&deps.pool)
            .await
            .expect("query");
    assert_eq!(count, 2);

    // Each recipient got its message on its own channel (the redelivery may repeat one).
    let received = broadcasts(&mut pubsub, Duration::from_secs(2)).await;
    for (recipient, message) in [(&online, &to_online), (&offline, &to_offline)] {
        let channel = received_channel(Uuid::parse_str(recipient).unwrap());
        let mine: Vec<_> = received.iter().filter(|(c, _)| *c == channel).collect();
        assert!(!mine.is_empty(), "nothing on {channel}");
        for (_, m) in mine {
            assert_eq!(m.event_type, "message.sent");
            assert_eq!(m.data["messageId"], json!(message));
        }
    }
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_only_move_forward_and_reach_the_sender() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    env.create_topics_if_missing(&[&env.topic_of("notification.created")])
        .await;
    let (sender, reader, conversation) = (uuid(), uuid(), uuid());
    let mut pubsub = subscribe(&[&sender]).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let (m1, m2) = (uuid(), uuid());
    let receipt = |kind: &str, message: &str, at: &str| match kind {
        "delivered" => json!({"messageId": message, "conversationId": conversation,
                              "senderId": sender, "recipientId": reader, "deliveredAt": at}),
        _ => json!({"messageId": message, "conversationId": conversation,
                    "senderId": sender, "readerId": reader, "readAt": at}),
    };
    // In conversation order (one key): m1, m2 sent; m1 delivered; m2 read (covers m1); then late
    // delivery receipts for both, which change nothing.
    let steps = [
        (
            "message.sent",
            sent(
                &m1,
                &conversation,
                &sender,
                &reader,
                "one",
                "2026-11-27T10:00:00Z",
            ),
        ),
        (
            "message.sent",
            sent(
                &m2,
                &conversation,
                &sender,
                &reader,
                "two",
                "2026-11-27T10:00:05Z",
            ),
        ),
        (
            "message.delivered",
            receipt("delivered", &m1, "2026-11-27T10:00:10Z"),
        ),
        ("message.read", receipt("read", &m2, "2026-11-27T10:01:00Z")),
        (
            "message.delivered",
            receipt("delivered", &m2, "2026-11-27T10:02:00Z"),
        ),
        (
            "message.delivered",
            receipt("delivered", &m1, "2026-11-27T10:03:00Z"),
        ),
    ];
    let mut last = String::new();
    for (event_type, data) in steps {
        last = uuid();
        publish_with_id(&env, &publisher, event_type, &last, data).await;
    }
    handled(&deps, &last).await;
    assert_eq!(status(&deps, &m1).await, ("READ".into(), true, true, true));
    assert_eq!(status(&deps, &m2).await, ("READ".into(), true, true, true));
    let times: (String, String) = sqlx::query_as(
        "SELECT to_char(delivered_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), \
                to_char(read_at AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM messages WHERE id = $1",
    )
    .bind(Uuid::parse_str(&m1).unwrap())
    .fetch_one(&deps.pool)
    .await
    .expect("query");
    assert_eq!(times, ("10:00:10".into(), "10:01:00".into()));

    // The sender heard of the two receipts that moved something, not of the late ones.
    let received = broadcasts(&mut pubsub, Duration::from_secs(2)).await;
    let receipts: Vec<(String, serde_json::Value)> = received
        .into_iter()
        .map(|(_, m)| (m.event_type, m.data["messageId"].clone()))
        .collect();
    assert_eq!(
        receipts,
        vec![
            ("message.delivered".to_string(), json!(m1)),
            ("message.read".to_string(), json!(m2)),
        ]
    );
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "message.sent",
        data: sent(
            &uuid(),
            &uuid(),
            &uuid(),
            &uuid(),
            "hello",
            "2026-11-27T10:00:00Z",
        ),
    }
    .dead_letters(env)
    .await;
}

/// What stands for U+0000 in a message body until the record is encoded.
const NUL_STAND_IN: &[u8] = b"[\x01]";

/// Publishes a `message.sent` whose body holds a NUL, straight to Kafka. The publisher (like the
/// ingest API) refuses U+0000, so the body carries "[\u{1}]" through validation and encoding and
/// that byte becomes 0x00 in the wire-format record (an Avro string is its UTF-8 bytes after a
/// length prefix, so the record stays valid Avro).
async fn publish_with_nul(
    publisher: &circulatory::publisher::EventPublisher,
    id: &str,
    data: serde_json::Value,
) {
    let body = data["body"].as_str().expect("a body");
    assert!(body.contains("[\u{1}]"), "{body:?} has no stand-in");
    let validated = publisher
        .validate(circulatory::publisher::EventDraft {
            event_type: "message.sent".into(),
            data,
            id: Some(id.into()),
            ..Default::default()
        })
        .expect("valid with the stand-in");
    let mut record = publisher.encode(validated).await.expect("encoded");
    let at: Vec<usize> = record
        .payload
        .windows(NUL_STAND_IN.len())
        .enumerate()
        .filter(|(_, w)| *w == NUL_STAND_IN)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 1, "one stand-in in the record");
    record.payload[at[0] + 1] = 0;
    let mut outgoing = FutureRecord::<[u8], [u8]>::to(&record.topic)
        .payload(&record.payload)
        .headers(record.headers);
    if let Some(key) = &record.key {
        outgoing = outgoing.key(key);
    }
    publisher
        .producer()
        .send(outgoing, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
}

/// The highest values a gauge took while a test ran, sampled every 10 ms.
struct Watch {
    breaker: Arc<AtomicI64>,
    paused: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    fn start(metrics: &GroupMetrics) -> Watch {
        let (breaker, paused, stop) = (
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicI64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let gauge = metrics.breaker.with_label_values(&["postgres"]);
        let paused_gauge = metrics.paused.clone();
        let (b, p, s) = (breaker.clone(), paused.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                b.fetch_max(gauge.get(), Ordering::Relaxed);
                p.fetch_max(paused_gauge.get(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Watch {
            breaker,
            paused,
            stop,
            task,
        }
    }

    /// (highest breaker state, most partitions paused at once).
    async fn finish(self) -> (i64, i64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("watch task");
        (
            self.breaker.load(Ordering::Relaxed),
            self.paused.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_postgres_refuses_is_dead_lettered_at_once_and_the_breaker_stays_closed() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    // The valid message below goes to an offline recipient: it emits a notification.
    env.create_topics_if_missing(&[&env.topic_of("notification.created")])
        .await;
    // The group as `support::start` runs it (default breaker: 5 failures, 60 s), with metrics.
    let (group, metrics) = support::start_observed(
        &env,
        &deps,
        GROUP,
        register,
        NoOptions {},
        support::settings(),
    )
    .await;
    let watch = Watch::start(&metrics);
    let publisher = env.publisher();

    // Five messages with a NUL, as many as the breaker's threshold, each in its own conversation.
    let mut refused = Vec::new();
    for i in 0..5 {
        let id = uuid();
        let body = format!("part {i} [\u{1}] rest");
        let data = sent(
            &uuid(),
            &uuid(),
            &uuid(),
            &uuid(),
            &body,
            "2026-11-27T10:00:00Z",
        );
        publish_with_nul(&publisher, &id, data).await;
        refused.push(id);
    }
    let dead = support::dead_letters(&env, GROUP, 5, WITHIN).await;
    let mut dead_ids = Vec::new();
    let mut refusal = String::new();
    for record in &dead {
        let id = header(record, "ce_id").expect("ce_id");
        assert_eq!(
            header(record, retry_header::ERROR_CLASS).as_deref(),
            Some("permanent"),
            "{id}"
        );
        assert_eq!(
            header(record, retry_header::DLQ_REASON).as_deref(),
            Some("permanent"),
            "{id}"
        );
        assert_eq!(
            header(record, retry_header::ATTEMPT).as_deref(),
            Some("1"),
            "{id}: dead-lettered on the first attempt"
        );
        // What PostgreSQL 15 answers for a NUL in a text parameter.
        let message = header(record, retry_header::ERROR_MESSAGE).unwrap_or_default();
        assert!(
            message.contains("SQLSTATE 22021") && message.contains("0x00"),
            "{id}: {message}"
        );
        // The dead letter is the record as it was produced, NUL included.
        assert!(
            record.payload().unwrap_or_default().contains(&0)
                && !record
                    .payload()
                    .unwrap_or_default()
                    .windows(NUL_STAND_IN.len())
                    .any(|w| w == NUL_STAND_IN),
            "{id}: the dead letter is not the refused record"
        );
        dead_ids.push(id);
        refusal = message;
    }
    dead_ids.sort();
    let mut expected = refused.clone();
    expected.sort();
    assert_eq!(dead_ids, expected);

    // The group goes on at once: a valid message sent now is stored within seconds, where an
    // open breaker would hold it for its 60 s cool-down.
    let (message_id, id) = (uuid(), uuid());
    let sent_at = Instant::now();
    publish_with_id(
        &env,
        &publisher,
        "message.sent",
        &id,
        sent(
            &message_id,
            &uuid(),
            &uuid(),
            &uuid(),
            "no NUL here",
            "2026-11-27T10:00:01Z",
        ),
    )
    .await;
    eventually(
        "the valid message stored",
        Duration::from_secs(5),
        || async {
            let row: Option<(String,)> = sqlx::query_as("SELECT body FROM messages WHERE id = $1")
                .bind(Uuid::parse_str(&message_id).unwrap())
                .fetch_optional(&deps.pool)
                .await
                .expect("query");
            row.map(|_| ())
        },
    )
    .await;
    let stored_after = sent_at.elapsed();
    let (breaker, paused) = watch.finish().await;
    group.stop().await;

    assert_eq!(
        breaker, 0,
        "the postgres breaker left the closed state (1 half-open, 2 open)"
    );
    assert_eq!(
        paused, 0,
        "partitions were paused (for the breaker) while the group ran"
    );
    assert_eq!(
        metrics
            .dead_lettered
            .with_label_values(&["message.sent"])
            .get(),
        5
    );
    assert_eq!(
        metrics.retried.with_label_values(&["message.sent"]).get(),
        0,
        "a refused message was retried"
    );
    assert_eq!(
        metrics.processed.with_label_values(&["message.sent"]).get(),
        1
    );
    let dlq = env
        .catalog
        .topic_name(&env.catalog.group(GROUP).unwrap().dead_letter_topic_base());
    assert_eq!(
        count_records(&env.kafka, &dlq).await,
        5,
        "only the refused messages"
    );
    let (stored,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM processed_events WHERE consumer_group = $1 AND event_id = ANY($2)",
    )
    .bind(GROUP)
    .bind(&refused)
    .fetch_one(&deps.pool)
    .await
    .expect("query");
    assert_eq!(stored, 0, "a refused message was recorded as processed");
    eprintln!("refused with \"{refusal}\"; the valid message was stored {stored_after:?} after it was sent");
}
