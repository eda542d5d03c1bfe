-- feed-fanout group: the posts it fans out, and the follower order its fan-out pages through.
--
-- Feeds themselves live in Redis, one sorted set per user (read side of `GET /v1/users/{id}/feed`):
--   key     circ:<namespace or default>:feed:<userId>
--   member  post id (for video.published, the post that presents the video)
--   score   feed time in epoch milliseconds (the post's createdAt, or the video's publishedAt
--           when later); newest first = ZREVRANGE ... WITHSCORES
--   bound   at most --feed-max-length members (default 500); older ones are trimmed
-- A member may outlive its post for a moment (a deletion racing a late video.published): readers
-- filter members through feed_posts (deleted = false).

-- feed_posts: every post and published video the group has seen, so deletions and feed rebuilds
-- do not depend on another group's tables.
--   post_id     the post (uuid)
--   author_id   its author (uuid)
--   media_type  TEXT | IMAGE | VIDEO | OTHER (VIDEO for video.published)
--   video_id    the video presented by the post, when known
--   visibility  PUBLIC | FOLLOWERS | PRIVATE; PRIVATE posts are never fanned out
--   created_at  feed time: the latest of the post's createdAt and the video's publishedAt
--   deleted     set by post.deleted (a tombstone when the deletion arrives first), never cleared
CREATE TABLE feed_posts (
    post_id    UUID        PRIMARY KEY,
    author_id  UUID        NOT NULL,
    media_type TEXT        NOT NULL,
    video_id   UUID,
    visibility TEXT        NOT NULL CHECK (visibility IN ('PUBLIC', 'FOLLOWERS', 'PRIVATE')),
    created_at TIMESTAMPTZ NOT NULL,
    deleted    BOOLEAN     NOT NULL DEFAULT false,
    deleted_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Feed rebuilds: the recent visible posts of each followee.
CREATE INDEX feed_posts_author_recent ON feed_posts (author_id, created_at DESC)
    WHERE NOT deleted AND visibility <> 'PRIVATE';

-- Fan-out pages through an author's current followers in follower-id order (a cursor that stays
-- valid while the graph changes); the follow graph belongs to user-lifecycle.
CREATE INDEX user_follows_followers_by_id ON user_follows (followee_id, follower_id) WHERE active;
