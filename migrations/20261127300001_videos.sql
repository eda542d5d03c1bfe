-- Videos and their processing, projected by the media groups. transcoder records an upload and
-- its probe; video-publisher records the renditions and the thumbnail, then publishes the video
-- or marks it failed. GET /v1/videos/{id} reads this table.
--
-- status: UPLOADED (stored, not a usable video or not probed yet) -> PROCESSING (probed;
-- renditions and thumbnail under way) -> PUBLISHED (both present, video.published emitted) or
-- FAILED (video.transcode.failed; failure_kind and failure_reason say why).
CREATE TABLE videos (
    id                  UUID        PRIMARY KEY,          -- videoId
    author_id           UUID        NOT NULL,             -- who uploaded it
    post_id             UUID        NOT NULL,             -- the post presenting it in feeds (= id)
    status              TEXT        NOT NULL
                        CHECK (status IN ('UPLOADED', 'PROCESSING', 'PUBLISHED', 'FAILED')),
    -- The upload (video.uploaded).
    source_key          TEXT        NOT NULL,             -- object-store key of the original file
    original_filename   TEXT        NOT NULL,
    content_type        TEXT        NOT NULL,
    size_bytes          BIGINT      NOT NULL,
    caption             TEXT,
    hashtags            TEXT[]      NOT NULL DEFAULT '{}', -- without the leading #
    mentions            UUID[]      NOT NULL DEFAULT '{}', -- mentioned user ids
    uploaded_at         TIMESTAMPTZ NOT NULL,
    -- The probe of the source (NULL when it is not a usable video).
    duration_ms         BIGINT,
    width               INTEGER,                          -- display size (rotation applied)
    height              INTEGER,
    fps                 DOUBLE PRECISION,
    video_codec         TEXT,
    has_audio           BOOLEAN,
    -- HLS output (video.transcode.completed): renditions highest quality first, each
    -- {"name": "720p", "width", "height", "bitrateKbps", "playlistUrl"}.
    renditions          JSONB,
    master_playlist_url TEXT,
    transcoded_at       TIMESTAMPTZ,
    -- The composite thumbnail (thumbnail.generation.completed).
    thumbnail_url       TEXT,
    thumbnail_key       TEXT,                             -- its object-store key
    thumbnail_width     INTEGER,
    thumbnail_height    INTEGER,
    thumbnailed_at      TIMESTAMPTZ,
    -- A failure (video.transcode.failed): one of the TranscodeErrorKind symbols and a message.
    failure_kind        TEXT,
    failure_reason      TEXT,
    failed_at           TIMESTAMPTZ,
    -- Publication: when, and the id of the event whose transaction published the video; only
    -- that event emits video.published (again, with the same id, if it is redelivered).
    published_at        TIMESTAMPTZ,
    published_by_event  TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (status <> 'PUBLISHED' OR (published_at IS NOT NULL AND master_playlist_url IS NOT NULL
                                     AND thumbnail_url IS NOT NULL))
);

-- An author's videos, newest first.
CREATE INDEX videos_author ON videos (author_id, uploaded_at DESC);
-- Videos still in processing, for operators looking for stuck ones.
CREATE INDEX videos_in_progress ON videos (uploaded_at) WHERE status IN ('UPLOADED', 'PROCESSING');
