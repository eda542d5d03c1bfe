-- audit-log group: the append-only audit trail (admin actions, mutes, health changes) and the last
-- known health of each component.
CREATE TABLE audit_log (
    id          BIGSERIAL   PRIMARY KEY,
    event_id    TEXT        NOT NULL UNIQUE,
    event_type  TEXT        NOT NULL,
    actor       TEXT,
    action      TEXT        NOT NULL,
    target_kind TEXT,
    target_ref  TEXT,
    reason      TEXT,
    details     JSONB       NOT NULL DEFAULT '{}'::jsonb,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at);
CREATE INDEX audit_log_target ON audit_log (target_kind, target_ref);

-- Append-only: rows are never changed or removed by the application.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE component_health (
    component   TEXT        NOT NULL,
    instance    TEXT        NOT NULL DEFAULT '',
    status      TEXT        NOT NULL,
    details     JSONB       NOT NULL DEFAULT '{}'::jsonb,
    checked_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (component, instance)
);
