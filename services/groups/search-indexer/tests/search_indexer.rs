//! search-indexer against the real stack: posts, comments and users published to Kafka become
//! ranked search results, deleted posts (and their comments) and non-public posts are never
//! found, a redelivered event changes nothing, and an unreachable database ends in the dead
//! letters with the error.

use std::time::Duration;

use circulatory_group_common::runner::NoOptions;
use circulatory_group_common::testing::{
    self as support, eventually, publish_with_id, uuid, DatabaseOutage,
};
use circulatory_group_search_indexer::{register, search, GROUP};
use circulatory_testkit::TestEnv;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(30);

/// A word no other test uses, so results are this test's documents only.
fn unique_word() -> String {
    format!("zq{}", &uuid().replace('-', "")[..12])
}

fn post(post_id: &str, author: &str, text: &str, visibility: &str, at: &str) -> Value {
    json!({
        "postId": post_id,
        "authorId": author,
        "text": text,
        "hashtags": ["travel"],
        "mentions": [],
        "mediaType": "TEXT",
        "videoId": null,
        "visibility": visibility,
        "createdAt": at
    })
}

fn comment(comment_id: &str, post_id: &str, text: &str) -> Value {
    json!({
        "commentId": comment_id,
        "postId": post_id,
        "authorId": uuid(),
        "postAuthorId": uuid(),
        "parentCommentId": null,
        "text": text,
        "mentions": [],
        "createdAt": "2026-11-27T10:05:00Z"
    })
}

fn ids(hits: &[circulatory_group_search_indexer::Hit]) -> Vec<String> {
    hits.iter().map(|h| h.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documents_are_ranked_and_deleted_posts_are_not_found() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let word = unique_word();
    let author = uuid();

    // `strong` says the word three times, `weak` once, `gone` is deleted, `hidden` is private.
    let (strong, weak, gone, hidden) = (uuid(), uuid(), uuid(), uuid());
    let (on_gone, on_weak, user) = (uuid(), uuid(), uuid());
    for (id, text, visibility) in [
        (
            &strong,
            format!("{word} sunset, {word} river and {word} again"),
            "PUBLIC",
        ),
        (
            &weak,
            format!("a long day by the sea and one {word}"),
            "PUBLIC",
        ),
        (
            &gone,
            format!("{word} {word} {word} {word} soon deleted"),
            "PUBLIC",
        ),
        (&hidden, format!("{word} private diary"), "PRIVATE"),
    ] {
        env.publish(
            &publisher,
            "post.created",
            post(id, &author, &text, visibility, "2026-11-27T10:00:00Z"),
        )
        .await;
    }
    env.publish(
        &publisher,
        "comment.added",
        comment(&on_gone, &gone, &format!("nice {word}")),
    )
    .await;
    env.publish(
        &publisher,
        "comment.added",
        comment(&on_weak, &weak, &format!("lovely {word} photo")),
    )
    .await;
    env.publish(
        &publisher,
        "user.created",
        json!({
            "userId": user,
            "username": format!("{word}_fan"),
            "displayName": format!("Nile {word}"),
            "email": "fan@example.com",
            "phoneNumber": null,
            "signupMethod": "EMAIL",
            "locale": "ar-EG",
            "countryCode": "EG",
            "referrerId": null,
            "createdAt": "2026-11-27T09:00:00Z"
        }),
    )
    .await;

    // Everything indexed (the private post too, as a row that search never returns).
    eventually("7 documents indexed", WITHIN, || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM search_documents WHERE body LIKE '%' || $1 || '%'",
        )
        .bind(&word)
        .fetch_one(&deps.pool)
        .await
        .expect("query");
        (n == 7).then_some(())
    })
    .await;
    let hits = search(&deps.pool, &word, 10).await.expect("search");
    assert_eq!(hits[0].id, gone, "most mentions ranks first: {hits:?}");
    assert_eq!(hits[1].id, strong);
    assert!(hits.windows(2).all(|w| w[0].rank >= w[1].rank), "{hits:?}");
    let found = ids(&hits);
    for id in [&weak, &on_gone, &on_weak, &user] {
        assert!(found.contains(id), "{id} missing from {found:?}");
    }
    assert!(!found.contains(&hidden), "a private post was found");
    assert_eq!(hits.len(), 6);
    let user_hit = hits.iter().find(|h| h.id == user).expect("user");
    assert_eq!(user_hit.kind, "user");
    // Web search syntax: a phrase, an exclusion; a limit.
    let hits = search(&deps.pool, &format!("\"{word} river\""), 10)
        .await
        .expect("search");
    assert_eq!(ids(&hits), vec![strong.clone()]);
    let hits = search(&deps.pool, &format!("{word} -sunset"), 100)
        .await
        .expect("search");
    assert!(!ids(&hits).contains(&strong) && ids(&hits).contains(&weak));
    assert_eq!(search(&deps.pool, &word, 2).await.expect("search").len(), 2);
    // Email addresses are not indexed.
    let hits = search(&deps.pool, &format!("{word} fan@example.com"), 10)
        .await
        .expect("search");
    assert!(hits.is_empty(), "{hits:?}");

    // Deleting a post removes it and its comments from the results.
    env.publish(
        &publisher,
        "post.deleted",
        json!({
            "postId": gone,
            "authorId": author,
            "reason": "AUTHOR_REQUEST",
            "deletedBy": author,
            "deletedAt": "2026-11-27T11:00:00Z"
        }),
    )
    .await;
    let hits = eventually("the deleted post gone", WITHIN, || async {
        let hits = search(&deps.pool, &word, 10).await.expect("search");
        (!ids(&hits).contains(&gone)).then_some(hits)
    })
    .await;
    let found = ids(&hits);
    assert!(
        !found.contains(&on_gone),
        "a comment of a deleted post was found"
    );
    assert_eq!(found[0], strong);
    assert_eq!(found.len(), 4, "{found:?}");
    let (body, deleted): (String, bool) = sqlx::query_as(
        "SELECT body, deleted FROM search_documents WHERE kind = 'post' AND id = $1",
    )
    .bind(&gone)
    .fetch_one(&deps.pool)
    .await
    .expect("tombstone");
    assert_eq!((body.as_str(), deleted), ("", true));
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_events_change_nothing_more() {
    let env = TestEnv::new();
    let deps = support::deps(&env).await;
    let group = support::start(&env, &deps, GROUP, register, NoOptions {}).await;
    let publisher = env.publisher();
    let word = unique_word();
    let (post_id, author) = (uuid(), uuid());
    let (created_id, deleted_id) = (uuid(), uuid());
    let created = post(
        &post_id,
        &author,
        &format!("{word} first"),
        "PUBLIC",
        "2026-11-27T10:00:00Z",
    );
    let deleted = json!({
        "postId": post_id,
        "authorId": author,
        "reason": "MODERATION_TAKEDOWN",
        "deletedBy": null,
        "deletedAt": "2026-11-27T11:00:00Z"
    });
    publish_with_id(
        &env,
        &publisher,
        "post.created",
        &created_id,
        created.clone(),
    )
    .await;
    publish_with_id(
        &env,
        &publisher,
        "post.deleted",
        &deleted_id,
        deleted.clone(),
    )
    .await;
    // The deletion again (a replay): it keeps the first deletion time. The creation again: it
    // does not bring the post back; nor does a new creation event for the same post.
    publish_with_id(
        &env,
        &publisher,
        "post.deleted",
        &deleted_id,
        json!({
            "postId": post_id,
            "authorId": author,
            "reason": "MODERATION_TAKEDOWN",
            "deletedBy": null,
            "deletedAt": "2026-11-27T12:00:00Z"
        }),
    )
    .await;
    publish_with_id(&env, &publisher, "post.created", &created_id, created).await;
    let resurrect_id = uuid();
    publish_with_id(
        &env,
        &publisher,
        "post.created",
        &resurrect_id,
        post(
            &post_id,
            &author,
            &format!("{word} resurrected"),
            "PUBLIC",
            "2026-11-27T10:00:00Z",
        ),
    )
    .await;
    // One key (postId), so one partition in order: once the last event is processed, so are the
    // duplicates before it.
    eventually("the last event processed", WITHIN, || async {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT event_id FROM processed_events WHERE consumer_group = $1 AND event_id = $2",
        )
        .bind(GROUP)
        .bind(&resurrect_id)
        .fetch_optional(&deps.pool)
        .await
        .expect("query");
        row.map(|_| ())
    })
    .await;
    let row: (String, bool, String) = sqlx::query_as(
        "SELECT body, deleted, to_char(deleted_at AT TIME ZONE 'UTC', 'HH24:MI') \
         FROM search_documents WHERE kind = 'post' AND id = $1",
    )
    .bind(&post_id)
    .fetch_one(&deps.pool)
    .await
    .expect("row");
    assert_eq!(row, (String::new(), true, "11:00".to_string()));
    assert!(search(&deps.pool, &word, 10)
        .await
        .expect("search")
        .is_empty());
    group.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_database_is_retried_then_dead_lettered() {
    let env = TestEnv::new().with_fast_retries();
    DatabaseOutage {
        group: GROUP,
        register,
        options: NoOptions {},
        event_type: "comment.added",
        data: comment(&uuid(), &uuid(), "hello"),
    }
    .dead_letters(env)
    .await;
}
