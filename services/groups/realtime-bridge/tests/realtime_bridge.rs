//! realtime-bridge against the real stack: events read from Kafka are published on the channels
//! `topics.yaml` routes them to, as `{type, id, correlationId, time, data}` with the event's id
//! and correlation id; the same event delivered twice is published once, and once its marker is
//! gone a redelivery is published with the same id; an unreachable Redis sends the event to the
//! dead letters (one attempt).

use std::collections::BTreeMap;
use std::time::Duration;

use circulatory::publisher::{EventDraft, EventPublisher};
use circulatory_group_common::deps::Deps;
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{self as support, publish_with_id, redis_url, uuid};
use circulatory_group_realtime_bridge::{register, sent_marker, GROUP, SENT_MARKER_TTL_SECS};
use circulatory_testkit::{header, TestEnv};
use futures::StreamExt;
use serde_json::{json, Value};

/// A Redis pub/sub subscriber to the channels a test expects messages on.
struct Listener {
    pubsub: redis::aio::PubSub,
}

impl Listener {
    /// Subscribed before anything is published (pub/sub keeps nothing for late subscribers).
    async fn subscribe(channels: &[String]) -> Listener {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        for channel in channels {
            pubsub.subscribe(channel).await.expect("subscribe");
        }
        Listener { pubsub }
    }

    /// Collects messages until `expected` of them arrived and then `quiet` passed without more,
    /// or `within` ended. Messages of other tests on shared channels are kept out by `mine`.
    async fn collect(
        &mut self,
        expected: usize,
        within: Duration,
        quiet: Duration,
        mine: impl Fn(&Value) -> bool,
    ) -> BTreeMap<String, Vec<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut stream = self.pubsub.on_message();
        loop {
            let received: usize = out.values().map(Vec::len).sum();
            let wait = if received >= expected {
                quiet
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            match tokio::time::timeout(wait, stream.next()).await {
                Ok(Some(message)) => {
                    let payload: String = message.get_payload().expect("text payload");
                    let value: Value = serde_json::from_str(&payload).expect("JSON message");
                    if mine(&value) {
                        out.entry(message.get_channel_name().to_string())
                            .or_default()
                            .push(value);
                    }
                }
                Ok(None) | Err(_) => return out,
            }
        }
    }
}

/// One event of each subscribed type, all about one post, user or component of this test.
struct Fixture {
    post_id: String,
    user_id: String,
    component: String,
}

impl Fixture {
    fn new(env: &TestEnv) -> Fixture {
        Fixture {
            post_id: uuid(),
            user_id: uuid(),
            component: format!("group:{}", env.namespace),
        }
    }

    fn events(&self) -> Vec<(&'static str, Value)> {
        vec![
            (
                "post.created",
                json!({
                    "postId": self.post_id, "authorId": self.user_id, "text": "hello",
                    "hashtags": [], "mentions": [], "mediaType": "TEXT", "videoId": null,
                    "visibility": "PUBLIC", "createdAt": "2026-11-27T10:00:00Z"
                }),
            ),
            (
                "comment.added",
                json!({
                    "commentId": uuid(), "postId": self.post_id, "authorId": uuid(),
                    "postAuthorId": self.user_id, "parentCommentId": null, "text": "nice",
                    "mentions": [], "createdAt": "2026-11-27T10:01:00Z"
                }),
            ),
            (
                "like.added",
                json!({
                    "postId": self.post_id, "userId": uuid(), "postAuthorId": self.user_id,
                    "likedAt": "2026-11-27T10:02:00Z"
                }),
            ),
            (
                "system.health",
                json!({
                    "component": self.component, "status": "DEGRADED", "instance": null,
                    "details": {"latencyMs": "900"}, "checkedAt": "2026-11-27T10:05:00Z"
                }),
            ),
        ]
    }

    /// The concrete channels the routes of topics.yaml give these events.
    fn channels(&self) -> Vec<String> {
        vec![
            "post:created".into(),
            format!("comment:added:{}", self.post_id),
            format!("like:added:{}", self.post_id),
            "system:health".into(),
        ]
    }

    /// Whether a message is about this fixture (public channels are shared with other tests).
    fn owns(&self, message: &Value) -> bool {
        let data = &message["data"];
        data["postId"] == self.post_id.as_str()
            || data["userId"] == self.user_id.as_str()
            || data["component"] == self.component.as_str()
    }
}

/// Publishes one event with a chosen id and correlation id.
async fn publish_correlated(
    publisher: &EventPublisher,
    event_type: &str,
    id: &str,
    correlation_id: &str,
    data: Value,
) {
    let validated = publisher
        .validate(EventDraft {
            event_type: event_type.into(),
            data,
            id: Some(id.into()),
            correlation_id: Some(correlation_id.into()),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{event_type}: {e}"));
    publisher.publish(validated).await.expect("published");
}

/// Timestamps as the engine renders them (RFC 3339 with milliseconds).
fn normalized(data: &Value) -> Value {
    let mut data = data.clone();
    if let Value::Object(fields) = &mut data {
        for value in fields.values_mut() {
            if let Some(text) = value.as_str() {
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
                    *value = json!(t
                        .with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                }
            }
        }
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routed_events_are_published_on_their_channels_once() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let fixture = Fixture::new(&env);
    let mut listener = Listener::subscribe(&fixture.channels()).await;

    let events = fixture.events();
    let mut ids = BTreeMap::new();
    let mut correlations = BTreeMap::new();
    for (event_type, data) in &events {
        let (id, correlation) = (uuid(), format!("corr-{}", uuid()));
        publish_correlated(&publisher, event_type, &id, &correlation, data.clone()).await;
        ids.insert(*event_type, id);
        correlations.insert(*event_type, correlation);
    }
    // Every event again, with the same id (a producer retry, a replay): not published twice.
    for (event_type, data) in &events {
        publish_correlated(
            &publisher,
            event_type,
            &ids[event_type],
            &correlations[event_type],
            data.clone(),
        )
        .await;
    }

    let received = listener
        .collect(
            events.len(),
            Duration::from_secs(30),
            Duration::from_secs(3),
            |m| fixture.owns(m),
        )
        .await;
    let expected: BTreeMap<String, Vec<Value>> = fixture
        .channels()
        .into_iter()
        .zip(events.iter())
        .map(|(channel, (_, data))| (channel, vec![normalized(data)]))
        .collect();
    let data_only: BTreeMap<String, Vec<Value>> = received
        .iter()
        .map(|(channel, messages)| {
            (
                channel.clone(),
                messages.iter().map(|m| m["data"].clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        data_only, expected,
        "one message per channel, with the event's data"
    );
    for ((channel, messages), (event_type, _)) in fixture
        .channels()
        .iter()
        .map(|c| (c, &received[c]))
        .zip(events.iter())
    {
        let message = &messages[0];
        assert_eq!(message["type"], *event_type, "{channel}");
        assert_eq!(
            message["id"],
            ids[event_type].as_str(),
            "{channel}: the event's id"
        );
        assert_eq!(
            message["correlationId"],
            correlations[event_type].as_str(),
            "{channel}: the event's correlation id"
        );
        let time = message["time"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{channel}: time {time}"
        );
        assert_eq!(
            message.as_object().map(|o| o.len()),
            Some(5),
            "{channel}: {message}"
        );
    }
    // The markers that keep the duplicates out, with their expiry.
    let mut redis = deps.redis.clone();
    for id in ids.values() {
        let ttl: i64 = redis::cmd("TTL")
            .arg(sent_marker(&deps, id))
            .query_async(&mut redis)
            .await
            .expect("ttl");
        assert!(
            ttl > 0 && ttl <= SENT_MARKER_TTL_SECS as i64,
            "marker ttl {ttl}"
        );
    }
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_event_is_published_with_the_same_id() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let fixture = Fixture::new(&env);
    let channel = format!("comment:added:{}", fixture.post_id);
    let mut listener = Listener::subscribe(std::slice::from_ref(&channel)).await;
    let (event_type, data) = fixture.events().remove(1);
    let (id, correlation) = (uuid(), format!("corr-{}", uuid()));
    let within = Duration::from_secs(30);
    let quiet = Duration::from_secs(2);

    publish_correlated(&publisher, event_type, &id, &correlation, data.clone()).await;
    let first = listener
        .collect(1, within, quiet, |m| fixture.owns(m))
        .await;
    // The marker gone (expired, or a replay after SENT_MARKER_TTL_SECS): the same event again.
    let mut redis = deps.redis.clone();
    let removed: i64 = redis::cmd("DEL")
        .arg(sent_marker(&deps, &id))
        .query_async(&mut redis)
        .await
        .expect("del");
    assert_eq!(removed, 1, "the first delivery left its marker");
    publish_correlated(&publisher, event_type, &id, &correlation, data).await;
    let second = listener
        .collect(1, within, quiet, |m| fixture.owns(m))
        .await;

    for (delivery, received) in [("first", &first), ("redelivery", &second)] {
        let messages = received.get(&channel).cloned().unwrap_or_default();
        assert_eq!(messages.len(), 1, "{delivery}: {received:?}");
        assert_eq!(messages[0]["type"], event_type, "{delivery}");
        assert_eq!(messages[0]["id"], id.as_str(), "{delivery}: the event's id");
        assert_eq!(
            messages[0]["correlationId"],
            correlation.as_str(),
            "{delivery}"
        );
    }
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_redis_sends_the_event_to_the_dead_letters() {
    let env = TestEnv::new();
    let connected = support::deps(&env).await;
    // Redis on a closed port: the connection manager is built lazily, every command fails fast.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(Duration::from_millis(300)))
        .set_response_timeout(Some(Duration::from_millis(300)));
    let unreachable = redis::aio::ConnectionManager::new_lazy_with_config(
        redis::Client::open("redis://127.0.0.1:1").expect("url"),
        config,
    )
    .expect("lazy manager");
    let deps = Deps::new(env.catalog.clone(), connected.pool.clone(), unreachable);
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let fixture = Fixture::new(&env);
    let (event_type, data) = fixture.events().remove(1);
    let id = uuid();
    publish_with_id(&env, &publisher, event_type, &id, data).await;

    // topics.yaml: one attempt, no retries.
    let dead = support::dead_letters(&env, GROUP, 1, Duration::from_secs(40)).await;
    assert_eq!(header(&dead[0], "ce_id").as_deref(), Some(id.as_str()));
    assert_eq!(header(&dead[0], "ce_type").as_deref(), Some(event_type));
    assert_eq!(header(&dead[0], "circ_attempt").as_deref(), Some("1"));
    assert_eq!(
        header(&dead[0], "circ_error_class").as_deref(),
        Some("dependency")
    );
    let message = header(&dead[0], "circ_error_message").unwrap_or_default();
    assert!(message.starts_with("redis:"), "{message}");
    group.stop().await;
}
