//! Bulk actions by filter. A dry run answers how many open letters the filter covers, how many
//! the loop guard would quarantine, and a histogram of their errors; the real run must name the
//! count it expects (what the dry run said), so a selection that changed in between is refused
//! rather than acted on blindly. The run is a paced job (the replay rate), one at a time.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::actions;
use super::filter::{histogram, Filter, Histogram};
use super::index::Summary;
use super::jobs::Job;
use crate::audit::{self, Action};
use crate::auth::Principal;
use crate::problem::ApiError;
use crate::state::AppState;

/// A bulk request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    /// `retry` or `discard`.
    pub action: String,
    #[serde(default)]
    pub filter: Filter,
    /// Count only (default).
    #[serde(default = "yes")]
    pub dry_run: bool,
    /// Required to act: the count the dry run reported.
    pub expect_count: Option<u64>,
    pub reason: Option<String>,
}

fn yes() -> bool {
    true
}

/// A dry run's answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub action: String,
    pub count: u64,
    /// Letters the loop guard would quarantine instead of replaying (retry only).
    pub would_quarantine: u64,
    pub histogram: Histogram,
    /// At the configured replay rate.
    pub estimated_seconds: f64,
}

/// A started job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub job: Job,
}

fn selection(state: &AppState, filter: &Filter) -> Result<Vec<Summary>, ApiError> {
    let compiled = filter.compile()?.open_only();
    if let Some(g) = compiled.group() {
        if state.catalog.group(g).is_none() {
            return Err(ApiError::NotFound(format!(
                "no group `{g}` in the topology"
            )));
        }
    }
    Ok(state
        .dead_letters
        .select(compiled.group(), |s| compiled.matches(s)))
}

fn check_action(action: &str) -> Result<(), ApiError> {
    match action {
        "retry" | "discard" => Ok(()),
        other => Err(ApiError::BadRequest(format!(
            "`action` must be retry or discard, not `{other}`"
        ))),
    }
}

pub fn dry_run(state: &AppState, request: &BulkRequest) -> Result<DryRun, ApiError> {
    check_action(&request.action)?;
    let chosen = selection(state, &request.filter)?;
    let would_quarantine = if request.action == "retry" {
        chosen
            .iter()
            .filter(|s| s.replays >= state.limits.max_replays)
            .count() as u64
    } else {
        0
    };
    Ok(DryRun {
        action: request.action.clone(),
        count: chosen.len() as u64,
        would_quarantine,
        histogram: histogram(&chosen),
        estimated_seconds: chosen.len() as f64 / f64::from(state.limits.replay_rate.max(1)),
    })
}

/// Starts the job after checking the expected count.
pub fn start(state: &AppState, who: &Principal, request: BulkRequest) -> Result<Started, ApiError> {
    check_action(&request.action)?;
    let chosen = selection(state, &request.filter)?;
    let Some(expected) = request.expect_count else {
        return Err(ApiError::BadRequest(
            "run a dry run first and send its count as `expectCount`".into(),
        ));
    };
    if expected != chosen.len() as u64 {
        return Err(ApiError::Conflict(format!(
            "the selection changed: the dry run said {expected}, it now holds {}; run the dry run again",
            chosen.len()
        )));
    }
    if let Some(running) = state.jobs.running() {
        return Err(ApiError::Conflict(format!(
            "bulk job {} is still running",
            running.id
        )));
    }
    let job = Job {
        id: uuid::Uuid::now_v7().to_string(),
        action: request.action.clone(),
        group: request.filter.group.clone(),
        actor: who.sub().to_string(),
        total: chosen.len() as u64,
        started_at_ms: chrono::Utc::now().timestamp_millis(),
        ..Job::default()
    };
    state.jobs.start(job.clone());
    let (state2, who2, id) = (state.clone(), who.clone(), job.id.clone());
    tokio::spawn(async move { run(state2, who2, id, request, chosen).await });
    Ok(Started { job })
}

async fn run(
    state: AppState,
    who: Principal,
    id: String,
    request: BulkRequest,
    chosen: Vec<Summary>,
) {
    let pace = Duration::from_secs_f64(1.0 / f64::from(state.limits.replay_rate.max(1)));
    let mut ticker = tokio::time::interval(pace);
    for s in &chosen {
        ticker.tick().await;
        let outcome = match request.action.as_str() {
            "retry" => one_retry(&state, &who, s).await,
            _ => one_discard(&state, &who, s).await,
        };
        state.jobs.update(&id, |job| {
            job.done += 1;
            match outcome {
                Ok("replayed") => job.replayed += 1,
                Ok("quarantined") => job.quarantined += 1,
                Ok(_) => job.discarded += 1,
                Err(e) => {
                    job.failed += 1;
                    if job.errors.len() < 20 {
                        job.errors.push(format!("{}: {e}", s.id));
                    }
                }
            }
        });
    }
    let job = state.jobs.get(&id).unwrap_or_default();
    let mut details: BTreeMap<String, String> = BTreeMap::new();
    details.insert(
        "filter".into(),
        serde_json::to_string(&request.filter).unwrap_or_default(),
    );
    details.insert("count".into(), job.total.to_string());
    details.insert("replayed".into(), job.replayed.to_string());
    details.insert("discarded".into(), job.discarded.to_string());
    details.insert("quarantined".into(), job.quarantined.to_string());
    details.insert("failed".into(), job.failed.to_string());
    details.insert("jobId".into(), id.clone());
    let audited = audit::record(
        &state,
        &who,
        Action {
            kind: if request.action == "retry" {
                "DLQ_REPLAY"
            } else {
                "DLQ_DISCARD"
            },
            target_kind: "DEAD_LETTER",
            target_ref: request.filter.group.clone().unwrap_or_else(|| "*".into()),
            reason: request.reason.as_deref(),
            details,
        },
    )
    .await;
    state.jobs.update(&id, |job| {
        job.finished = true;
        job.finished_at_ms = Some(chrono::Utc::now().timestamp_millis());
        if !audited {
            job.errors
                .push("the audit event could not be written".into());
        }
    });
}

async fn one_retry(
    state: &AppState,
    who: &Principal,
    s: &Summary,
) -> Result<&'static str, ApiError> {
    let (_, letter, topic) = actions::open_letter(state, &s.group, &s.id).await?;
    if letter.is_looping(state.limits.max_replays) {
        actions::record_decision(state, &topic, &letter, "quarantined", who).await?;
        return Ok("quarantined");
    }
    let target = actions::replay_topic(state, &s.group)?;
    circulatory::consumer::dead_letters::replay(&state.producer, &target, &letter)
        .await
        .map_err(|e| ApiError::unavailable("kafka", e))?;
    actions::record_decision(state, &topic, &letter, "replayed", who).await?;
    Ok("replayed")
}

async fn one_discard(
    state: &AppState,
    who: &Principal,
    s: &Summary,
) -> Result<&'static str, ApiError> {
    let (_, letter, topic) = actions::open_letter(state, &s.group, &s.id).await?;
    actions::record_decision(state, &topic, &letter, "discarded", who).await?;
    Ok("discarded")
}
