//! The ingest API against the real stack: Kafka, the schema registry and Redis.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use circulatory::codec::avro_to_json;
use circulatory_testkit::{header, is_empty, read_records};
use rdkafka::message::Message;
use serde_json::{json, Value};
use support::{api, api_with, bearer, token, Api, Reply};

fn assert_problem(reply: &Reply, status: u16, error_code: u64) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json"),
        "{}",
        reply.body
    );
    assert_eq!(reply.body["status"], status, "{}", reply.body);
    assert_eq!(reply.body["error_code"], error_code, "{}", reply.body);
    assert!(reply.body["title"].is_string() && reply.body["detail"].is_string());
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(
        reply.body["instance"].as_str(),
        reply.header("x-request-id")
    );
}

#[tokio::test]
async fn events_of_several_domains_land_on_their_topics_keyed_and_headed() {
    let api = api(&["post.created", "payment.initiated", "video.viewed"]).await;
    for event_type in ["post.created", "payment.initiated", "video.viewed"] {
        let data = api.sample(event_type);
        let reply = api
            .send(
                Request::post("/v1/events")
                    .header("content-type", "application/json")
                    .header("authorization", bearer(&token("tests", &["*"])))
                    .header("x-correlation-id", "corr-42")
                    .header(
                        "traceparent",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    )
                    .body(Body::from(
                        json!({"type": event_type, "data": data, "subject": "s-1"}).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        assert_eq!(reply.header("x-correlation-id"), Some("corr-42"));
        let request_id = reply.header("x-request-id").unwrap().to_string();
        let topic = api.env.topic_of(event_type);
        assert_eq!(reply.body["topic"], topic);
        assert_eq!(reply.body["type"], event_type);

        let record = read_records(&api.env.kafka, &topic, 1, Duration::from_secs(20))
            .await
            .remove(0);
        assert_eq!(
            record.partition() as i64,
            reply.body["partition"].as_i64().unwrap()
        );
        assert_eq!(record.offset(), reply.body["offset"].as_i64().unwrap());
        let key_field = api
            .env
            .catalog
            .event(event_type)
            .unwrap()
            .route
            .partition_key
            .clone()
            .unwrap();
        assert_eq!(
            record.key(),
            Some(data[&key_field].as_str().unwrap().as_bytes())
        );
        assert_eq!(
            header(&record, "ce_id").as_deref(),
            reply.body["id"].as_str()
        );
        assert_eq!(header(&record, "ce_type").as_deref(), Some(event_type));
        assert_eq!(
            header(&record, "ce_source").as_deref(),
            Some("/circulatory/ingest")
        );
        assert_eq!(header(&record, "ce_subject").as_deref(), Some("s-1"));
        assert_eq!(
            header(&record, "content-type").as_deref(),
            Some("application/avro")
        );
        assert_eq!(
            header(&record, "correlation_id").as_deref(),
            Some("corr-42")
        );
        assert_eq!(header(&record, "request_id"), Some(request_id));
        assert_eq!(
            header(&record, "traceparent").as_deref(),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let decoded = api
            .env
            .oracle
            .decode(record.payload().unwrap())
            .await
            .unwrap();
        assert_eq!(avro_to_json(&decoded.value), data);
    }
}

#[tokio::test]
async fn a_batch_answers_per_event_in_order_and_cloudevents_are_accepted() {
    let api = api(&["like.added", "share.created"]).await;
    let batch = json!([
        {"type": "like.added", "data": api.sample("like.added")},
        {"type": "share.created", "data": api.sample("share.created")},
        {"type": "like.added", "data": api.sample("like.added")},
    ]);
    let reply = api.post_json(&batch).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let results = reply.body.as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (result, sent) in results.iter().zip(batch.as_array().unwrap()) {
        assert_eq!(result["type"], sent["type"]);
        assert!(result["offset"].is_i64());
    }

    let structured = json!({
        "specversion": "1.0", "id": uuid::Uuid::new_v4().to_string(), "source": "/mobile/ios",
        "type": "like.added", "datacontenttype": "application/json", "data": api.sample("like.added"),
    });
    let reply = api
        .send(
            Request::post("/v1/events")
                .header("content-type", "application/cloudevents+json")
                .header("authorization", bearer(&token("tests", &["like.*"])))
                .body(Body::from(structured.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["id"], structured["id"]);
    // like.added and share.created share the interactions topic: the batch's 3 plus this one.
    let topic = api.env.topic_of("like.added");
    let records = read_records(&api.env.kafka, &topic, 4, Duration::from_secs(20)).await;
    let mine = records
        .iter()
        .find(|r| header(r, "ce_id").as_deref() == structured["id"].as_str())
        .expect("the CloudEvent is on the topic");
    assert_eq!(header(mine, "ce_source").as_deref(), Some("/mobile/ios"));

    let reply = api
        .send(
            Request::post("/v1/events")
                .header("content-type", "application/cloudevents-batch+json")
                .header("authorization", bearer(&token("tests", &["*"])))
                .body(Body::from(json!([structured.clone()]).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the same CloudEvent id is a replay: {}",
        reply.body
    );
}

/// One hostile request: what is sent and what must come back.
struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    authorization: Option<String>,
    correlation_id: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    error_code: u64,
    /// `(index, path)` that must be among `errors[]`.
    errors: Vec<(u64, &'static str)>,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, error_code: u64) -> Case {
    Case {
        name,
        content_type: Some("application/json"),
        authorization: Some(bearer(&token("tests", &["*"]))),
        correlation_id: None,
        body: body.into(),
        status,
        error_code,
        errors: Vec::new(),
    }
}

#[tokio::test]
async fn hostile_input_gets_a_precise_problem_and_nothing_reaches_kafka() {
    let api = api_with(
        &["payment.initiated"],
        &[
            "--max-event-bytes",
            "4096",
            "--max-batch",
            "5",
            "--rate-burst",
            "100000",
        ],
    )
    .await;
    let valid = api.sample("payment.initiated");
    let event = |data: Value| json!({"type": "payment.initiated", "data": data}).to_string();
    let with = |field: &str, value: Value| {
        let mut data = valid.clone();
        data[field] = value;
        event(data)
    };
    let without = |field: &str| {
        let mut data = valid.clone();
        data.as_object_mut().unwrap().remove(field);
        event(data)
    };
    let mut expired = circulatory::auth::claims_for("tests", Duration::from_secs(1));
    expired.events = vec!["*".into()];
    expired.exp = 1_000_000;
    let expired = circulatory::auth::mint_hs256(support::SECRET.as_bytes(), &expired).unwrap();
    let forged = circulatory::auth::mint_hs256(
        b"not-the-secret-not-the-secret-not-the-secret",
        &circulatory::auth::claims_for("tests", Duration::from_secs(600)),
    )
    .unwrap();
    let nested = format!("{}{}", "[".repeat(300), "]".repeat(300));

    let mut cases = vec![
        case("malformed JSON", "{\"type\": ", 400, 40001),
        case("empty body", "", 400, 40001),
        case("a JSON string", "\"hello\"", 400, 40001),
        case("invalid UTF-8", b"{\"type\": \"payment.initiated\", \"data\": \"\xff\xfe\"}".to_vec(), 400, 40001),
        case("deeply nested JSON", nested, 400, 40001),
        case("empty batch", "[]", 400, 40001),
        Case { errors: vec![(0, "/type")], ..case("unknown type", json!({"type": "payment.refunded", "data": {}}).to_string(), 422, 42201) },
        Case { errors: vec![(0, "/data/amountMinor")], ..case("missing required field", without("amountMinor"), 422, 42206) },
        Case { errors: vec![(0, "/data/amountMinor")], ..case("wrong field type", with("amountMinor", json!("500")), 422, 42206) },
        Case { errors: vec![(0, "/data/promo")], ..case("unknown extra field", with("promo", json!("x")), 422, 42206) },
        Case { errors: vec![(0, "/data/currency")], ..case("null where not allowed", with("currency", Value::Null), 422, 42206) },
        Case { errors: vec![(0, "/data/kind")], ..case("out-of-range enum", with("kind", json!("BRIBE")), 422, 42206) },
        Case { errors: vec![(0, "/data/walletId")], ..case("invalid uuid", with("walletId", json!("w-1")), 422, 42206) },
        Case { errors: vec![(0, "/extra")], ..case("unknown envelope attribute", json!({"type": "payment.initiated", "data": valid, "extra": 1}).to_string(), 422, 42202) },
        case("oversized event", with("currency", json!("X".repeat(5000))), 413, 41301),
        case("oversized batch", json!((0..6).map(|_| json!({"type": "payment.initiated", "data": valid})).collect::<Vec<_>>()).to_string(), 413, 41301),
        case("oversized body", format!("{{\"pad\": \"{}\"}}", "x".repeat(1_100_000)), 413, 41301),
        Case {
            errors: vec![(1, "/data/amountMinor")],
            ..case(
                "one invalid event rejects the whole batch",
                json!([{"type": "payment.initiated", "data": valid}, {"type": "payment.initiated", "data": {"amountMinor": "x"}}]).to_string(),
                422,
                42206,
            )
        },
        Case { content_type: Some("text/plain"), ..case("wrong content type", event(valid.clone()), 415, 41501) },
        Case { content_type: None, ..case("no content type", event(valid.clone()), 415, 41501) },
        Case { correlation_id: Some("bad id with spaces"), ..case("bad correlation id", event(valid.clone()), 400, 40001) },
        Case { authorization: None, ..case("missing token", event(valid.clone()), 401, 40101) },
        Case { authorization: Some(bearer(&expired)), ..case("expired token", event(valid.clone()), 401, 40101) },
        Case { authorization: Some(bearer(&forged)), ..case("forged token", event(valid.clone()), 401, 40101) },
        Case { authorization: Some("Basic dXNlcjpwYXNz".into()), ..case("not a bearer token", event(valid.clone()), 401, 40101) },
        Case { authorization: Some(bearer(&token("feed-service", &["post.*", "like.added"]))), ..case("type not allowed for the client", event(valid.clone()), 403, 40301) },
    ];
    let long_correlation: &'static str = Box::leak("c".repeat(200).into_boxed_str());
    cases.push(Case {
        correlation_id: Some(long_correlation),
        ..case("correlation id too long", event(valid.clone()), 400, 40001)
    });

    for case in cases {
        let mut request = Request::post("/v1/events");
        if let Some(ct) = case.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(auth) = &case.authorization {
            request = request.header("authorization", auth.as_str());
        }
        if let Some(id) = case.correlation_id {
            request = request.header("x-correlation-id", id);
        }
        let reply = api.send(request.body(Body::from(case.body)).unwrap()).await;
        assert_eq!(
            reply.status.as_u16(),
            case.status,
            "{}: {}",
            case.name,
            reply.body
        );
        assert_problem(&reply, case.status, case.error_code);
        for (index, path) in case.errors {
            let found = reply.body["errors"].as_array().is_some_and(|errors| {
                errors
                    .iter()
                    .any(|e| e["index"] == index && e["path"] == path && e["message"].is_string())
            });
            assert!(
                found,
                "{}: expected error ({index}, {path}) in {}",
                case.name, reply.body
            );
        }
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(
            !detail.contains("rdkafka") && !detail.contains("redis"),
            "{}: internals leaked: {detail}",
            case.name
        );
    }
    assert!(
        is_empty(&api.env.kafka, &api.env.topic_of("payment.initiated")).await,
        "a refused request produced something"
    );
}

#[tokio::test]
async fn a_repeated_id_or_key_replays_the_first_answer_and_produces_once() {
    let api = api(&["comment.added"]).await;
    let id = uuid::Uuid::new_v4().to_string();
    let data = api.sample("comment.added");
    let body = json!({"type": "comment.added", "id": id, "data": data});
    let first = api.post_json(&body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    let second = api.post_json(&body).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.body, first.body);

    let mut changed = body.clone();
    changed["data"]["text"] = json!("something else");
    let mismatch = api.post_json(&changed).await;
    assert_problem(&mismatch, 422, 42203);

    // Idempotency-Key over a batch without event ids.
    let batch = json!([{"type": "comment.added", "data": api.sample("comment.added")}]);
    let send_keyed = || {
        api.send(
            Request::post("/v1/events")
                .header("content-type", "application/json")
                .header("authorization", bearer(&token("tests", &["*"])))
                .header("idempotency-key", "order-7")
                .body(Body::from(batch.to_string()))
                .unwrap(),
        )
    };
    let keyed_first = send_keyed().await;
    assert_eq!(
        keyed_first.status,
        StatusCode::ACCEPTED,
        "{}",
        keyed_first.body
    );
    let keyed_second = send_keyed().await;
    assert_eq!(keyed_second.status, StatusCode::OK);
    assert_eq!(keyed_second.body, keyed_first.body);

    let topic = api.env.topic_of("comment.added");
    let records = read_records(&api.env.kafka, &topic, 2, Duration::from_secs(20)).await;
    assert_eq!(records.len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = count_records(&api, &topic).await;
    assert_eq!(count, 2, "each event was produced exactly once");
}

async fn count_records(api: &Api, topic: &str) -> i64 {
    circulatory_testkit::count_records(&api.env.kafka, topic).await
}

#[tokio::test]
async fn racing_duplicates_produce_once() {
    let api = api(&["like.added"]).await;
    let body = json!({"type": "like.added", "id": uuid::Uuid::new_v4().to_string(), "data": api.sample("like.added")});
    let replies = futures::future::join_all((0..12).map(|_| api.post_json(&body))).await;
    let accepted = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .count();
    let replayed = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(
        (accepted, replayed),
        (1, 11),
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(replies.iter().all(|r| r.body == replies[0].body));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count_records(&api, &api.env.topic_of("like.added")).await,
        1
    );
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let api = api_with(
        &["video.viewed"],
        &[
            "--rate-per-sec",
            "1",
            "--rate-burst",
            "3",
            "--max-batch",
            "3",
        ],
    )
    .await;
    let one = json!({"type": "video.viewed", "data": api.sample("video.viewed")});
    for _ in 0..3 {
        assert_eq!(api.post_json(&one).await.status, StatusCode::ACCEPTED);
    }
    let limited = api.post_json(&one).await;
    assert_problem(&limited, 429, 42901);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after));
    let other_client = api
        .send(
            Request::post("/v1/events")
                .header("content-type", "application/json")
                .header("authorization", bearer(&token("another-client", &["*"])))
                .body(Body::from(one.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(
        other_client.status,
        StatusCode::ACCEPTED,
        "limits are per client"
    );
}

#[tokio::test]
async fn ephemeral_events_reach_redis_subscribers_and_never_kafka() {
    let api = api(&["message.sent"]).await;
    let data = api.sample("typing.indicator");
    let conversation = data["conversationId"].as_str().unwrap().to_string();
    let channel = format!("user:typing:{conversation}");
    let client = redis::Client::open(support::redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();

    let reply = api
        .post_json(&json!({"type": "typing.indicator", "data": data}))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["channels"], json!([channel]));
    assert_eq!(reply.body["receivers"], 1);
    assert!(reply.body.get("topic").is_none());

    use futures::StreamExt;
    let message = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("a message within 5 s")
        .unwrap();
    let payload: Value = serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap();
    assert_eq!(payload["type"], "typing.indicator");
    assert_eq!(payload["id"], reply.body["id"]);
    assert_eq!(payload["data"], data);
    assert!(payload["time"].is_string());
    // Typing indicators belong to the messaging domain; its topic must stay empty.
    assert!(is_empty(&api.env.kafka, &api.env.topic_of("message.sent")).await);
}

/// A form part: field name, `(filename, content type)` for files, bytes.
type Part<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [u8]);

fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = "circulatory-test-boundary";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some((filename, content_type)) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A record's value as the JSON form of its Avro data.
async fn decoded_data(api: &Api, record: &rdkafka::message::OwnedMessage) -> Value {
    let decoded = api
        .env
        .oracle
        .decode(record.payload().unwrap())
        .await
        .unwrap();
    avro_to_json(&decoded.value)
}

/// Uploads as a trusted backend that may name any author (`on_behalf`).
async fn upload(api: &Api, parts: &[Part<'_>]) -> Reply {
    let mut claims = circulatory::auth::claims_for("studio-app", Duration::from_secs(600));
    claims.events = vec!["video.uploaded".into()];
    claims.on_behalf = true;
    let studio = circulatory::auth::mint_hs256(support::SECRET.as_bytes(), &claims).unwrap();
    upload_with(api, &studio, parts).await
}

async fn upload_with(api: &Api, token: &str, parts: &[Part<'_>]) -> Reply {
    let (content_type, body) = multipart(parts);
    api.send(
        Request::post("/v1/videos")
            .header("content-type", content_type)
            .header("authorization", bearer(token))
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_user_uploads_only_as_itself() {
    let api = api(&["video.uploaded"]).await;
    let user = uuid::Uuid::new_v4().to_string();
    let someone_else = uuid::Uuid::new_v4().to_string();
    let user_token = token(&user, &["video.uploaded"]);
    let impersonation = upload_with(
        &api,
        &user_token,
        &[
            ("videoFile", Some(("a.mp4", "video/mp4")), b"v"),
            ("authorId", None, someone_else.as_bytes()),
        ],
    )
    .await;
    assert_problem(&impersonation, 403, 40301);
    let topic = api.env.topic_of("video.uploaded");
    assert_eq!(
        count_records(&api, &topic).await,
        0,
        "a refused upload produced"
    );
    let own = upload_with(
        &api,
        &user_token,
        &[("videoFile", Some(("a.mp4", "video/mp4")), b"v")],
    )
    .await;
    assert_eq!(own.status, StatusCode::ACCEPTED, "{}", own.body);
    let record = read_records(&api.env.kafka, &topic, 1, Duration::from_secs(20))
        .await
        .remove(0);
    let data = decoded_data(&api, &record).await;
    assert_eq!(data["authorId"], user, "the author is the token's user");
}

#[tokio::test]
async fn an_upload_is_stored_and_announced_then_answered_with_202() {
    let api = api_with(&["video.uploaded"], &["--max-upload-bytes", "1000000"]).await;
    let author = uuid::Uuid::new_v4().to_string();
    let mention = uuid::Uuid::new_v4().to_string();
    let video = vec![7u8; 300_000];
    let started = std::time::Instant::now();
    let reply = upload(
        &api,
        &[
            ("videoFile", Some(("sunset.mp4", "video/mp4")), &video),
            ("caption", None, b"Check out this amazing sunset!"),
            ("hashtags", None, b"#travel #sunset #egypt"),
            ("mentions", None, format!("@{mention}").as_bytes()),
            ("authorId", None, author.as_bytes()),
        ],
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["status"], "PROCESSING");
    let video_id = reply.body["videoId"].as_str().unwrap().to_string();
    assert!(
        elapsed < Duration::from_secs(2),
        "upload answered in {elapsed:?}"
    );

    let stored = api.objects.join(format!("videos/{video_id}/original.mp4"));
    assert_eq!(std::fs::read(&stored).unwrap(), video);
    let topic = api.env.topic_of("video.uploaded");
    let record = read_records(&api.env.kafka, &topic, 1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(record.key(), Some(video_id.as_bytes()));
    let data = decoded_data(&api, &record).await;
    assert_eq!(data["authorId"], author);
    assert_eq!(data["sizeBytes"], 300_000);
    assert_eq!(data["objectKey"], format!("videos/{video_id}/original.mp4"));
    assert_eq!(data["hashtags"], json!(["travel", "sunset", "egypt"]));
    assert_eq!(data["mentions"], json!([mention]));
    assert_eq!(data["caption"], "Check out this amazing sunset!");

    let not_video = upload(
        &api,
        &[
            ("videoFile", Some(("a.png", "image/png")), b"png"),
            ("authorId", None, author.as_bytes()),
        ],
    )
    .await;
    assert_problem(&not_video, 415, 41501);
    let caption = "c".repeat(5001);
    let long_caption = upload(
        &api,
        &[
            ("caption", None, caption.as_bytes()),
            ("videoFile", Some(("a.mp4", "video/mp4")), b"v"),
            ("authorId", None, author.as_bytes()),
        ],
    )
    .await;
    assert_problem(&long_caption, 422, 42206);
    let too_big = vec![1u8; 1_000_001];
    let oversized = upload(
        &api,
        &[
            ("videoFile", Some(("big.mp4", "video/mp4")), &too_big),
            ("authorId", None, author.as_bytes()),
        ],
    )
    .await;
    assert_problem(&oversized, 413, 41301);
    let no_author = upload(&api, &[("videoFile", Some(("a.mp4", "video/mp4")), b"v")]).await;
    assert_problem(&no_author, 422, 42206);
    assert_eq!(
        count_records(&api, &topic).await,
        1,
        "refused uploads produce nothing"
    );
}

#[tokio::test]
async fn catalog_health_metrics_and_openapi_are_served() {
    let api = api(&["post.created"]).await;
    let catalog = api.get("/v1/catalog").await;
    assert_eq!(catalog.status, StatusCode::OK);
    let entries = catalog.body.as_array().unwrap();
    assert_eq!(entries.len(), api.env.catalog.events().count());
    let payment = entries
        .iter()
        .find(|e| e["type"] == "payment.initiated")
        .unwrap();
    assert_eq!(payment["topic"], api.env.topic_of("payment.initiated"));
    assert_eq!(payment["partitionKey"], "walletId");
    assert_eq!(payment["schema"]["name"], "PaymentInitiated");
    let typing = entries
        .iter()
        .find(|e| e["type"] == "typing.indicator")
        .unwrap();
    assert_eq!(typing["ephemeral"], true);
    assert_eq!(typing["topic"], Value::Null);

    assert_eq!(api.get("/healthz").await.status, StatusCode::OK);
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(
        ready.body,
        json!({"kafka": true, "registry": true, "redis": true, "database": true})
    );

    let reply = api
        .post_json(&json!({"type": "post.created", "data": api.sample("post.created")}))
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let metrics = api.get("/metrics").await;
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("circulatory_events_produced_total{type=\"post.created\"} 1"),
        "{text}"
    );
    assert!(text.contains("circulatory_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/events\",status=\"202\""));
    assert!(text.contains("circulatory_produce_duration_seconds"));
    assert!(text.contains("circulatory_producer_queue_depth"));

    let openapi = api.get("/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    for path in ["/v1/events", "/v1/videos", "/v1/catalog", "/readyz"] {
        assert!(
            openapi.body["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }

    let asyncapi = api.get("/asyncapi.json").await;
    assert_eq!(asyncapi.status, StatusCode::OK);
    assert_eq!(asyncapi.header("content-type"), Some("application/json"));
    assert_eq!(asyncapi.body["asyncapi"], "3.0.0");
    let topic = api.env.topic_of("payment.initiated");
    let base = topic
        .strip_prefix(&format!("{}.", api.env.namespace))
        .unwrap();
    assert_eq!(asyncapi.body["channels"][base]["address"], topic.as_str());
}

#[tokio::test]
async fn an_unreachable_registry_is_a_quick_503_not_a_hang() {
    let api = api_with(
        &["share.created"],
        &["--registry", "http://127.0.0.1:9/apis/ccompat/v7"],
    )
    .await;
    let started = std::time::Instant::now();
    let reply = api
        .post_json(&json!({"type": "share.created", "data": api.sample("share.created")}))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "answered after {:?}",
        started.elapsed()
    );
    assert_problem(&reply, 503, 50302);
    assert!(reply.header("retry-after").is_some());
    let ready = api.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["registry"], false);
    assert!(is_empty(&api.env.kafka, &api.env.topic_of("share.created")).await);
}

#[tokio::test]
async fn past_the_concurrency_bound_requests_are_shed_with_503() {
    use tokio::io::AsyncWriteExt;
    let api = api_with(&["post.created"], &["--max-concurrency", "1"]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = api.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // A client that announces a body and sends it slowly holds the only slot.
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    slow.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: {}\r\ncontent-length: 100000\r\n\r\n{{",
            bearer(&token("tests", &["*"]))
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /v1/catalog HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await
    .expect("an answer, not a queue")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    assert!(answer.contains("50304"), "{answer}");
    let request_id = answer
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-request-id: ")
                .map(str::to_string)
        })
        .expect("a request id");
    assert!(
        answer.contains(&format!("\"instance\":\"{}\"", request_id.trim())),
        "the shed request's problem names its request id: {answer}"
    );
    // Probes stay outside the bound.
    let mut probe = tokio::net::TcpStream::connect(address).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut probe, &mut answer)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(slow);
}
