//! A console in this process, on an ephemeral port, for one test's namespace; tokens; a group
//! with handlers the test controls.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use circulatory::auth::{claims_for, mint_hs256, AdminRole};
use circulatory::consumer::{ConsumerGroup, Context, Event, GroupSettings, HandlerError};
use circulatory_console::config::Config;
use circulatory_testkit::{repo_root, TestEnv};
use clap::Parser;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "a-console-test-secret-of-32-bytes-or-more";

pub struct Console {
    pub base: String,
    pub http: reqwest::Client,
    pub service: circulatory_console::Service,
}

impl Console {
    pub async fn start(env: &TestEnv, extra: &[&str]) -> Console {
        let root = repo_root();
        let mut args = vec![
            "console".to_string(),
            "--namespace".into(),
            env.namespace.clone(),
            "--topology".into(),
            root.join("topics.yaml").display().to_string(),
            "--schemas".into(),
            root.join("schemas").display().to_string(),
            "--jwt-secret".into(),
            SECRET.into(),
            "--refresh".into(),
            "300ms".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let config = Config::parse_from(args);
        let service = circulatory_console::build(&config).await.expect("console");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = service.router();
        tokio::spawn(async move {
            circulatory::http_server::serve(
                listener,
                router,
                Default::default(),
                std::future::pending(),
            )
            .await
        });
        Console {
            base,
            http: reqwest::Client::new(),
            service,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Polls `path` until `check` accepts its body.
    pub async fn until(
        &self,
        token: &str,
        path: &str,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let (status, body) = self.get(token, path).await;
            if status == 200 && check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: last answer {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.service.shutdown();
    }
}

pub fn token(sub: &str, admin: bool, role: AdminRole) -> String {
    let mut claims = claims_for(sub, Duration::from_secs(600));
    claims.admin = admin;
    claims.role = role;
    mint_hs256(SECRET.as_bytes(), &claims).unwrap()
}

pub fn operator() -> String {
    token("ops-alice", true, AdminRole::Operator)
}

pub fn viewer() -> String {
    token("viewer-bob", true, AdminRole::Viewer)
}

/// A group running the catalog's declaration with a handler the test controls: it records
/// each event it sees and fails permanently while `broken` is set.
pub struct Controlled {
    pub seen: Arc<Mutex<Vec<(String, Value)>>>,
    pub broken: Arc<AtomicBool>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), circulatory::consumer::ConsumerError>>,
}

/// Group `group` with no handler yet, on Redis, with drain and session timeouts short enough
/// for tests.
pub fn test_group(
    env: &TestEnv,
    group: &str,
    redis: redis::aio::ConnectionManager,
) -> ConsumerGroup {
    ConsumerGroup::new(
        env.catalog.clone(),
        group,
        env.kafka.clone(),
        env.registry.clone(),
    )
    .unwrap()
    .redis(redis)
    .settings(GroupSettings {
        drain_timeout: Duration::from_secs(3),
        session_timeout: Duration::from_secs(6),
        ..GroupSettings::default()
    })
}

impl Controlled {
    pub async fn start(
        env: &TestEnv,
        group: &str,
        redis: redis::aio::ConnectionManager,
    ) -> Controlled {
        env.create_group_topics(group).await;
        let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let broken = Arc::new(AtomicBool::new(false));
        let mut consumer = test_group(env, group, redis);
        for event_type in &env.catalog.group(group).unwrap().subscribe {
            let (seen, broken) = (seen.clone(), broken.clone());
            consumer = consumer.handler(event_type, move |e: Event, _: Context| {
                let (seen, broken) = (seen.clone(), broken.clone());
                async move {
                    seen.lock()
                        .unwrap()
                        .push((e.id().to_string(), e.data.clone()));
                    if broken.load(Ordering::SeqCst) {
                        Err(HandlerError::permanent("refused by the test"))
                    } else {
                        Ok(())
                    }
                }
            });
        }
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer.run(stop.clone()));
        Controlled {
            seen,
            broken,
            stop,
            task,
        }
    }

    pub fn break_it(&self, on: bool) {
        self.broken.store(on, Ordering::SeqCst);
    }

    pub fn seen_ids(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub async fn wait_seen(&self, count: usize) -> Vec<(String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= count {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "saw {} of {count} events",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

pub async fn redis() -> redis::aio::ConnectionManager {
    let url = std::env::var("CIRC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap()
}

pub fn sample(env: &TestEnv, event_type: &str) -> Value {
    circulatory_testkit::sample_data(&env.catalog.event(event_type).unwrap().schema_json)
}

/// Publishes `count` events of a type; returns their ids.
pub async fn publish(env: &TestEnv, event_type: &str, count: usize) -> Vec<String> {
    let publisher = env.publisher();
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(
            env.publish(&publisher, event_type, sample(env, event_type))
                .await
                .id,
        );
    }
    ids
}
