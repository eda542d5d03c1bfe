//! Settling a request's idempotency claims once its events are produced: a claim whose events
//! were all acknowledged stores their answers for the window; a claim with a failed event is
//! released, so the client's retry produces again; a claim with an event still unconfirmed at
//! the ack timeout is settled in the background, when the producer reports the outcome.
//!
//! That last case is what makes "retry with the same id" safe after a `kafka_unconfirmed` 503:
//! while the first attempt can still land, the claim stays `pending` (a retry waits for it, then
//! gets 409 with Retry-After); once delivered, a retry gets the first attempt's answer; once
//! failed, a retry produces the event anew. Only one case can write an event twice: the
//! producer gives up on a record that was in flight (the cluster unreachable for the whole
//! delivery timeout), which may or may not have been written — counted as `in_doubt`.

use std::collections::HashMap;

use circulatory::publisher::Unconfirmed;

use crate::events::EventResult;
use crate::idempotency::Ticket;
use crate::state::AppState;

/// A claimed idempotency key and the events of the request it covers.
pub struct Claimed {
    pub ticket: Ticket,
    /// Indexes into the request's events.
    pub events: Vec<usize>,
    /// The key is the request's `Idempotency-Key` (the answer is the whole batch's).
    pub whole_request: bool,
}

/// Settles every claim: now for those whose events all settled, in the background for those
/// with `unconfirmed` events. Unconfirmed events outside any claim are followed for the metrics.
pub async fn settle_claims(
    state: &AppState,
    claims: Vec<Claimed>,
    results: &[Option<EventResult>],
    mut unconfirmed: HashMap<usize, Unconfirmed>,
    is_batch: bool,
) {
    for claim in claims {
        let batch_answer = claim.whole_request && is_batch;
        let pending: Vec<(usize, Unconfirmed)> = claim
            .events
            .iter()
            .filter_map(|i| unconfirmed.remove(i).map(|p| (*i, p)))
            .collect();
        if pending.is_empty() {
            let answers: Option<Vec<EventResult>> =
                claim.events.iter().map(|i| results[*i].clone()).collect();
            store(state, &claim.ticket, answers, batch_answer).await;
            continue;
        }
        let known: Vec<(usize, Option<EventResult>)> = claim
            .events
            .iter()
            .map(|i| (*i, results[*i].clone()))
            .collect();
        let state = state.clone();
        tokio::spawn(async move {
            let answers = settle_later(&state, known, pending).await;
            store(&state, &claim.ticket, answers, batch_answer).await;
        });
    }
    for (_, pending) in unconfirmed {
        let state = state.clone();
        tokio::spawn(async move {
            let _ = follow(&state, pending).await;
        });
    }
}

/// Waits for the producer's reports; the claim's answers if every event was delivered.
async fn settle_later(
    state: &AppState,
    known: Vec<(usize, Option<EventResult>)>,
    pending: Vec<(usize, Unconfirmed)>,
) -> Option<Vec<EventResult>> {
    let mut settled = HashMap::new();
    for (index, unconfirmed) in pending {
        settled.insert(index, follow(state, unconfirmed).await);
    }
    known
        .into_iter()
        .map(|(index, answer)| match answer {
            Some(answer) => Some(answer),
            None => settled.remove(&index).flatten(),
        })
        .collect()
}

/// One unconfirmed event's outcome, counted and logged.
async fn follow(state: &AppState, unconfirmed: Unconfirmed) -> Option<EventResult> {
    let id = unconfirmed.id().to_string();
    let outcome = unconfirmed.outcome().await;
    let label = match &outcome {
        Ok(_) => "delivered",
        Err(e) if e.possibly_written() => "in_doubt",
        Err(_) => "failed",
    };
    state
        .metrics
        .unconfirmed_outcomes
        .with_label_values(&[label])
        .inc();
    match outcome {
        Ok(delivered) => {
            tracing::info!(event_id = %id, "an unconfirmed event was delivered");
            // Written after all: it counts as published now.
            state.published.add(&delivered.event_type, 1);
            Some(EventResult::from(delivered))
        }
        Err(e) => {
            tracing::warn!(event_id = %id, error = %e, outcome = label, "an unconfirmed event failed");
            None
        }
    }
}

/// Stores the answers for the window, or releases the claim when an event has none.
async fn store(
    state: &AppState,
    ticket: &Ticket,
    answers: Option<Vec<EventResult>>,
    batch_answer: bool,
) {
    let answer = answers.and_then(|answers| {
        if batch_answer {
            serde_json::to_value(&answers).ok()
        } else {
            answers.first().and_then(|a| serde_json::to_value(a).ok())
        }
    });
    let stored = match answer {
        Some(answer) => state.idempotency.complete(ticket, &answer).await,
        None => state.idempotency.release(ticket).await,
    };
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not record an idempotency answer");
    }
}

/// Gives every claim up (the request failed before producing).
pub async fn release_all(state: &AppState, claims: &[Claimed]) {
    for claim in claims {
        if let Err(e) = state.idempotency.release(&claim.ticket).await {
            tracing::warn!(error = %e, "could not release an idempotency claim");
        }
    }
}
