-- vector-embedding group: video embeddings (one per video and model; a newer generation replaces
-- the older) and the videos that are live, hence recommendable.
CREATE TABLE video_embeddings (
    video_id     TEXT        NOT NULL,
    model        TEXT        NOT NULL,
    author_id    TEXT        NOT NULL,
    dimensions   INTEGER     NOT NULL CHECK (dimensions > 0),
    vector       REAL[]      NOT NULL CHECK (cardinality(vector) = dimensions),
    generated_at TIMESTAMPTZ NOT NULL,
    -- 1 for the first embedding of (video, model), +1 for each replacement.
    version      INTEGER     NOT NULL DEFAULT 1,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (video_id, model)
);

CREATE TABLE recommendable_videos (
    video_id     TEXT        PRIMARY KEY,
    author_id    TEXT        NOT NULL,
    post_id      TEXT        NOT NULL,
    hashtags     TEXT[]      NOT NULL DEFAULT '{}',
    duration_ms  BIGINT      NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX recommendable_videos_published_at ON recommendable_videos (published_at);

-- What a recommender may rank: live videos with an embedding, per model.
CREATE VIEW recommendation_candidates AS
SELECT r.video_id, r.author_id, r.post_id, r.hashtags, r.duration_ms, r.published_at,
       e.model, e.dimensions, e.vector
FROM recommendable_videos r
JOIN video_embeddings e ON e.video_id = r.video_id;
