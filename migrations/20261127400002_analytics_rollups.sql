-- analytics-aggregation group: periodic aggregates beside the live Redis counters. Each event adds
-- to the bucket of the hour (content) or day (creator) it happened in, exactly once per event.
CREATE TABLE content_stats_hourly (
    content_id    TEXT        NOT NULL,
    bucket_start  TIMESTAMPTZ NOT NULL,
    author_id     TEXT,
    views         BIGINT      NOT NULL DEFAULT 0,
    completions   BIGINT      NOT NULL DEFAULT 0,
    watch_time_ms BIGINT      NOT NULL DEFAULT 0,
    engagements   BIGINT      NOT NULL DEFAULT 0,
    likes         BIGINT      NOT NULL DEFAULT 0,
    shares        BIGINT      NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (content_id, bucket_start)
);
CREATE INDEX content_stats_hourly_bucket ON content_stats_hourly (bucket_start);
CREATE INDEX content_stats_hourly_author ON content_stats_hourly (author_id, bucket_start);

CREATE TABLE creator_stats_daily (
    author_id     TEXT        NOT NULL,
    day           DATE        NOT NULL,
    posts         BIGINT      NOT NULL DEFAULT 0,
    views         BIGINT      NOT NULL DEFAULT 0,
    watch_time_ms BIGINT      NOT NULL DEFAULT 0,
    engagements   BIGINT      NOT NULL DEFAULT 0,
    likes         BIGINT      NOT NULL DEFAULT 0,
    shares        BIGINT      NOT NULL DEFAULT 0,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (author_id, day)
);
CREATE INDEX creator_stats_daily_day ON creator_stats_daily (day);
