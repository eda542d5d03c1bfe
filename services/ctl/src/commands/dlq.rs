//! `circ dlq list|show|replay|discard`.

use std::process::ExitCode;
use std::time::Duration;

use circulatory::catalog::Catalog;
use circulatory::consumer::dead_letters::{self, DeadLetter, Selection};
use circulatory::kafka::{self, ProducerSettings};
use rdkafka::message::Message;
use serde_json::json;

use super::{kafka_config, print_json, registry, timeout, Failure, Outcome};
use crate::cli::{DlqAction, DlqFilter, DlqScope, Global};

fn parse_time(flag: &str, value: &Option<String>) -> Result<Option<i64>, Failure> {
    value
        .as_deref()
        .map(|text| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.timestamp_millis())
                .map_err(|_| Failure::Usage(format!("--{flag} must be an RFC 3339 time")))
        })
        .transpose()
}

fn selection(filter: &DlqFilter, include_resolved: bool) -> Result<Selection, Failure> {
    Ok(Selection {
        event_type: filter.event_type.clone(),
        ids: filter.ids.clone(),
        since_ms: parse_time("since", &filter.since)?,
        until_ms: parse_time("until", &filter.until)?,
        include_resolved,
    })
}

fn is_unfiltered(filter: &DlqFilter) -> bool {
    filter.event_type.is_none()
        && filter.ids.is_empty()
        && filter.since.is_none()
        && filter.until.is_none()
}

struct Loaded {
    topic: String,
    letters: Vec<DeadLetter>,
    pool: sqlx::PgPool,
}

async fn load(global: &Global, catalog: &Catalog, scope: &DlqScope) -> Result<Loaded, Failure> {
    let group = catalog
        .group(&scope.group)
        .ok_or_else(|| Failure::Usage(format!("no group `{}` in the topology", scope.group)))?;
    let topic = catalog.topic_name(&group.dead_letter_topic_base());
    let mut letters = dead_letters::read_all(&kafka_config(global), &topic, timeout(global))
        .await
        .map_err(|e| Failure::Unavailable(e.into()))?;
    let pool = circulatory::db::connect(&scope.database_url, 2)
        .await
        .map_err(|e| Failure::Unavailable(e.into()))?;
    dead_letters::load_resolutions(&pool, &topic, &mut letters).await?;
    Ok(Loaded {
        topic,
        letters,
        pool,
    })
}

/// The open dead letters an action applies to; an action needs an explicit selection.
async fn load_open(
    global: &Global,
    catalog: &Catalog,
    scope: &DlqScope,
    filter: &DlqFilter,
    all_open: bool,
) -> Result<Loaded, Failure> {
    if is_unfiltered(filter) && !all_open {
        return Err(Failure::Usage(
            "give a filter (--type, --id, --since, --until) or --all-open".into(),
        ));
    }
    let mut loaded = load(global, catalog, scope).await?;
    let selection = selection(filter, false)?;
    loaded.letters.retain(|l| selection.matches(l));
    Ok(loaded)
}

fn summary(letter: &DeadLetter) -> serde_json::Value {
    json!({
        "id": letter.id,
        "eventId": letter.event_id,
        "type": letter.event_type,
        "reason": letter.reason,
        "errorClass": letter.error_class,
        "error": letter.error_message,
        "attempts": letter.attempt,
        "deadLetteredAt": letter.dead_lettered_at_ms.and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.to_rfc3339()),
        "origin": letter.origin.as_ref().map(|o| json!({"topic": o.topic, "partition": o.partition, "offset": o.offset})),
        "resolution": letter.resolution,
    })
}

fn actor() -> String {
    std::env::var("USER").unwrap_or_else(|_| "circ".into())
}

pub(crate) async fn run(global: &Global, catalog: &Catalog, action: DlqAction) -> Outcome {
    match action {
        DlqAction::List {
            scope,
            filter,
            all,
            json,
        } => {
            let loaded = load(global, catalog, &scope).await?;
            let selection = selection(&filter, all)?;
            let chosen: Vec<&DeadLetter> = loaded
                .letters
                .iter()
                .filter(|l| selection.matches(l))
                .collect();
            if json {
                for letter in &chosen {
                    print_json(&summary(letter))?;
                }
            } else {
                println!(
                    "{:<10} {:<26} {:<10} {:<9} ERROR",
                    "ID", "TYPE", "REASON", "ATTEMPTS"
                );
                for letter in &chosen {
                    println!(
                        "{:<10} {:<26} {:<10} {:<9} {}",
                        letter.id,
                        letter.event_type.as_deref().unwrap_or("?"),
                        letter.reason.as_deref().unwrap_or("?"),
                        letter.attempt,
                        letter.error_message.as_deref().unwrap_or("")
                    );
                }
                println!("{} dead letter(s) in {}", chosen.len(), loaded.topic);
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Show { scope, id } => {
            let loaded = load(global, catalog, &scope).await?;
            let selection = Selection {
                ids: vec![id.clone()],
                include_resolved: true,
                ..Selection::default()
            };
            let letter = loaded
                .letters
                .iter()
                .find(|l| selection.matches(l))
                .ok_or_else(|| {
                    Failure::Usage(format!("no dead letter `{id}` in {}", loaded.topic))
                })?;
            let mut out = summary(letter);
            let headers: serde_json::Map<String, serde_json::Value> = letter
                .record
                .headers()
                .map(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                json!(h.value.map(|v| String::from_utf8_lossy(v).into_owned())),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out["headers"] = json!(headers);
            out["key"] = json!(letter
                .record
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()));
            out["data"] = match letter.record.payload() {
                Some(payload) => match registry(global)?.decode_json(payload).await {
                    Ok(decoded) => decoded.data,
                    Err(e) => json!({"undecodable": e.to_string()}),
                },
                None => serde_json::Value::Null,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Replay {
            scope,
            filter,
            all_open,
            rate,
            dry_run,
        } => {
            let loaded = load_open(global, catalog, &scope, &filter, all_open).await?;
            let chosen = loaded.letters.as_slice();
            let group = catalog.group(&scope.group).expect("checked in load");
            let replay_topic = catalog.topic_name(&group.replay_topic_base());
            if dry_run {
                for letter in chosen {
                    println!(
                        "would replay {} ({})",
                        letter.id,
                        letter.event_type.as_deref().unwrap_or("?")
                    );
                }
                println!(
                    "{} dead letter(s) would be replayed to {replay_topic}",
                    chosen.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let producer = kafka::producer(&kafka_config(global), &ProducerSettings::default())
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let pace = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut ticker = tokio::time::interval(pace);
            for letter in chosen {
                ticker.tick().await;
                dead_letters::replay(&producer, &replay_topic, letter)
                    .await
                    .map_err(|e| Failure::Unavailable(e.into()))?;
                dead_letters::resolve(&loaded.pool, &loaded.topic, letter, "replayed", &actor())
                    .await?;
                println!(
                    "replayed {} ({})",
                    letter.id,
                    letter.event_type.as_deref().unwrap_or("?")
                );
            }
            println!("{} dead letter(s) replayed to {replay_topic}", chosen.len());
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Discard {
            scope,
            filter,
            all_open,
        } => {
            let loaded = load_open(global, catalog, &scope, &filter, all_open).await?;
            let chosen = loaded.letters.as_slice();
            for letter in chosen {
                dead_letters::resolve(&loaded.pool, &loaded.topic, letter, "discarded", &actor())
                    .await?;
                println!("discarded {}", letter.id);
            }
            println!("{} dead letter(s) discarded", chosen.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
