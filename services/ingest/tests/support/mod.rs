//! An in-process ingest API on the real stack, in a fresh namespace.

#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use circulatory::auth::{claims_for, mint_hs256, Claims};
use circulatory_ingest::config::Config;
use circulatory_testkit::TestEnv;
use clap::Parser;
use http_body_util::BodyExt;
use tower::ServiceExt;

pub(crate) const SECRET: &str = "test-secret-test-secret-test-secret-0123";

pub(crate) struct Api {
    pub(crate) env: TestEnv,
    pub(crate) router: Router,
    pub(crate) config: Config,
    pub(crate) objects: std::path::PathBuf,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: serde_json::Value,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Starts the API with extra flags, creating the main topics of `domains` first.
pub(crate) async fn api_with(topics_for: &[&str], extra: &[&str]) -> Api {
    let (env, config, objects) = configured(topics_for, extra).await;
    let service = circulatory_ingest::build(&config)
        .await
        .expect("service builds");
    let router = circulatory_ingest::app(
        service.state,
        config.max_concurrency,
        config.request_timeout,
    );
    Api {
        env,
        router,
        config,
        objects,
    }
}

/// A fresh namespace with the main topics of `topics_for`, and the API's configuration for it.
pub(crate) async fn configured(
    topics_for: &[&str],
    extra: &[&str],
) -> (TestEnv, Config, std::path::PathBuf) {
    let env = TestEnv::new();
    let topics: Vec<String> = topics_for.iter().map(|t| env.topic_of(t)).collect();
    let mut unique: Vec<&str> = topics.iter().map(String::as_str).collect();
    unique.sort();
    unique.dedup();
    env.create_topics(&unique).await;
    let objects = std::env::temp_dir().join(format!("circ-objects-{}", env.namespace));
    let root = circulatory_testkit::repo_root();
    let mut args: Vec<String> = [
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
        objects.to_str().unwrap(),
        "--topology",
        root.join("topics.yaml").to_str().unwrap(),
        "--schemas",
        root.join("schemas").to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = Config::try_parse_from(args).expect("valid flags");
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    (env, config, objects)
}

pub(crate) async fn api(topics_for: &[&str]) -> Api {
    api_with(topics_for, &[]).await
}

pub(crate) fn redis_url() -> String {
    std::env::var("CIRC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A token for `sub` allowed to publish `events` patterns.
pub(crate) fn token(sub: &str, events: &[&str]) -> String {
    let mut claims: Claims = claims_for(sub, Duration::from_secs(600));
    claims.events = events.iter().map(|s| s.to_string()).collect();
    mint_hs256(SECRET.as_bytes(), &claims).unwrap()
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Api {
    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
            })
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    /// POST /v1/events with a token allowed everything, as JSON.
    pub(crate) async fn post_json(&self, body: &serde_json::Value) -> Reply {
        self.send(
            Request::post("/v1/events")
                .header("content-type", "application/json")
                .header("authorization", bearer(&token("tests", &["*"])))
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// A sample `data` for a type, from its schema.
    pub(crate) fn sample(&self, event_type: &str) -> serde_json::Value {
        circulatory_testkit::sample_data(&self.env.catalog.event(event_type).unwrap().schema_json)
    }
}
