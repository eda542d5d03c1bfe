-- vector-update group: users' preference vectors (one per user and embedding model), views of
-- videos that had no embedding yet, and the recommendation lists served to users.
CREATE TABLE user_vectors (
    user_id       TEXT        NOT NULL,
    model         TEXT        NOT NULL,
    dimensions    INTEGER     NOT NULL CHECK (dimensions > 0),
    vector        REAL[]      NOT NULL CHECK (cardinality(vector) = dimensions),
    -- Signals folded into the vector so far.
    signals       BIGINT      NOT NULL DEFAULT 0,
    -- The event of the latest change: its user.vector.update is emitted again if it is redelivered.
    last_event_id TEXT        NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, model)
);

-- Views (and interest signals) about a video that had no embedding when they were handled: they
-- did not move any vector. Tells which videos most need an embedding.
CREATE TABLE unembedded_video_views (
    video_id       TEXT        PRIMARY KEY,
    views          BIGINT      NOT NULL DEFAULT 0,
    last_viewed_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE recommendations_served (
    recommendation_id TEXT        PRIMARY KEY,
    event_id          TEXT        NOT NULL UNIQUE,
    user_id           TEXT        NOT NULL,
    surface           TEXT        NOT NULL,
    model             TEXT        NOT NULL,
    -- [{videoId, rank, score}] in rank order.
    items             JSONB       NOT NULL,
    item_count        INTEGER     NOT NULL,
    served_at         TIMESTAMPTZ NOT NULL,
    recorded_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX recommendations_served_user ON recommendations_served (user_id, served_at);
