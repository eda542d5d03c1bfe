//! The gateway against the real Redis, with real WebSocket and SSE clients over TCP.

mod support;

use std::time::Duration;

use circulatory_gateway::client::Options;
use serde_json::json;
use support::*;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

#[tokio::test]
async fn websocket_subscribe_receive_unsubscribe() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(&ns, &[]).await;
    let user = uuid();
    let post = uuid();
    let channel = format!("comment:added:{post}");
    let mut client = gw.ws(&user).await;

    let reply = client.subscribe(&channel).await.unwrap();
    assert_eq!(
        reply,
        json!({"type": "subscribed", "channel": channel, "id": null})
    );
    let id = publish(
        &channel,
        "comment.added",
        json!({"postId": post, "text": "hi"}),
    )
    .await;
    let message = next_message(&mut client, WAIT)
        .await
        .expect("message delivered");
    assert_eq!(message["type"], "comment.added");
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["channel"], channel.as_str());
    assert_eq!(message["data"]["text"], "hi");
    let time = message["time"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");

    // A pattern subscription receives every post's comments, with the concrete channel.
    let reply = client.subscribe("comment:added:*").await.unwrap();
    assert_eq!(reply["type"], "subscribed");
    let other_post = uuid();
    let other_channel = format!("comment:added:{other_post}");
    publish(
        &other_channel,
        "comment.added",
        json!({"postId": other_post}),
    )
    .await;
    let via_pattern = loop {
        let m = next_message(&mut client, WAIT)
            .await
            .expect("pattern delivery");
        if m["channel"] == other_channel.as_str() {
            break m;
        }
    };
    assert_eq!(via_pattern["data"]["postId"], other_post.as_str());
    client
        .send_json(&json!({"type": "unsubscribe", "channel": "comment:added:*", "id": "u1"}))
        .await
        .unwrap();
    let reply = client.next_control().await.unwrap();
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(reply["id"], "u1");

    // Application-level ping.
    client
        .send_json(&json!({"type": "ping", "id": "p"}))
        .await
        .unwrap();
    assert_eq!(
        client.next_control().await.unwrap(),
        json!({"type": "pong", "id": "p"})
    );
    // Junk gets an error frame, not a disconnect.
    client.send_text("{nonsense").await.unwrap();
    assert_eq!(client.next_control().await.unwrap()["code"], "bad_request");

    // The instance listens on Redis while it has a listener, and stops when the last one leaves.
    assert_eq!(numsub(&channel).await, 1);
    client
        .send_json(&json!({"type": "unsubscribe", "channel": channel}))
        .await
        .unwrap();
    assert_eq!(client.next_control().await.unwrap()["type"], "unsubscribed");
    eventually(WAIT, "the redis subscription to be dropped", || async {
        (numsub(&channel).await == 0).then_some(())
    })
    .await;
    publish(&channel, "comment.added", json!({"postId": post})).await;
    assert!(next_message(&mut client, QUIET).await.is_none());

    // The figures for the console: per template, flushed to Redis.
    let mut redis = redis().await;
    let key = format!("circ:{ns}:stats:channel:comment:added:{{postId}}");
    let stats: std::collections::HashMap<String, i64> = eventually(WAIT, "channel stats", || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            let stats: std::collections::HashMap<String, i64> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .ok()?;
            let done = stats.get("messages").copied().unwrap_or(0) >= 2
                && stats.get("subscribers") == Some(&0);
            if !done {
                eprintln!("{key}: {stats:?}");
            }
            done.then_some(stats)
        }
    })
    .await;
    assert_eq!(stats["latency_count"], stats["messages"]);
    let templates: Vec<String> = redis::cmd("SMEMBERS")
        .arg(format!("circ:{ns}:stats:channels"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(templates.contains(&"comment:added:{postId}".to_string()));
    assert!(gw.metric("circ_gateway_messages_delivered_total{scope=\"entity\"}") >= 2.0);
    assert!(gw.metric("circ_gateway_delivery_latency_seconds_count") >= 2.0);
    gw.stop().await;
}

#[tokio::test]
async fn sse_subscribe_and_receive() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(&ns, &[]).await;
    let user = uuid();
    let someone_else = uuid();
    let post = uuid();
    let channels =
        format!("comment:added:{post},notification:sent:{user},notification:sent:{someone_else}");
    let mut sse = gw.sse(&user, &channels).await.expect("event stream");
    let (event, hello) = sse.next_json().await.unwrap();
    assert_eq!(event.as_deref(), Some("control"));
    assert_eq!(hello["type"], "connected");
    let mut replies = Vec::new();
    for _ in 0..3 {
        let (event, value) = sse.next_json().await.unwrap();
        assert_eq!(event.as_deref(), Some("control"));
        replies.push(value);
    }
    assert_eq!(replies[0]["type"], "subscribed");
    assert_eq!(replies[1]["type"], "subscribed");
    assert_eq!(replies[2]["type"], "error");
    assert_eq!(replies[2]["code"], "forbidden");

    let forbidden = format!("notification:sent:{someone_else}");
    publish(
        &forbidden,
        "notification.sent",
        json!({"userId": someone_else, "secret": 1}),
    )
    .await;
    let mine = format!("notification:sent:{user}");
    let id = publish(&mine, "notification.sent", json!({"userId": user})).await;
    let (event, message) = sse.next_json().await.unwrap();
    assert_eq!(event, None, "messages are unnamed events");
    assert_eq!(
        message["id"],
        id.as_str(),
        "nothing from the refused channel came first"
    );
    assert_eq!(message["channel"], mine.as_str());
    let comment = format!("comment:added:{post}");
    publish(&comment, "comment.added", json!({"postId": post})).await;
    let (_, message) = sse.next_json().await.unwrap();
    assert_eq!(message["channel"], comment.as_str());

    // Every channel refused: 403 with the reasons; none named: 400; no token: 401.
    let refused = gw.sse(&user, &forbidden).await.err().expect("refused");
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("forbidden"), "{}", refused.body);
    assert_eq!(gw.sse(&user, "").await.err().unwrap().status, 400);
    let anonymous = circulatory_gateway::client::SseClient::connect(
        gw.addr,
        "/v1/realtime/sse?channels=post:created",
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(anonymous.err().unwrap().status, 401);
    // Browsers pass the token in the query.
    let with_query = circulatory_gateway::client::SseClient::connect(
        gw.addr,
        &format!(
            "/v1/realtime/sse?channels=post:created&access_token={}",
            token(&user)
        ),
        &Options::default(),
    )
    .await
    .unwrap();
    assert!(with_query.is_ok());
    gw.stop().await;
}

#[tokio::test]
async fn refused_subscriptions_leak_nothing() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(&ns, &[]).await;
    let alice = uuid();
    let bob = uuid();
    let mut client = gw.ws(&alice).await;

    let theirs = format!("notification:sent:{bob}");
    let reply = client.subscribe(&theirs).await.unwrap();
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "forbidden");
    assert_eq!(reply["channel"], theirs.as_str());
    let message = reply["message"].as_str().unwrap();
    assert!(
        !message.contains(&bob),
        "the refusal names no one: {message}"
    );
    for (channel, code) in [
        (format!("message:received:{bob}"), "forbidden"),
        (format!("feed:updates:{bob}"), "forbidden"),
        ("feed:updates:*".to_string(), "pattern_not_allowed"),
        ("notification:sent:*".to_string(), "pattern_not_allowed"),
        ("secret:channel".to_string(), "unknown_channel"),
        ("comment:added:[a-z]*".to_string(), "invalid_channel"),
    ] {
        let reply = client.subscribe(&channel).await.unwrap();
        assert_eq!(reply["code"], code, "{channel}: {reply}");
    }
    assert_eq!(numsub(&theirs).await, 0, "nothing subscribed on Redis");
    publish(&theirs, "notification.sent", json!({"userId": bob})).await;
    assert!(next_message(&mut client, QUIET).await.is_none());

    // Their own channel works.
    let mine = format!("notification:sent:{alice}");
    assert_eq!(client.subscribe(&mine).await.unwrap()["type"], "subscribed");
    publish(&mine, "notification.sent", json!({"userId": alice})).await;
    assert_eq!(
        next_message(&mut client, WAIT).await.unwrap()["channel"],
        mine.as_str()
    );
    assert!(gw.metric("circ_gateway_subscriptions_refused_total{code=\"forbidden\"}") >= 3.0);

    // No token or a forged one: no upgrade.
    let reply = gw
        .ws_raw("/v1/realtime", &Options::default())
        .await
        .err()
        .unwrap();
    assert_eq!(reply.status, 401);
    let forged = Options {
        bearer: Some("a.b.c".into()),
        ..Options::default()
    };
    assert_eq!(
        gw.ws_raw("/v1/realtime", &forged)
            .await
            .err()
            .unwrap()
            .status,
        401
    );
    gw.stop().await;
}

#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(&ns, &["--max-subscriptions", "2"]).await;
    let mut client = gw.ws(&uuid()).await;
    for _ in 0..2 {
        let reply = client
            .subscribe(&format!("comment:added:{}", uuid()))
            .await
            .unwrap();
        assert_eq!(reply["type"], "subscribed");
    }
    let reply = client
        .subscribe(&format!("comment:added:{}", uuid()))
        .await
        .unwrap();
    assert_eq!(reply["code"], "too_many_subscriptions");
    gw.stop().await;
}

#[tokio::test]
async fn presence_online_then_offline_on_disconnect() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(&ns, &[]).await;
    let watcher = uuid();
    let user = uuid();
    let mut watch = gw.ws(&watcher).await;
    assert_eq!(
        watch.subscribe("user:online").await.unwrap()["type"],
        "subscribed"
    );
    assert_eq!(
        watch.subscribe("user:offline").await.unwrap()["type"],
        "subscribed"
    );
    let token = token(&user);

    let mut first = gw
        .ws_with(&user, "?platform=web", &Options::default())
        .await;
    let online = presence_message(&mut watch, "user.online", &user, WAIT).await;
    assert_eq!(online["channel"], "user:online");
    assert_eq!(online["data"]["platform"], "WEB");
    assert!(online["data"]["onlineAt"].as_i64().unwrap() > 0);
    let mut redis = redis().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(gw.presence_key(&user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "presence key with a TTL: {ttl}");
    let (status, body) = gw.get(&format!("/v1/presence/{user}"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(body["online"], true);
    assert_eq!(body["connections"], 1);

    // A second connection: still one online, no second announcement.
    let mut second = gw.ws(&user).await;
    let (_, body) = gw.get(&format!("/v1/presence/{user}"), Some(&token)).await;
    assert_eq!(body["connections"], 2);
    first.close().await.unwrap();
    drop(first);
    eventually(WAIT, "one connection left", || async {
        let (_, body) = gw.get(&format!("/v1/presence/{user}"), Some(&token)).await;
        (body["connections"] == 1).then_some(())
    })
    .await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(gw.presence_key(&user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(exists, "still online with one connection");

    second.close().await.unwrap();
    drop(second);
    let offline = presence_message(&mut watch, "user.offline", &user, WAIT).await;
    assert!(offline["data"]["lastSeenAt"].as_i64().unwrap() > 0);
    let exists: bool = redis::cmd("EXISTS")
        .arg(gw.presence_key(&user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "the presence key goes with the last connection");
    let (_, body) = gw.get(&format!("/v1/presence/{user}"), Some(&token)).await;
    assert_eq!(body["online"], false);
    assert!(body["lastSeenAt"].is_string(), "{body}");
    let (status, _) = gw.get(&format!("/v1/presence/{user}"), None).await;
    assert_eq!(status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_dropped_and_goes_offline() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(
        &ns,
        &[
            "--ping-interval",
            "200ms",
            "--pong-timeout",
            "700ms",
            "--presence-ttl",
            "3000ms",
            "--presence-refresh",
            "500ms",
        ],
    )
    .await;
    let watcher = uuid();
    let user = uuid();
    let mut watch = gw.ws(&watcher).await;
    watch.subscribe("user:offline").await.unwrap();
    // A client that never answers pings (and never reads).
    let mut silent = gw.ws(&user).await;
    silent.auto_pong = false;
    let offline = presence_message(&mut watch, "user.offline", &user, WAIT).await;
    assert_eq!(offline["channel"], "user:offline");
    assert_eq!(
        gw.metric("circ_gateway_disconnects_total{reason=\"stale\"}"),
        1.0
    );
    let mut redis = redis().await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(gw.presence_key(&user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists);
    // The watcher answers pings, so it is still connected.
    watch.send_json(&json!({"type": "ping"})).await.unwrap();
    assert_eq!(watch.next_control().await.unwrap()["type"], "pong");
    drop(silent);
    gw.stop().await;
}

#[tokio::test]
async fn presence_expires_when_an_instance_dies() {
    let ns = circulatory_testkit::fresh_namespace();
    let survivor = start(&ns, &["--presence-sweep", "200ms"]).await;
    let watcher = uuid();
    let user = uuid();
    let mut watch = survivor.ws(&watcher).await;
    watch.subscribe("user:online").await.unwrap();
    watch.subscribe("user:offline").await.unwrap();

    // An instance that records a connection, then dies without a word: no disconnect, no refresh.
    let catalog = std::sync::Arc::new(
        circulatory::catalog::Catalog::load(&circulatory::catalog::CatalogPaths::in_dir(
            circulatory_testkit::repo_root(),
        ))
        .unwrap(),
    );
    let dead = circulatory_gateway::presence::Presence::new(
        redis().await,
        Some(&ns),
        "dead-instance",
        Duration::from_millis(1500),
        catalog,
        std::sync::Arc::new(circulatory_gateway::metrics::Metrics::new()),
    );
    dead.connect(
        1,
        &user,
        "IOS",
        std::sync::Arc::new(circulatory_gateway::presence::Heartbeat::default()),
    )
    .await
    .unwrap();
    let online = presence_message(&mut watch, "user.online", &user, WAIT).await;
    assert_eq!(online["data"]["platform"], "IOS");
    let mut redis = redis().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(survivor.presence_key(&user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 1500, "{ttl}");
    drop(dead);

    let offline = presence_message(&mut watch, "user.offline", &user, WAIT).await;
    let last_seen = offline["data"]["lastSeenAt"].as_i64().unwrap();
    let online_at = online["data"]["onlineAt"].as_i64().unwrap();
    assert!(
        (last_seen - online_at).abs() < 1000,
        "{last_seen} vs {online_at}"
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(survivor.presence_key(&user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists);
    survivor.stop().await;
}

#[tokio::test]
async fn two_instances_share_one_redis() {
    let ns = circulatory_testkit::fresh_namespace();
    let a = start(&ns, &[]).await;
    let b = start(&ns, &[]).await;
    let post = uuid();
    let channel = format!("comment:added:{post}");
    let mut on_a: Vec<_> = Vec::new();
    for _ in 0..3 {
        let mut client = a.ws(&uuid()).await;
        assert_eq!(
            client.subscribe(&channel).await.unwrap()["type"],
            "subscribed"
        );
        on_a.push(client);
    }
    let mut on_b = b.ws(&uuid()).await;
    assert_eq!(
        on_b.subscribe(&channel).await.unwrap()["type"],
        "subscribed"
    );
    // One Redis subscription per instance, however many clients.
    assert_eq!(numsub(&channel).await, 2);
    assert_eq!(a.gateway.hub.listeners(&channel), 3);

    let id = publish(&channel, "comment.added", json!({"postId": post})).await;
    for client in on_a.iter_mut().chain(std::iter::once(&mut on_b)) {
        let message = next_message(client, WAIT).await.expect("delivered");
        assert_eq!(message["id"], id.as_str());
        assert!(
            next_message(client, Duration::from_millis(100))
                .await
                .is_none(),
            "once"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// Publishes `count` messages of about `size` bytes on `channel`, pipelined.
async fn flood(channel: &str, count: usize, size: usize) {
    let mut redis = redis().await;
    let filler = "x".repeat(size);
    for batch in 0..count.div_ceil(500) {
        let mut pipe = redis::pipe();
        for i in batch * 500..((batch + 1) * 500).min(count) {
            let message = circulatory::realtime::RealtimeMessage::new(
                "like.added",
                &i.to_string(),
                chrono::Utc::now(),
                json!({"seq": i, "filler": filler}),
            );
            pipe.cmd("PUBLISH")
                .arg(channel)
                .arg(serde_json::to_string(&message).unwrap())
                .ignore();
        }
        let _: () = pipe.query_async(&mut redis).await.unwrap();
    }
}

#[tokio::test]
async fn a_slow_client_is_disconnected_and_its_queue_stays_bounded() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(&ns, &["--queue-len", "16", "--slow-client", "disconnect"]).await;
    let user = uuid();
    let channel = format!("like:added:{}", uuid());
    let small = Options {
        recv_buffer: Some(4096),
        ..Options::default()
    };
    let mut slow = gw.ws_with(&user, "", &small).await;
    assert_eq!(
        slow.subscribe(&channel).await.unwrap()["type"],
        "subscribed"
    );
    // It never reads again while thousands of 1 KiB messages are published.
    flood(&channel, 5000, 1024).await;
    eventually(WAIT, "the slow client to be disconnected", || async {
        (gw.metric("circ_gateway_disconnects_total{reason=\"slow\"}") == 1.0).then_some(())
    })
    .await;
    assert!(gw.metric("circ_gateway_messages_dropped_total{reason=\"queue_full\"}") >= 1.0);
    let high_water = gw.metric("circ_gateway_client_queue_high_water");
    assert!(
        high_water <= 16.0,
        "queue depth {high_water} above its bound"
    );
    eventually(WAIT, "the connection to be released", || async {
        (gw.gateway.open_connections() == 0 && numsub(&channel).await == 0).then_some(())
    })
    .await;
    drop(slow);
    gw.stop().await;
}

#[tokio::test]
async fn with_the_drop_policy_a_slow_client_loses_messages_not_memory() {
    let ns = circulatory_testkit::fresh_namespace();
    let gw = start(&ns, &["--queue-len", "16", "--slow-client", "drop"]).await;
    let channel = format!("like:added:{}", uuid());
    let small = Options {
        recv_buffer: Some(4096),
        ..Options::default()
    };
    let mut slow = gw.ws_with(&uuid(), "", &small).await;
    assert_eq!(
        slow.subscribe(&channel).await.unwrap()["type"],
        "subscribed"
    );
    let published = 5000;
    flood(&channel, published, 1024).await;
    let dropped = eventually(WAIT, "messages to be dropped", || async {
        let dropped = gw.metric("circ_gateway_messages_dropped_total{reason=\"queue_full\"}");
        (dropped >= 1.0 && gw.metric("circ_gateway_messages_received_total") >= published as f64)
            .then_some(dropped)
    })
    .await;
    let high_water = gw.metric("circ_gateway_client_queue_high_water");
    assert!(
        high_water <= 16.0,
        "queue depth {high_water} above its bound"
    );
    // What was not dropped is at most the queue plus what the socket buffers hold: most is dropped.
    assert!(dropped >= (published / 2) as f64, "only {dropped} dropped");
    assert_eq!(
        gw.metric("circ_gateway_disconnects_total{reason=\"slow\"}"),
        0.0
    );
    assert_eq!(gw.gateway.open_connections(), 1, "still connected");
    // The client catches up with what was kept, in order, then gets new messages.
    let mut last = -1;
    while let Some(message) = next_message(&mut slow, QUIET).await {
        let seq = message["data"]["seq"].as_i64().unwrap();
        assert!(seq > last, "in order");
        last = seq;
    }
    publish(&channel, "like.added", json!({"after": true})).await;
    let message = next_message(&mut slow, WAIT).await.unwrap();
    assert_eq!(message["data"]["after"], true);
    gw.stop().await;
}

#[tokio::test]
async fn a_typing_event_posted_to_ingest_reaches_subscribers_and_never_kafka() {
    let env = circulatory_testkit::TestEnv::new();
    let messaging_topic = env.topic_of("message.sent");
    env.create_topics(&[&messaging_topic]).await;
    let root = circulatory_testkit::repo_root();
    let ingest_config = <circulatory_ingest::config::Config as clap::Parser>::try_parse_from([
        "ingest",
        "--namespace",
        &env.namespace,
        "--bootstrap",
        &circulatory_testkit::bootstrap(),
        "--registry",
        &circulatory_testkit::registry_url(),
        "--redis",
        &redis_url(),
        "--jwt-secret",
        SECRET,
        "--object-store",
        std::env::temp_dir()
            .join(format!("circ-objects-{}", env.namespace))
            .to_str()
            .unwrap(),
        "--topology",
        root.join("topics.yaml").to_str().unwrap(),
        "--schemas",
        root.join("schemas").to_str().unwrap(),
    ])
    .unwrap();
    let ingest = circulatory_ingest::build(&ingest_config)
        .await
        .expect("ingest builds");
    let ingest = circulatory_ingest::app(
        ingest.state,
        ingest_config.max_concurrency,
        ingest_config.request_timeout,
    );
    let gw = start(&env.namespace, &[]).await;

    let conversation = uuid();
    let typist = uuid();
    let reader = uuid();
    let channel = format!("user:typing:{conversation}");
    let mut client = gw.ws(&reader).await;
    assert_eq!(
        client.subscribe(&channel).await.unwrap()["type"],
        "subscribed"
    );

    let mut claims = circulatory::auth::claims_for(&typist, Duration::from_secs(600));
    claims.events = vec!["typing.indicator".into()];
    let ingest_token = circulatory::auth::mint_hs256(SECRET.as_bytes(), &claims).unwrap();
    let body = json!({
        "type": "typing.indicator",
        "data": {"conversationId": conversation, "userId": typist, "isTyping": true, "at": 1_700_000_000_000i64},
    });
    let response = tower::ServiceExt::oneshot(
        ingest,
        axum::http::Request::post("/v1/events")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {ingest_token}"))
            .body(axum::body::Body::from(body.to_string()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 202);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();

    let message = next_message(&mut client, WAIT)
        .await
        .expect("typing delivered");
    assert_eq!(message["type"], "typing.indicator");
    assert_eq!(message["channel"], channel.as_str());
    assert_eq!(message["id"], answer["id"]);
    assert_eq!(message["data"]["userId"], typist.as_str());
    assert_eq!(message["data"]["isTyping"], true);
    assert!(
        answer.get("topic").is_none(),
        "no topic for an ephemeral event: {answer}"
    );
    assert_eq!(answer["channels"], json!([channel]));
    assert_eq!(answer["receivers"], 1, "one gateway instance listens");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        circulatory_testkit::count_records(&env.kafka, &messaging_topic).await,
        0,
        "nothing produced to Kafka"
    );
    gw.stop().await;
}
