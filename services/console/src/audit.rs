//! Every operator action is published as an `admin.action` event (who, what, on what, with which
//! filter and count); the audit-log group keeps the trail. The event is published after the
//! action, with its outcome: an action whose audit event could not be written says so in its
//! answer (`audited: false`) and in the log.

use std::collections::BTreeMap;

use circulatory::publisher::EventDraft;
use serde_json::json;

use crate::auth::Principal;
use crate::state::AppState;

/// What an action did, for the trail.
#[derive(Debug, Clone)]
pub struct Action<'a> {
    /// `DLQ_REPLAY`, `DLQ_DISCARD`, `CONFIG_CHANGE`, `OTHER` (the schema's symbols).
    pub kind: &'static str,
    /// `DEAD_LETTER`, `CONFIG`, `OTHER`.
    pub target_kind: &'static str,
    pub target_ref: String,
    pub reason: Option<&'a str>,
    pub details: BTreeMap<String, String>,
}

/// The admin id the schema wants (a uuid): the subject itself when it is one, else a uuid
/// derived from it (v5), so one admin always maps to one id. The subject is kept in `details`.
pub fn admin_id(sub: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(sub)
        .unwrap_or_else(|_| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, sub.as_bytes()))
}

/// Publishes the action; returns whether it was written.
pub async fn record(state: &AppState, who: &Principal, action: Action<'_>) -> bool {
    let mut details = action.details;
    details.insert("actor".into(), who.sub().to_string());
    details.insert("role".into(), format!("{:?}", who.role()).to_lowercase());
    details.insert("via".into(), "console".into());
    let now = chrono::Utc::now();
    let draft = EventDraft {
        event_type: "admin.action".into(),
        data: json!({
            "actionId": uuid::Uuid::now_v7().to_string(),
            "adminId": admin_id(who.sub()).to_string(),
            "action": action.kind,
            "targetKind": action.target_kind,
            "targetRef": action.target_ref,
            "reason": action.reason,
            "details": details,
            "performedAt": now.timestamp_millis(),
        }),
        ..EventDraft::default()
    };
    let published = match state.publisher.validate(draft) {
        Ok(event) => state
            .publisher
            .publish(event)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match published {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%error, actor = who.sub(), action = action.kind, "audit event not written");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_admin_maps_to_one_stable_uuid() {
        let id = "0b9f3c52-7d0e-4f1c-9a43-1f7a2b6c8d90";
        assert_eq!(admin_id(id).to_string(), id);
        assert_eq!(admin_id("alice"), admin_id("alice"));
        assert_ne!(admin_id("alice"), admin_id("bob"));
    }
}
