-- moderation group: the review queue (one open item per content, its flags aggregated), the flags
-- behind each item, and the moderation decisions with what was enforced.
CREATE TABLE moderation_queue (
    id              BIGSERIAL        PRIMARY KEY,
    content_id      TEXT             NOT NULL,
    content_kind    TEXT             NOT NULL,
    author_id       TEXT             NOT NULL,
    status          TEXT             NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED')),
    flag_count      INTEGER          NOT NULL DEFAULT 0,
    reasons         TEXT[]           NOT NULL DEFAULT '{}',
    sources         TEXT[]           NOT NULL DEFAULT '{}',
    max_score       DOUBLE PRECISION,
    first_flagged_at TIMESTAMPTZ     NOT NULL,
    last_flagged_at TIMESTAMPTZ      NOT NULL,
    decision        TEXT,
    review_id       TEXT,
    reviewed_at     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ      NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ      NOT NULL DEFAULT now()
);
-- At most one open item per content: new flags join it until a decision closes it.
CREATE UNIQUE INDEX moderation_queue_open_content ON moderation_queue (content_id)
    WHERE status = 'OPEN';
CREATE INDEX moderation_queue_open_by_age ON moderation_queue (first_flagged_at)
    WHERE status = 'OPEN';
CREATE INDEX moderation_queue_content ON moderation_queue (content_id);

CREATE TABLE moderation_flags (
    flag_id      TEXT             PRIMARY KEY,
    item_id      BIGINT           NOT NULL REFERENCES moderation_queue (id),
    content_id   TEXT             NOT NULL,
    reason       TEXT             NOT NULL,
    source       TEXT             NOT NULL,
    reporter_id  TEXT,
    details      TEXT,
    score        DOUBLE PRECISION,
    flagged_at   TIMESTAMPTZ      NOT NULL,
    recorded_at  TIMESTAMPTZ      NOT NULL DEFAULT now()
);
CREATE INDEX moderation_flags_item ON moderation_flags (item_id);

CREATE TABLE moderation_decisions (
    review_id    TEXT        PRIMARY KEY,
    -- The event that recorded the decision (a retry of it re-emits the enforcement).
    event_id     TEXT        NOT NULL,
    content_id   TEXT        NOT NULL,
    content_kind TEXT        NOT NULL,
    author_id    TEXT        NOT NULL,
    item_id      BIGINT      REFERENCES moderation_queue (id),
    flag_id      TEXT,
    reviewer_id  TEXT,
    decision     TEXT        NOT NULL,
    policy       TEXT,
    -- End of the mute actually applied (the default length when the review gave none).
    mute_until   TIMESTAMPTZ,
    notes        TEXT,
    -- What the decision caused: the emitted event type, or NULL (nothing to enforce).
    enforcement  TEXT,
    reviewed_at  TIMESTAMPTZ NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX moderation_decisions_content ON moderation_decisions (content_id);
