//! Who may do what on the console: no token 401, not an admin 403, a viewer reads but acting is
//! 403 with nothing produced, a browser session acts only with its CSRF token.

mod support;

use circulatory::auth::AdminRole;
use circulatory_testkit::{count_records, TestEnv};
use serde_json::json;
use support::{operator, token, viewer, Console};

const GROUP: &str = "event-tracking";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_are_enforced_by_the_server() {
    let env = TestEnv::new();
    env.create_group_topics(GROUP).await;
    let console = Console::start(&env, &[]).await;
    let queues = console.url("/admin/circulatory/queues");
    // The topics are served (the console read them without an error).
    console
        .until(&viewer(), "/admin/circulatory/topology", "topics", |b| {
            b["topics"].as_array().is_some_and(|t| {
                t.iter()
                    .any(|t| t["kind"] == "replay" && t["owner"] == GROUP && !t["actual"].is_null())
            })
        })
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let anonymous = console.http.get(&queues).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let (status, body) = console
        .get("not.a.token", "/admin/circulatory/queues")
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = console
        .get(
            &token("client", false, AdminRole::Viewer),
            "/admin/circulatory/queues",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("admin"));

    // A viewer reads, and may dry-run a bulk action, but acting is refused with nothing produced.
    let (status, _) = console.get(&viewer(), "/admin/circulatory/queues").await;
    assert_eq!(status, 200);
    let (status, _) = console
        .post(
            &viewer(),
            "/admin/circulatory/dead-letters/bulk",
            json!({"action": "retry", "filter": {"group": GROUP}}),
        )
        .await;
    assert_eq!(status, 200);
    let replay_topic = env
        .catalog
        .topic_name(&env.catalog.group(GROUP).unwrap().replay_topic_base());
    for path in [
        format!("/admin/circulatory/dead-letters/{GROUP}/0-0/retry"),
        format!("/admin/circulatory/queues/{GROUP}/pause"),
    ] {
        let (status, body) = console.post(&viewer(), &path, json!({})).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("operator"),
            "{body}"
        );
    }
    let (status, _) = console
        .post(&viewer(), "/admin/circulatory/dead-letters/bulk", json!({"action": "retry", "filter": {"group": GROUP}, "dryRun": false, "expectCount": 0}))
        .await;
    assert_eq!(status, 403);
    assert_eq!(count_records(&env.kafka, &replay_topic).await, 0);

    // A browser session: signed in by cookie, it must echo the CSRF token to act.
    let browser = reqwest::Client::builder().build().unwrap();
    let signed = browser
        .post(console.url("/admin/session"))
        .json(&json!({"token": operator()}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
    let cookies: Vec<String> = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    assert!(signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().contains("HttpOnly")));
    let session: serde_json::Value = signed.json().await.unwrap();
    assert_eq!(session["role"], "operator");
    let csrf = session["csrf"].as_str().unwrap().to_string();
    let cookie = cookies.join("; ");
    let pause = console.url(&format!("/admin/circulatory/queues/{GROUP}/pause"));
    let without = browser
        .post(&pause)
        .header("cookie", &cookie)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 403);
    let wrong = browser
        .post(&pause)
        .header("cookie", &cookie)
        .header("x-csrf-token", "guess")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let read = browser
        .get(&queues)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "reading needs no CSRF token");
    let with = browser
        .post(&pause)
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"reason": "auth test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 200);
    let resumed = browser
        .post(console.url(&format!("/admin/circulatory/queues/{GROUP}/resume")))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
}
