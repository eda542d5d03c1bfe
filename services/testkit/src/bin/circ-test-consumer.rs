//! A consumer-group process for tests that kill, stop and rebalance real processes.
//!
//! Runs `CIRC_TEST_GROUP` (default `payments`) in `CIRC_NAMESPACE`; every subscribed event adds
//! one to `applied` of its row in `CIRC_TEST_TABLE` inside the exactly-once transaction, after
//! sleeping `CIRC_TEST_HANDLER_MS`. Every call (redeliveries included) is also counted, outside
//! that transaction, in `<CIRC_TEST_TABLE>_calls`. Stops gracefully on SIGTERM.
//!
//! With `CIRC_TEST_EMIT=<type>` the group writes to Kafka only: each event emits one event of
//! that type (sample data) and nothing goes to PostgreSQL but the call count; with
//! `CIRC_TEST_TRANSACTIONAL=1` it runs as a transactional group (`CIRC_TEST_TRANSACTIONAL_ID`
//! sets a stable transactional id).

use std::sync::Arc;
use std::time::Duration;

use circulatory::catalog::{Catalog, CatalogPaths};
use circulatory::consumer::{exactly_once, ConsumerGroup, GroupSettings, HandlerError};
use circulatory::kafka::KafkaConfig;
use circulatory::process::{init_logs, shutdown_signal, Logs};
use circulatory::registry::{RegistryConfig, SchemaRegistry};
use tokio_util::sync::CancellationToken;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is required"))
}

#[tokio::main]
async fn main() {
    init_logs(Logs::Tool);
    let namespace = var("CIRC_NAMESPACE");
    let group = std::env::var("CIRC_TEST_GROUP").unwrap_or_else(|_| "payments".into());
    let table = var("CIRC_TEST_TABLE");
    let pause = Duration::from_millis(
        std::env::var("CIRC_TEST_HANDLER_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let catalog = Arc::new(
        Catalog::load(&CatalogPaths::in_dir(circulatory_testkit::repo_root()))
            .expect("catalog")
            .with_namespace(Some(&namespace))
            .expect("namespace"),
    );
    let registry = Arc::new(
        SchemaRegistry::new(RegistryConfig::new(circulatory_testkit::registry_url()))
            .expect("registry"),
    );
    let pool = circulatory::db::connect(&var("DATABASE_URL"), 8)
        .await
        .expect("database");
    let kafka = KafkaConfig::new(
        circulatory_testkit::bootstrap(),
        format!("test-consumer-{}", std::process::id()),
    );
    // A short session: a killed member's partitions move on quickly (the broker's minimum is 6 s).
    let settings = GroupSettings {
        session_timeout: Duration::from_secs(6),
        drain_timeout: Duration::from_secs(3),
        ..GroupSettings::default()
    };
    let emit = std::env::var("CIRC_TEST_EMIT").ok();
    let settings = GroupSettings {
        transactional_id: std::env::var("CIRC_TEST_TRANSACTIONAL_ID").ok(),
        ..settings
    };
    let mut consumer = ConsumerGroup::new(catalog.clone(), &group, kafka, registry)
        .expect("group")
        .settings(settings);
    if std::env::var("CIRC_TEST_TRANSACTIONAL").as_deref() == Ok("1") {
        consumer = consumer.transactional();
    }
    let emitted_data = emit.as_ref().map(|event_type| {
        Arc::new(circulatory_testkit::sample_data(
            &catalog.event(event_type).expect("emitted type").schema_json,
        ))
    });
    let statement: Arc<str> = Arc::from(format!(
        "INSERT INTO {table} (event_id, applied) VALUES ($1, 1) \
         ON CONFLICT (event_id) DO UPDATE SET applied = {table}.applied + 1"
    ));
    let count_call: Arc<str> = Arc::from(format!(
        "INSERT INTO {table}_calls (event_id, calls) VALUES ($1, 1) \
         ON CONFLICT (event_id) DO UPDATE SET calls = {table}_calls.calls + 1"
    ));
    for event_type in &catalog.group(&group).expect("group").subscribe {
        let pool = pool.clone();
        let group = group.clone();
        let statement = statement.clone();
        let count_call = count_call.clone();
        let (emit, emitted_data) = (emit.clone(), emitted_data.clone());
        consumer = consumer.handler(
            event_type,
            move |event: circulatory::consumer::Event, ctx: circulatory::consumer::Context| {
                let pool = pool.clone();
                let group = group.clone();
                let statement = statement.clone();
                let count_call = count_call.clone();
                let emit = emit.clone().zip(emitted_data.clone());
                async move {
                    tokio::time::sleep(pause).await;
                    let id = event.id().to_string();
                    sqlx::query(&count_call)
                        .bind(&id)
                        .execute(&pool)
                        .await
                        .map_err(|e| HandlerError::dependency("postgres", e))?;
                    if let Some((event_type, data)) = emit {
                        ctx.emit_json(&event_type, data.as_ref().clone());
                        return Ok(());
                    }
                    exactly_once(&pool, &group, &event, move |tx| {
                        Box::pin(async move {
                            sqlx::query(&statement)
                                .bind(id)
                                .execute(&mut *tx)
                                .await
                                .map_err(|e| HandlerError::dependency("postgres", e))?;
                            Ok(())
                        })
                    })
                    .await
                    .map(|_| ())
                }
            },
        );
    }
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal_stop.cancel();
    });
    eprintln!("ready");
    if let Err(e) = consumer.run(stop).await {
        eprintln!("consumer stopped: {e}");
        std::process::exit(1);
    }
}
