//! The read routes against the real stack: videos, notifications and feeds read back from
//! projections seeded as their groups write them (rows keyed by fresh uuids, the feed's Redis
//! sorted set), wallets from the payments group itself running on Kafka. Access rules (owner or
//! admin), paging across pages, and the 400/401/403/404/503 problems.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use circulatory::auth::{claims_for, mint_hs256};
use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{self as groups, eventually, publish_with_id};
use circulatory_group_payments::{register, GROUP};
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{api, api_with, bearer, token, Api, Reply, SECRET};
use uuid::Uuid;

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
    assert_eq!(
        reply.body["instance"].as_str(),
        reply.header("x-request-id")
    );
}

fn admin_token() -> String {
    let mut claims = claims_for("operator", Duration::from_secs(600));
    claims.admin = true;
    mint_hs256(SECRET.as_bytes(), &claims).unwrap()
}

/// A user's token: `sub` is the user id, no publishing rights.
fn user_token(user: Uuid) -> String {
    token(&user.to_string(), &[])
}

async fn get(api: &Api, path: &str, token: Option<&str>) -> Reply {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", bearer(token));
    }
    api.send(request.body(Body::empty()).unwrap()).await
}

/// The shared database, migrated (the tables are shared: rows are keyed by fresh uuids).
async fn database() -> PgPool {
    let pool = circulatory::db::connect(&groups::database_url(), 4)
        .await
        .expect("postgres");
    circulatory::db::migrate(&pool).await.expect("migrations");
    pool
}

/// A cursor with this content (cursors are base64url of `<list>:<keyset>`).
fn cursor(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

#[tokio::test]
async fn a_video_reads_back_from_its_projection() {
    let api = api(&[]).await;
    let db = database().await;
    let (video, author, failed) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let renditions = json!([
        {"name": "720p", "width": 1280, "height": 720, "bitrateKbps": 2800, "playlistUrl": format!("https://cdn.test/{video}/720p.m3u8")},
        {"name": "360p", "width": 640, "height": 360, "bitrateKbps": 800, "playlistUrl": format!("https://cdn.test/{video}/360p.m3u8")}
    ]);
    // As transcoder (upload, probe) and video-publisher (renditions, thumbnail, publication)
    // leave a published video.
    sqlx::query(
        "INSERT INTO videos (id, author_id, post_id, status, source_key, original_filename, \
           content_type, size_bytes, caption, hashtags, uploaded_at, duration_ms, width, height, \
           fps, video_codec, has_audio, renditions, master_playlist_url, transcoded_at, \
           thumbnail_url, thumbnail_key, thumbnail_width, thumbnail_height, thumbnailed_at, \
           published_at, published_by_event, created_at, updated_at) \
         VALUES ($1, $2, $1, 'PUBLISHED', $3, 'clip.mp4', 'video/mp4', 1048576, 'Sunset #beach', \
           '{beach}', $4, 12500, 1280, 720, 29.97, 'h264', true, $5::text::jsonb, $6, $7, $8, \
           $9, 640, 360, $7, $10, 'evt-1', $4, $10)",
    )
    .bind(video)
    .bind(author)
    .bind(format!("uploads/{video}/clip.mp4"))
    .bind(at("2026-11-27T10:00:00Z"))
    .bind(renditions.to_string())
    .bind(format!("https://cdn.test/{video}/master.m3u8"))
    .bind(at("2026-11-27T10:01:00Z"))
    .bind(format!("https://cdn.test/{video}/thumb.jpg"))
    .bind(format!("thumbs/{video}.jpg"))
    .bind(at("2026-11-27T10:01:30.250Z"))
    .execute(&db)
    .await
    .unwrap();
    // And a video whose upload was not a usable video.
    sqlx::query(
        "INSERT INTO videos (id, author_id, post_id, status, source_key, original_filename, \
           content_type, size_bytes, uploaded_at, failure_kind, failure_reason, failed_at, \
           created_at, updated_at) \
         VALUES ($1, $2, $1, 'FAILED', 'uploads/x', 'x.mp4', 'video/mp4', 10, $3, \
           'INVALID_INPUT', 'no video stream', $3, $3, $3)",
    )
    .bind(failed)
    .bind(author)
    .bind(at("2026-11-27T11:00:00Z"))
    .execute(&db)
    .await
    .unwrap();

    // Any authenticated user may read a video, not only its author.
    let reader = user_token(Uuid::new_v4());
    let reply = get(&api, &format!("/v1/videos/{video}"), Some(&reader)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "id": video,
            "status": "PUBLISHED",
            "authorId": author,
            "postId": video,
            "caption": "Sunset #beach",
            "hashtags": ["beach"],
            "durationMs": 12500,
            "width": 1280,
            "height": 720,
            "fps": 29.97,
            "renditions": [
                {"name": "720p", "width": 1280, "height": 720, "bandwidth": 2_800_000, "url": format!("https://cdn.test/{video}/720p.m3u8")},
                {"name": "360p", "width": 640, "height": 360, "bandwidth": 800_000, "url": format!("https://cdn.test/{video}/360p.m3u8")}
            ],
            "masterPlaylistUrl": format!("https://cdn.test/{video}/master.m3u8"),
            "thumbnail": {"url": format!("https://cdn.test/{video}/thumb.jpg"), "width": 640, "height": 360},
            "publishedAt": "2026-11-27T10:01:30.250Z",
            "failure": null,
            "createdAt": "2026-11-27T10:00:00Z",
            "updatedAt": "2026-11-27T10:01:30.250Z"
        })
    );
    assert!(reply.header("x-request-id").is_some());

    let reply = get(&api, &format!("/v1/videos/{failed}"), Some(&reader)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["status"], "FAILED");
    assert_eq!(
        reply.body["failure"],
        json!({"kind": "INVALID_INPUT", "reason": "no video stream"})
    );
    assert_eq!(reply.body["renditions"], json!([]));
    assert_eq!(reply.body["thumbnail"], Value::Null);
    assert_eq!(reply.body["publishedAt"], Value::Null);
    assert_eq!(reply.body["durationMs"], Value::Null);
    assert_eq!(reply.body["masterPlaylistUrl"], Value::Null);
    assert!(reply.body.get("fps").is_none(), "{}", reply.body);

    let unknown = Uuid::new_v4();
    let reply = get(&api, &format!("/v1/videos/{unknown}"), Some(&reader)).await;
    assert_problem(&reply, 404, 40401);
    assert!(reply.body["detail"]
        .as_str()
        .unwrap()
        .contains(&unknown.to_string()));
    assert_problem(
        &get(&api, "/v1/videos/not-a-uuid", Some(&reader)).await,
        400,
        40001,
    );
    assert_problem(
        &get(&api, &format!("/v1/videos/{video}"), None).await,
        401,
        40101,
    );
    assert_problem(
        &get(&api, &format!("/v1/videos/{video}"), Some("not.a.jwt")).await,
        401,
        40101,
    );
}

/// Collects every page of `path` (which already has a query) with `limit`; returns the pages.
async fn pages(api: &Api, path: &str, limit: usize, token: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let url = match &before {
            Some(cursor) => format!("{path}&limit={limit}&before={cursor}"),
            None => format!("{path}&limit={limit}"),
        };
        let reply = get(api, &url, Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}: {}", reply.body);
        let items = reply.body["items"].as_array().unwrap().len();
        assert!(items <= limit, "{}", reply.body);
        before = reply.body["next"].as_str().map(str::to_string);
        pages.push(reply.body);
        if before.is_none() {
            return pages;
        }
        assert!(pages.len() < 20, "paging does not end");
    }
}

#[tokio::test]
async fn a_feed_pages_newest_first_without_deleted_posts() {
    let api = api(&[]).await;
    let db = database().await;
    let mut redis = groups::redis().await;
    let user = Uuid::new_v4();
    let key = format!("circ:{}:feed:{user}", api.env.namespace);
    let base: i64 = 1_795_000_000_000;
    // Two posts share a feed time: Redis orders them by member, descending when newest first.
    let (old, older, deleted, newest) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let mut tied = [Uuid::new_v4().to_string(), Uuid::new_v4().to_string()];
    tied.sort();
    let [tie_low, tie_high] = tied.clone();
    let members = [
        (older.to_string(), base + 1000),
        (old.to_string(), base + 2000),
        (deleted.to_string(), base + 3000),
        (tie_low.clone(), base + 4000),
        (tie_high.clone(), base + 4000),
        (newest.to_string(), base + 5000),
    ];
    for (member, score) in &members {
        let _: i64 = redis::cmd("ZADD")
            .arg(&key)
            .arg(score)
            .arg(member)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    // The deletion reached feed_posts; the member lingers in the feed.
    sqlx::query(
        "INSERT INTO feed_posts (post_id, author_id, media_type, visibility, created_at, deleted, \
           deleted_at) VALUES ($1, $2, 'TEXT', 'PUBLIC', now(), true, now())",
    )
    .bind(deleted)
    .bind(Uuid::new_v4())
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO feed_posts (post_id, author_id, media_type, visibility, created_at) \
         VALUES ($1, $2, 'TEXT', 'PUBLIC', now())",
    )
    .bind(old)
    .bind(Uuid::new_v4())
    .execute(&db)
    .await
    .unwrap();

    let owner = user_token(user);
    let expected = vec![
        newest.to_string(),
        tie_high.clone(),
        tie_low.clone(),
        old.to_string(),
        older.to_string(),
    ];
    let whole = get(&api, &format!("/v1/users/{user}/feed"), Some(&owner)).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.body);
    assert_eq!(whole.body["next"], Value::Null);
    let ids: Vec<&str> = whole.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["postId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(
        whole.body["items"][0],
        json!({"postId": newest, "addedAt": DateTime::from_timestamp_millis(base + 5000).unwrap()})
    );

    // Pages of two: the first ends inside the tie, the second reads past the deleted post.
    let pages = pages(&api, &format!("/v1/users/{user}/feed?x=1"), 2, &owner).await;
    let paged: Vec<Vec<String>> = pages
        .iter()
        .map(|p| {
            p["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["postId"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert_eq!(
        paged,
        vec![
            expected[0..2].to_vec(),
            expected[2..4].to_vec(),
            expected[4..].to_vec()
        ]
    );

    // Admins may read anyone's feed; other users may not.
    let admin = get(
        &api,
        &format!("/v1/users/{user}/feed"),
        Some(&admin_token()),
    )
    .await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.body, whole.body);
    let stranger = user_token(Uuid::new_v4());
    assert_problem(
        &get(&api, &format!("/v1/users/{user}/feed"), Some(&stranger)).await,
        403,
        40301,
    );
    // A user without a feed yet has an empty one.
    let empty = Uuid::new_v4();
    let reply = get(
        &api,
        &format!("/v1/users/{empty}/feed"),
        Some(&user_token(empty)),
    )
    .await;
    assert_eq!(reply.body, json!({"items": [], "next": null}));

    // Garbage, a feed cursor with a broken keyset, and another list's cursor are all refused.
    for query in [
        "limit=0".to_string(),
        "limit=101".to_string(),
        "limit=ten".to_string(),
        "before=not-a-cursor".to_string(),
        format!("before={}", cursor("f1:x")),
        format!("before={}", cursor(&format!("n1:1795000000000000:{user}"))),
    ] {
        assert_problem(
            &get(
                &api,
                &format!("/v1/users/{user}/feed?{query}"),
                Some(&owner),
            )
            .await,
            400,
            40001,
        );
    }
    assert_problem(
        &get(&api, "/v1/users/not-a-uuid/feed", Some(&owner)).await,
        400,
        40001,
    );
    assert_problem(
        &get(&api, &format!("/v1/users/{user}/feed"), None).await,
        401,
        40101,
    );

    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
}

#[tokio::test]
async fn notifications_page_newest_first_with_the_unread_count() {
    let api = api(&[]).await;
    let db = database().await;
    let (user, actor, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // Six notifications; two share a creation time (ordered by id), two are read.
    let created = [
        "2026-11-27T09:00:00Z",
        "2026-11-27T09:01:00Z",
        "2026-11-27T09:02:00Z",
        "2026-11-27T09:02:00Z",
        "2026-11-27T09:03:00.500Z",
        "2026-11-27T09:04:00Z",
    ];
    let read = [true, false, true, false, false, false];
    let mut stored = Vec::new();
    for (i, (created_at, read)) in created.iter().zip(read).enumerate() {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO notifications (id, user_id, kind, title, body, actor_id, entity_id, \
               channels, delivered_channels, created_at, read_at, event_id) \
             VALUES ($1, $2, 'LIKE', $3, $4, $5, $6, '{IN_APP,PUSH}', '{IN_APP}', $7, $8, $9)",
        )
        .bind(id)
        .bind(user)
        .bind(format!("title {i}"))
        .bind(format!("body {i}"))
        .bind(actor)
        .bind(Uuid::new_v4())
        .bind(at(created_at))
        .bind(read.then(|| at("2026-11-27T12:00:00Z")))
        .bind(Uuid::new_v4().to_string())
        .execute(&db)
        .await
        .unwrap();
        stored.push((at(created_at), id, read));
    }
    // Someone else's notification never shows.
    sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, title, body, channels, delivered_channels, \
           created_at, event_id) \
         VALUES ($1, $2, 'SYSTEM', 't', 'b', '{IN_APP}', '{IN_APP}', now(), 'e')",
    )
    .bind(Uuid::new_v4())
    .bind(other)
    .execute(&db)
    .await
    .unwrap();
    stored.sort_by_key(|(created_at, id, _)| std::cmp::Reverse((*created_at, *id)));
    let ids = |filter: fn(bool) -> bool| -> Vec<String> {
        stored
            .iter()
            .filter(|(_, _, read)| filter(*read))
            .map(|(_, id, _)| id.to_string())
            .collect()
    };

    let owner = user_token(user);
    let first = get(
        &api,
        &format!("/v1/users/{user}/notifications?limit=1"),
        Some(&owner),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["unread"], 4);
    assert!(first.body["next"].is_string());
    let newest = &first.body["items"][0];
    assert_eq!(newest["id"], ids(|_| true)[0]);
    assert_eq!(newest["kind"], "LIKE");
    assert_eq!(newest["title"], "title 5");
    assert_eq!(newest["body"], "body 5");
    assert_eq!(newest["actorId"], actor.to_string());
    assert!(newest["entityId"].is_string());
    assert_eq!(newest["channels"], json!(["IN_APP", "PUSH"]));
    assert_eq!(newest["createdAt"], "2026-11-27T09:04:00Z");
    assert_eq!(newest["readAt"], Value::Null);

    let path = format!("/v1/users/{user}/notifications?x=1");
    for (filter, expected) in [
        ("", ids(|_| true)),
        ("&unread=true", ids(|read| !read)),
        ("&unread=false", ids(|read| read)),
    ] {
        let pages = pages(&api, &format!("{path}{filter}"), 2, &owner).await;
        assert_eq!(pages.len(), expected.len().div_ceil(2), "{filter}");
        let got: Vec<String> = pages
            .iter()
            .flat_map(|p| p["items"].as_array().unwrap().clone())
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, expected, "{filter}");
        assert!(pages.iter().all(|p| p["unread"] == 4));
    }
    let read_one = get(&api, &format!("{path}&unread=false&limit=1"), Some(&owner)).await;
    assert_eq!(read_one.body["items"][0]["readAt"], "2026-11-27T12:00:00Z");

    let admin = get(&api, &format!("{path}&limit=100"), Some(&admin_token())).await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.body["items"].as_array().unwrap().len(), 6);
    assert_problem(
        &get(&api, &path, Some(&user_token(other))).await,
        403,
        40301,
    );
    for query in [
        "limit=0".to_string(),
        "limit=1000".to_string(),
        "unread=maybe".to_string(),
        "before=not-a-cursor".to_string(),
        format!("before={}", cursor("n1:soon:x")),
        // A feed cursor is not a notifications cursor.
        format!("before={}", cursor("f1:1795000000000:x")),
    ] {
        assert_problem(
            &get(&api, &format!("{path}&{query}"), Some(&owner)).await,
            400,
            40001,
        );
    }
    assert_problem(&get(&api, &path, None).await, 401, 40101);
}

/// A currency of this test alone: the ledger's external account is per currency and shared.
fn currency() -> String {
    Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(3)
        .map(|b| char::from(b'A' + b % 26))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wallet_reads_back_the_ledger_the_payments_group_keeps() {
    let api = api(&["payment.initiated"]).await;
    let deps = groups::deps(&api.env).await;
    let group = groups::start(&api.env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = api.env.publisher();
    let cur = currency();
    let (alice, alice_wallet) = (Uuid::new_v4(), Uuid::new_v4());
    let (bob, bob_wallet) = (Uuid::new_v4(), Uuid::new_v4());
    let payment = |kind: &str, amount: i64, to: Option<(Uuid, Uuid)>| {
        json!({
            "paymentId": Uuid::new_v4(),
            "walletId": alice_wallet,
            "payeeWalletId": to.map(|(_, wallet)| wallet),
            "payerId": alice,
            "payeeId": to.map(|(user, _)| user),
            "amountMinor": amount,
            "currency": cur,
            "kind": kind,
            "reference": null,
            "note": null,
            "initiatedAt": "2026-11-27T10:00:00Z"
        })
    };
    // A top-up, then two tips to Bob, each decided before the next is sent.
    let mut payments = Vec::new();
    for data in [
        payment("TOP_UP", 1000, None),
        payment("TIP", 300, Some((bob, bob_wallet))),
        payment("TIP", 200, Some((bob, bob_wallet))),
    ] {
        let id = data["paymentId"].as_str().unwrap().to_string();
        publish_with_id(
            &api.env,
            &publisher,
            "payment.initiated",
            &Uuid::new_v4().to_string(),
            data,
        )
        .await;
        let status = eventually("payment decided", Duration::from_secs(60), || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM payments WHERE payment_id = $1")
                .bind(&id)
                .fetch_optional(&deps.pool)
                .await
                .unwrap()
        })
        .await;
        assert_eq!(status, "COMPLETED");
        payments.push(id);
    }
    group.stop().await;

    let owner = user_token(alice);
    let path = format!("/v1/wallets/{alice_wallet}");
    let first = get(&api, &format!("{path}?entries=2"), Some(&owner)).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let body = &first.body;
    assert_eq!(body["walletId"], alice_wallet.to_string());
    assert_eq!(body["ownerId"], alice.to_string());
    assert_eq!(body["currency"], cur);
    assert_eq!(body["balanceMinor"], 500);
    assert_eq!(body["version"], 3);
    assert!(body["updatedAt"].is_string());
    let strip_time = |entries: &Value| -> Vec<Value> {
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(e["createdAt"].is_string(), "{e}");
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("createdAt");
                e
            })
            .collect()
    };
    assert_eq!(
        strip_time(&body["entries"]),
        vec![
            json!({"paymentId": payments[2], "kind": "TIP", "direction": "DEBIT", "amountMinor": 200, "balanceAfterMinor": 500, "counterpartyWalletId": bob_wallet}),
            json!({"paymentId": payments[1], "kind": "TIP", "direction": "DEBIT", "amountMinor": 300, "balanceAfterMinor": 700, "counterpartyWalletId": bob_wallet}),
        ]
    );
    let next = body["next"].as_str().expect("a second page");
    let second = get(
        &api,
        &format!("{path}?entries=2&before={next}"),
        Some(&owner),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(
        strip_time(&second.body["entries"]),
        vec![
            json!({"paymentId": payments[0], "kind": "TOP_UP", "direction": "CREDIT", "amountMinor": 1000, "balanceAfterMinor": 1000, "counterpartyWalletId": format!("external:{cur}")})
        ]
    );
    assert_eq!(second.body["next"], Value::Null);
    assert_eq!(second.body["balanceMinor"], 500);

    // Bob's wallet was created by his first credit: his, readable by him and admins only.
    let bob_path = format!("/v1/wallets/{bob_wallet}");
    let bobs = get(&api, &bob_path, Some(&user_token(bob))).await;
    assert_eq!(bobs.status, StatusCode::OK, "{}", bobs.body);
    assert_eq!(bobs.body["balanceMinor"], 500);
    assert_eq!(bobs.body["ownerId"], bob.to_string());
    assert_eq!(bobs.body["entries"].as_array().unwrap().len(), 2);
    assert_eq!(bobs.body["entries"][0]["direction"], "CREDIT");
    assert_eq!(bobs.body["next"], Value::Null);
    let admin = get(&api, &bob_path, Some(&admin_token())).await;
    assert_eq!(admin.status, StatusCode::OK);
    assert_eq!(admin.body, bobs.body);
    assert_problem(&get(&api, &bob_path, Some(&owner)).await, 403, 40301);

    assert_problem(
        &get(
            &api,
            &format!("/v1/wallets/{}", Uuid::new_v4()),
            Some(&owner),
        )
        .await,
        404,
        40401,
    );
    assert_problem(
        &get(
            &api,
            &format!("/v1/wallets/external:{cur}"),
            Some(&admin_token()),
        )
        .await,
        400,
        40001,
    );
    for query in [
        "entries=0".to_string(),
        "entries=101".to_string(),
        "before=AAAA".to_string(),
        format!("before={}", cursor("w1:x")),
    ] {
        assert_problem(
            &get(&api, &format!("{path}?{query}"), Some(&owner)).await,
            400,
            40001,
        );
    }
    assert_problem(&get(&api, &path, None).await, 401, 40101);
}

#[tokio::test]
async fn an_unreachable_database_is_a_503_on_reads_only() {
    let api = api_with(
        &["post.created"],
        &[
            "--database-url",
            "postgres://nobody:nothing@127.0.0.1:9/none",
        ],
    )
    .await;
    let started = std::time::Instant::now();
    let reply = get(
        &api,
        &format!("/v1/videos/{}", Uuid::new_v4()),
        Some(&user_token(Uuid::new_v4())),
    )
    .await;
    // The health watcher knows the database is unreachable: no wait for the pool's timeout.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_problem(&reply, 503, 50306);
    assert!(reply.header("retry-after").is_some());
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("127.0.0.1") && !detail.contains("nobody"),
        "{detail}"
    );
    // Publishing and readiness do not depend on the database; /readyz reports it.
    let ready = get(&api, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["database"], false);
    let published = api
        .post_json(&json!({"type": "post.created", "data": api.sample("post.created")}))
        .await;
    assert_eq!(published.status, StatusCode::ACCEPTED, "{}", published.body);
}

#[tokio::test]
async fn the_read_routes_are_in_the_openapi_document() {
    let api = api(&[]).await;
    let openapi = get(&api, "/openapi.json", None).await;
    assert_eq!(openapi.status, StatusCode::OK);
    for path in [
        "/v1/videos/{id}",
        "/v1/users/{id}/feed",
        "/v1/users/{id}/notifications",
        "/v1/wallets/{id}",
    ] {
        let operation = &openapi.body["paths"][path]["get"];
        assert!(operation.is_object(), "{path} missing");
        assert!(operation["responses"]["200"].is_object(), "{path}");
        assert_eq!(operation["security"], json!([{"bearer": []}]), "{path}");
    }
    for schema in ["Video", "FeedPage", "NotificationsPage", "Wallet"] {
        assert!(
            openapi.body["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
}
