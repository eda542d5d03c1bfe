//! Runs a handler in-process, with no broker (feature `testing`): build an [`Event`] as a
//! delivery would, hand it to the handler with a fresh [`Context`], and read back what the call
//! asked for. For a group's pure logic (an event in; events emitted and broadcasts out); effects
//! on PostgreSQL or Redis are tested against the stack.

use std::sync::Arc;

use chrono::Utc;
use circulatory_events::EventPayload;
use serde_json::Value;

use crate::cloudevents::EventMetadata;
use crate::consumer::handler::{Broadcast, Context, Event, Handler, HandlerError};
use crate::consumer::retry::Origin;
use crate::publisher::EventDraft;

/// `event_type` with `data`, as a first delivery from offset 0 of its topic: a fresh id, now as
/// its time, no key. Change its fields for anything else (a retry is `attempt: 2`).
pub fn event(event_type: &str, data: Value) -> Event {
    let topic = format!("tests.{event_type}");
    Event {
        metadata: EventMetadata {
            id: uuid::Uuid::new_v4().to_string(),
            source: "/tests".into(),
            event_type: event_type.into(),
            time: Utc::now(),
            subject: None,
            traceparent: None,
            tracestate: None,
            correlation_id: None,
            request_id: None,
        },
        data,
        key: None,
        topic: topic.clone(),
        partition: 0,
        offset: 0,
        origin: Origin {
            topic,
            partition: 0,
            offset: 0,
            timestamp: None,
        },
        attempt: 1,
    }
}

/// `data` as a first delivery of its event type, like [`event`].
pub fn event_of<T: EventPayload>(data: T) -> Event {
    let json = serde_json::to_value(&data).expect("a generated payload is JSON");
    event(T::EVENT_TYPE, json)
}

/// What one handler call did. The runtime sends `emitted` and `broadcasts` only when `result`
/// is `Ok`; here they are returned either way, for the test to check.
#[derive(Debug)]
pub struct Handled {
    pub result: Result<(), HandlerError>,
    /// Emitted events with the ids the runtime would give them.
    pub emitted: Vec<EventDraft>,
    pub broadcasts: Vec<Broadcast>,
}

impl Handled {
    /// The data of every emitted event of `event_type`, in emission order.
    pub fn emitted_data(&self, event_type: &str) -> Vec<&Value> {
        self.emitted
            .iter()
            .filter(|e| e.event_type == event_type)
            .map(|e| &e.data)
            .collect()
    }

    /// Every emitted event of `T`'s type, read as `T`, in emission order. Panics on data that
    /// `T` cannot read: the runtime would refuse to send it.
    pub fn emitted<T: EventPayload>(&self) -> Vec<T> {
        self.emitted_data(T::EVENT_TYPE)
            .into_iter()
            .map(|data| {
                T::deserialize(data)
                    .unwrap_or_else(|e| panic!("emitted {} unreadable: {e}", T::EVENT_TYPE))
            })
            .collect()
    }
}

/// Runs `handler` on `event` as a member of `group` would (the same emitted ids, the same
/// source), and returns its outcome and effects.
pub async fn handle(group: &str, handler: &impl Handler, event: Event) -> Handled {
    let ctx = Context::new(
        Arc::from(group),
        Arc::from(format!("/circulatory/{group}")),
        event.metadata.clone(),
    );
    let result = handler.handle(event, ctx.clone()).await;
    let (emitted, broadcasts) = ctx.take_effects();
    Handled {
        result,
        emitted,
        broadcasts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::events::{LikeAdded, PostCreated, PostMediaType, PostVisibility};

    fn post(hashtags: usize) -> PostCreated {
        PostCreated {
            post_id: uuid::Uuid::from_u128(1),
            author_id: uuid::Uuid::from_u128(2),
            text: String::new(),
            hashtags: (0..hashtags).map(|i| format!("tag{i}")).collect(),
            mentions: vec![],
            media_type: PostMediaType::Text,
            video_id: None,
            visibility: PostVisibility::Public,
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn effects_come_back_with_the_runtime_s_ids_and_the_outcome() {
        let handler = |event: Event, ctx: Context| async move {
            let post: PostCreated = event.payload()?;
            for i in 0..post.hashtags.len() {
                ctx.emit(LikeAdded {
                    post_id: post.post_id,
                    user_id: uuid::Uuid::from_u128(10 + i as u128),
                    post_author_id: post.author_id,
                    liked_at: post.created_at,
                });
            }
            ctx.broadcast("post:likes:p1", "like.added", serde_json::json!({}));
            if post.hashtags.len() > 2 {
                Err(HandlerError::permanent("too many"))
            } else {
                Ok(())
            }
        };
        let event = event_of(post(2));
        let id = event.id().to_string();
        let handled = handle("feed-fanout", &handler, event.clone()).await;
        assert_eq!(handled.result, Ok(()));
        let likes: Vec<LikeAdded> = handled.emitted();
        assert_eq!(likes.len(), 2);
        assert_eq!(likes[1].user_id, uuid::Uuid::from_u128(11));
        assert_eq!(handled.broadcasts.len(), 1);
        let again = handle("feed-fanout", &handler, event).await;
        assert_eq!(
            handled.emitted[0].id, again.emitted[0].id,
            "a redelivery emits the same ids"
        );
        assert_eq!(
            handled.emitted[0].source.as_deref(),
            Some("/circulatory/feed-fanout")
        );
        assert_ne!(handled.emitted[0].id.as_deref(), Some(id.as_str()));
        let failed = handle("feed-fanout", &handler, event_of(post(3))).await;
        assert!(matches!(failed.result, Err(HandlerError::Permanent(_))));
    }
}
