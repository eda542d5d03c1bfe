-- event-tracking group: the raw analytics trail. One row per event (views, engagement, searches,
-- interest signals, likes, unlikes, shares), written once per event id and never changed; old rows
-- may be deleted by retention. Columns hold what queries filter on; `payload` keeps the event whole.
CREATE TABLE analytics_events (
    id           BIGSERIAL   PRIMARY KEY,
    event_id     TEXT        NOT NULL UNIQUE,
    event_type   TEXT        NOT NULL,
    -- The acting user (viewer, liker, searcher, ...); NULL for signed-out activity.
    user_id      TEXT,
    -- The entity acted on: kind (VIDEO, POST, COMMENT, CONTENT, OTHER, ...) and id; NULL id when
    -- there is none (a search).
    subject_kind TEXT        NOT NULL,
    subject_id   TEXT,
    -- Owner of the subject when the event names it (video or post author).
    author_id    TEXT,
    occurred_at  TIMESTAMPTZ NOT NULL,
    payload      JSONB       NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX analytics_events_type_time ON analytics_events (event_type, occurred_at);
CREATE INDEX analytics_events_subject ON analytics_events (subject_id, occurred_at);
CREATE INDEX analytics_events_user ON analytics_events (user_id, occurred_at)
    WHERE user_id IS NOT NULL;
CREATE INDEX analytics_events_occurred_at ON analytics_events USING BRIN (occurred_at);

-- Append-only: rows are never changed (retention may delete them).
CREATE FUNCTION analytics_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'analytics_events is append-only';
END;
$$;
CREATE TRIGGER analytics_events_no_update BEFORE UPDATE ON analytics_events
    FOR EACH ROW EXECUTE FUNCTION analytics_events_append_only();
