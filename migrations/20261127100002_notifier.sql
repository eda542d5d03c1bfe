-- notifier group: the in-app notification inbox and the outbox of push and email deliveries.

-- One row per notification (notification.created), the inbox behind
-- GET /v1/users/{id}/notifications:
--   id                 notificationId of the event (derived notifications use deterministic ids,
--                      so a redelivered cause stores nothing twice)
--   user_id            recipient
--   kind               FOLLOW | LIKE | COMMENT | MENTION | SHARE | MESSAGE | PAYMENT |
--                      VIDEO_PROCESSING | VIDEO_PUBLISHED | MODERATION | SYSTEM | OTHER
--   title, body        text shown to the user
--   actor_id           user whose action caused it, if any
--   entity_id          post, comment, video, payment, conversation ... it links to, if any
--   channels           channels the notification asked for (IN_APP, PUSH, EMAIL)
--   delivered_channels channels it went out on after the recipient's settings
--   created_at         when it was created (event time)
--   read_at            when the recipient read it (notification.read); NULL while unread
--   event_id           id of the notification.created event that stored it
--   recorded_at        when this row was written
-- Listing: WHERE user_id = $1 ORDER BY created_at DESC, id DESC (keyset pagination on both).
CREATE TABLE notifications (
    id                 UUID        PRIMARY KEY,
    user_id            UUID        NOT NULL,
    kind               TEXT        NOT NULL,
    title              TEXT        NOT NULL,
    body               TEXT        NOT NULL,
    actor_id           UUID,
    entity_id          UUID,
    channels           TEXT[]      NOT NULL,
    delivered_channels TEXT[]      NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL,
    read_at            TIMESTAMPTZ,
    event_id           TEXT        NOT NULL,
    recorded_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX notifications_by_user ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

-- Deliveries handed to the outbox adapter, one per notification and channel: a relay sends them
-- to the push or email provider and sets dispatched_at. payload is the notification as JSON
-- (notificationId, userId, channel, kind, title, body, actorId, entityId).
CREATE TABLE notification_outbox (
    id              BIGSERIAL   PRIMARY KEY,
    notification_id UUID        NOT NULL,
    channel         TEXT        NOT NULL CHECK (channel IN ('IN_APP', 'PUSH', 'EMAIL')),
    user_id         UUID        NOT NULL,
    payload         JSONB       NOT NULL,
    enqueued_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    dispatched_at   TIMESTAMPTZ,
    UNIQUE (notification_id, channel)
);
CREATE INDEX notification_outbox_pending ON notification_outbox (id) WHERE dispatched_at IS NULL;
