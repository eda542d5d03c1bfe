//! `GET events` and `GET realtime`: the seed's event-flow and channel views.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use crate::auth::Viewer;
use crate::cluster::view::{ChannelView, EventView};
use crate::state::AppState;

/// Per event type: published (by the ingest and by groups that emit it), processed, failed,
/// avgDuration (ms), successRate (percent).
#[utoipa::path(get, path = "/admin/circulatory/events", tag = "events",
    responses((status = 200, description = "Keyed by event type", body = BTreeMap<String, EventView>)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Viewer(_): Viewer,
) -> Json<BTreeMap<String, EventView>> {
    let view = state.collector.current();
    Json(
        view.events
            .iter()
            .map(|e| (e.event_type.clone(), e.clone()))
            .collect(),
    )
}

/// The realtime view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Realtime {
    /// Keyed by channel template.
    pub channels: BTreeMap<String, ChannelView>,
}

/// Per channel template: subscribers, messages, avgLatency (ms), dropped.
#[utoipa::path(get, path = "/admin/circulatory/realtime", tag = "realtime",
    responses((status = 200, description = "Per channel template", body = Realtime)),
    security(("bearer" = [])))]
pub async fn realtime(State(state): State<AppState>, Viewer(_): Viewer) -> Json<Realtime> {
    let view = state.collector.current();
    Json(Realtime {
        channels: view
            .channels
            .iter()
            .map(|c| (c.channel.clone(), c.clone()))
            .collect(),
    })
}
