-- search-indexer group: one full-text document per post, comment and user. `document` is derived
-- by PostgreSQL from `body` ('simple' configuration: no stemming or stop words, so handles, names
-- and any language match as written). A deleted post stays as an empty tombstone so a late
-- post.created cannot bring it back.
CREATE TABLE search_documents (
    kind        TEXT        NOT NULL CHECK (kind IN ('post', 'comment', 'user')),
    id          TEXT        NOT NULL,
    owner       TEXT        NOT NULL,
    -- The post a comment belongs to (comments of a deleted post are not found).
    parent_id   TEXT,
    body        TEXT        NOT NULL,
    -- Only public documents are found (posts visible to followers only or private are kept out).
    public      BOOLEAN     NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL,
    deleted     BOOLEAN     NOT NULL DEFAULT false,
    deleted_at  TIMESTAMPTZ,
    indexed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    document    tsvector    GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED,
    PRIMARY KEY (kind, id)
);
CREATE INDEX search_documents_document ON search_documents USING GIN (document);
CREATE INDEX search_documents_parent ON search_documents (parent_id) WHERE parent_id IS NOT NULL;
