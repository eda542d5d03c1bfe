-- Operators' decisions on dead letters. A dead-letter topic is append-only, so a replayed or
-- discarded record is marked here and hidden from the open list; the record itself stays in the
-- topic until retention removes it.
CREATE TABLE dead_letter_resolutions (
    dlq_topic      TEXT        NOT NULL,
    dlq_partition  INTEGER     NOT NULL,
    dlq_offset     BIGINT      NOT NULL,
    event_id       TEXT        NOT NULL,
    action         TEXT        NOT NULL CHECK (action IN ('replayed', 'discarded')),
    actor          TEXT        NOT NULL,
    resolved_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
