-- messenger group: direct messages and their receipts (message.sent, message.delivered,
-- message.read).

-- One row per message. status only moves forward: SENT < DELIVERED < READ. A read receipt
-- covers the message and the earlier unread ones from the same sender in the conversation.
CREATE TABLE messages (
    id                    UUID        PRIMARY KEY,
    conversation_id       UUID        NOT NULL,
    sender_id             UUID        NOT NULL,
    recipient_id          UUID        NOT NULL,
    body                  TEXT        NOT NULL,
    reply_to_message_id   UUID,
    status                TEXT        NOT NULL CHECK (status IN ('SENT', 'DELIVERED', 'READ')),
    sent_at               TIMESTAMPTZ NOT NULL,
    delivered_at          TIMESTAMPTZ,
    read_at               TIMESTAMPTZ,
    -- Presence of the recipient when the message was stored: offline means a notification was
    -- emitted (kept so a redelivery makes the same decision).
    recipient_was_offline BOOLEAN     NOT NULL,
    event_id              TEXT        NOT NULL,  -- the message.sent event that stored it
    recorded_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_conversation ON messages (conversation_id, sent_at, id);
CREATE INDEX messages_unread ON messages (recipient_id, conversation_id) WHERE status <> 'READ';
