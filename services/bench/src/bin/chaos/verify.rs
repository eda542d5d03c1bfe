//! One fault run's row: the ingest's answers against the topics, the groups' effects, and the
//! recovery the fault calls for.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Map, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::marks::{round3, Marks};
use crate::outcome::{self, Outcome};
use crate::readback::{self, Readback};
use crate::tally::Tally;
use crate::{effects, offsets, Env};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The fault's name (the row's label).
    #[arg(long)]
    fault: String,
    /// What "time to recover" measures: `ingest` (fault → the last impaired request answered),
    /// `group:<name>` (its restart → its first event processed), `postgres` (PostgreSQL back →
    /// every group processing again).
    #[arg(long, default_value = "ingest")]
    recovery: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory"
    )]
    database_url: String,
    /// An acknowledgement slower than this (ms) counts as impaired.
    #[arg(long, default_value_t = 1000.0)]
    slow_ms: f64,
    /// How long to wait for the groups to apply every event the topics hold.
    #[arg(long, default_value_t = 120)]
    settle_secs: u64,
    /// Bound of one read-back.
    #[arg(long, default_value_t = 120)]
    read_secs: u64,
}

/// A group checked by the run, and its events the topics hold.
struct GroupEvents {
    name: String,
    events: Vec<(String, String)>,
}

pub(crate) async fn run(env: &Env, args: &VerifyArgs) -> Result<Value, String> {
    let outcomes = outcome::read_all(&env.dir.join("outcomes.jsonl"))?;
    let marks = Marks::load(&env.dir.join("marks"))?;
    let topics = ingest_topics(env, &outcomes)?;
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&args.database_url)
        .await
        .map_err(|e| format!("postgres: {e}"))?;
    let first = read_back(env, args).await?;
    let groups = group_events(env, &outcomes, &first, &topics);
    let settled_s = settle(&pool, &groups, Duration::from_secs(args.settle_secs)).await?;
    let readback = read_back(env, args).await?;
    let groups = group_events(env, &outcomes, &readback, &topics);

    let started = outcomes.first().map_or(0.0, |o| o.sent_ms);
    let stopped = outcomes.iter().map(|o| o.sent_ms).fold(started, f64::max);
    let tally = Tally {
        outcomes: &outcomes,
        readback: &readback,
        topics: &topics,
        fault_ms: marks.at("fault"),
        slow_ms: args.slow_ms,
    };
    let mut row = json!({
        "fault": args.fault,
        "recovery_kind": args.recovery,
        "load_s": round3((stopped - started) / 1000.0),
        "timeline": marks.timeline(started),
        "settled_s": settled_s,
        "readback": {"records": readback.records, "without_ce_id": readback.without_id},
    });
    let fields = row.as_object_mut().expect("an object");
    if let Value::Object(tally) = tally.row() {
        fields.extend(tally);
    }
    let mut checked = Map::new();
    for group in &groups {
        let doc = group_row(env, &pool, group, &readback, &marks, stopped).await?;
        checked.insert(group.name.clone(), doc);
    }
    fields.insert("recover_s".into(), headline(args, fields, &checked));
    fields.insert("groups".into(), Value::Object(checked));
    let text = serde_json::to_string_pretty(&row).map_err(|e| e.to_string())?;
    std::fs::write(env.dir.join("row.json"), text).map_err(|e| e.to_string())?;
    Ok(row)
}

/// The topics of the types the run sent.
fn ingest_topics(env: &Env, outcomes: &[Outcome]) -> Result<HashSet<String>, String> {
    let types: HashSet<&str> = outcomes.iter().map(|o| o.event_type.as_str()).collect();
    types.into_iter().map(|t| env.topic_of(t)).collect()
}

async fn read_back(env: &Env, args: &VerifyArgs) -> Result<Readback, String> {
    let start = offsets::load(&env.dir.join("start-offsets.json"))?;
    let bootstrap = env.bootstrap.clone();
    let timeout = Duration::from_secs(args.read_secs);
    tokio::task::spawn_blocking(move || readback::read(&bootstrap, &start, timeout))
        .await
        .map_err(|e| e.to_string())?
}

/// For each checked group: the run's events of the types it subscribes to that the topics hold.
fn group_events(
    env: &Env,
    outcomes: &[Outcome],
    readback: &Readback,
    topics: &HashSet<String>,
) -> Vec<GroupEvents> {
    let in_topics = |o: &Outcome| topics.iter().any(|t| readback.copies_in(&o.id, t) > 0);
    env.groups
        .iter()
        .filter_map(|name| {
            let subscribe = &env.catalog.group(name)?.subscribe;
            let events: Vec<(String, String)> = outcomes
                .iter()
                .filter(|o| subscribe.contains(&o.event_type) && in_topics(o))
                .map(|o| (o.id.clone(), o.entity.clone()))
                .collect();
            Some(GroupEvents {
                name: name.clone(),
                events,
            })
        })
        .collect()
}

/// Waits until every group processed all its events, or nothing moved for `STALL`, or `limit`
/// passed (dead-lettered events are never processed); seconds waited.
async fn settle(pool: &PgPool, groups: &[GroupEvents], limit: Duration) -> Result<f64, String> {
    const STALL: Duration = Duration::from_secs(20);
    let start = Instant::now();
    let (mut last, mut moved) = (-1i64, Instant::now());
    loop {
        let (mut done, mut total) = (true, 0);
        for group in groups {
            let processed = effects::processed(pool, &group.name, &group.events).await?;
            done &= processed >= group.events.len() as i64;
            total += processed;
        }
        if total != last {
            (last, moved) = (total, Instant::now());
        }
        if done || start.elapsed() > limit || moved.elapsed() > STALL {
            return Ok(round3(start.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn group_row(
    env: &Env,
    pool: &PgPool,
    group: &GroupEvents,
    readback: &Readback,
    marks: &Marks,
    stopped_ms: f64,
) -> Result<Value, String> {
    let processed = effects::processed(pool, &group.name, &group.events).await?;
    let expected = group.events.len() as i64;
    let mut doc = json!({
        "events": expected,
        "processed_once": processed,
        "dead_lettered": dead_lettered(env, group, readback),
    });
    let fields = doc.as_object_mut().expect("an object");
    let own = match group.name.as_str() {
        "user-lifecycle" => effects::user_rows(pool, &group.events).await?,
        "payments" => effects::ledger(pool, &group.events).await?,
        _ => json!({}),
    };
    let rows_ok = own.get("user_profiles").is_none_or(|r| r == expected)
        && own.get("payments_decided").is_none_or(|r| r == expected)
        && own.get("ledger_balanced").is_none_or(|b| b == true);
    if let Value::Object(own) = own {
        fields.extend(own);
    }
    fields.insert(
        "applied_once".into(),
        json!(processed == expected && rows_ok),
    );
    for mark in ["restart", "back"] {
        if let Some(at) = marks.at(mark) {
            let resumed = effects::resumed_after(pool, &group.name, at).await?;
            fields.insert(format!("resumed_after_{mark}_s"), json!(resumed));
        }
    }
    if let Some(fault) = marks.at("fault") {
        let pause = effects::longest_pause(pool, &group.name, fault - 1000.0, stopped_ms).await?;
        fields.insert("longest_pause_s".into(), json!(pause));
    }
    Ok(doc)
}

/// The group's events that reached its dead-letter topic.
fn dead_lettered(env: &Env, group: &GroupEvents, readback: &Readback) -> usize {
    let Some(topic) = env.dead_letter_topic(&group.name) else {
        return 0;
    };
    group
        .events
        .iter()
        .filter(|(id, _)| readback.copies_in(id, &topic) > 0)
        .count()
}

/// The row's "time to recover", as `--recovery` defines it.
fn headline(args: &VerifyArgs, fields: &Map<String, Value>, groups: &Map<String, Value>) -> Value {
    let of = |group: &str, key: &str| groups.get(group).and_then(|g| g.get(key)).cloned();
    match args.recovery.split_once(':') {
        Some(("group", name)) => of(name, "resumed_after_restart_s").unwrap_or(Value::Null),
        // Every group processing again; null when one did not.
        _ if args.recovery == "postgres" => groups
            .keys()
            .map(|g| of(g, "resumed_after_back_s").and_then(|v| v.as_f64()))
            .collect::<Option<Vec<f64>>>()
            .and_then(|all| all.into_iter().reduce(f64::max))
            .map_or(Value::Null, |v| json!(v)),
        _ => fields
            .get("ingest_recover_s")
            .cloned()
            .unwrap_or(Value::Null),
    }
}
