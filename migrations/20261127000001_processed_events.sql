-- Exactly-once effects for consumer groups: a handler writes its effects and this row in one
-- transaction; a redelivered event finds its row and changes nothing more.
CREATE TABLE processed_events (
    consumer_group TEXT        NOT NULL,
    event_id       TEXT        NOT NULL,
    event_type     TEXT        NOT NULL,
    topic          TEXT        NOT NULL,
    kafka_partition INTEGER    NOT NULL,
    kafka_offset   BIGINT      NOT NULL,
    processed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

-- Retention jobs delete old rows by age.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
