//! `realtime-bridge`: publishes each event it reads on the Redis pub/sub channels that
//! `topics.yaml` routes its type to (`realtime.routes`), as `{"type", "id", "correlationId"?,
//! "time", "data"}`: `id` is the event's CloudEvents id and `correlationId` its correlation id
//! (the engine gives a broadcast relaying its causing event that event's ids, see
//! [`circulatory::realtime::broadcast_ids`]), so a client can relate a message to its event and
//! drop a duplicate. Nothing here names a type or a channel: the handlers and the channels come
//! from the catalog.
//!
//! Pub/sub is best effort, but a redelivered event (a rebalance, a replay) is not published
//! twice: a Redis `SET NX` marker per event id, kept for [`SENT_MARKER_TTL_SECS`], claims the
//! broadcast before it is requested. Broadcasts are sent by the engine once the handler succeeded.

use circulatory::consumer::{ConsumerGroup, Context, Event, HandlerError};
use circulatory::realtime::channels_for;
use circulatory_group_common::runner::Registered;

use circulatory_group_common::deps::Deps;
use circulatory_group_common::effects::redis_error;
use circulatory_group_common::runner::NoOptions;

pub const GROUP: &str = "realtime-bridge";

/// How long an event id is remembered as already published.
pub const SENT_MARKER_TTL_SECS: u64 = 600;

/// One handler per subscribed type (the group's subscriptions in the catalog).
pub fn register(consumer: ConsumerGroup, deps: &Deps, _: NoOptions) -> Registered {
    let subscribed = deps
        .catalog
        .group(GROUP)
        .map(|g| g.subscribe.clone())
        .unwrap_or_default();
    Ok(subscribed.iter().fold(consumer, |consumer, event_type| {
        consumer.handler_with(event_type, deps.clone(), |deps, e, ctx| async move {
            bridge(&deps, e, ctx).await
        })
    }))
}

/// The Redis key marking an event as published.
pub fn sent_marker(deps: &Deps, event_id: &str) -> String {
    deps.redis_key(&format!("{GROUP}:sent:{event_id}"))
}

async fn bridge(deps: &Deps, event: Event, ctx: Context) -> Result<(), HandlerError> {
    let Some(event_type) = deps.catalog.event(event.event_type()) else {
        return Err(HandlerError::permanent(format!(
            "`{}` is not in the catalog",
            event.event_type()
        )));
    };
    let channels = channels_for(deps.catalog.topology(), event_type, &event.data);
    let skipped = event_type.channels.len().saturating_sub(channels.len());
    if skipped > 0 {
        tracing::debug!(
            group = GROUP,
            event_id = event.id(),
            event_type = event.event_type(),
            skipped,
            "route parameter missing: nothing published on those routes"
        );
    }
    if channels.is_empty() {
        return Ok(());
    }
    let mut redis = deps.redis.clone();
    let claimed: Option<String> = redis::cmd("SET")
        .arg(sent_marker(deps, event.id()))
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(SENT_MARKER_TTL_SECS)
        .query_async(&mut redis)
        .await
        .map_err(redis_error)?;
    if claimed.is_none() {
        tracing::debug!(
            group = GROUP,
            event_id = event.id(),
            "already published: not publishing again"
        );
        return Ok(());
    }
    for channel in channels {
        ctx.broadcast(channel, event.event_type(), event.data.clone());
    }
    Ok(())
}
