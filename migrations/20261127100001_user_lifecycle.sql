-- user-lifecycle group: profiles, settings, the follow graph and blocks, projected from the users
-- domain (user.created, user.verified, user.followed, user.unfollowed, user.blocked).

-- One row per known user. Events of different users travel on different partitions, so a
-- follow, verification or block can arrive before the user's user.created: the first event that
-- names a user creates the row, and the identity columns (username ... created_at) stay NULL
-- until user.created fills them.
CREATE TABLE user_profiles (
    user_id         UUID        PRIMARY KEY,
    username        TEXT,                              -- handle without the leading @
    display_name    TEXT,
    email           TEXT,
    phone_number    TEXT,                              -- E.164
    signup_method   TEXT,                              -- EMAIL | PHONE | GOOGLE | APPLE | OTHER
    locale          TEXT,                              -- BCP 47
    country_code    TEXT,                              -- ISO 3166-1 alpha-2
    referrer_id     UUID,
    created_at      TIMESTAMPTZ,                       -- account creation (user.created)
    verified_kinds  TEXT[]      NOT NULL DEFAULT '{}', -- EMAIL, PHONE, IDENTITY, CREATOR_BADGE, OTHER
    verified_at     TIMESTAMPTZ,                       -- latest verification
    follower_count  BIGINT      NOT NULL DEFAULT 0 CHECK (follower_count >= 0),
    following_count BIGINT      NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX user_profiles_username ON user_profiles (lower(username));

-- Per-user settings, created with defaults on user.created. The notifier reads the channel
-- switches (push_enabled, email_enabled) to choose delivery channels; no row means defaults.
CREATE TABLE user_settings (
    user_id         UUID        PRIMARY KEY,
    locale          TEXT,
    push_enabled    BOOLEAN     NOT NULL DEFAULT true,
    email_enabled   BOOLEAN     NOT NULL DEFAULT true,
    private_account BOOLEAN     NOT NULL DEFAULT false,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The follow graph, one row per (follower, followee) pair ever seen. Follows and unfollows of a
-- pair may arrive out of order (retries run later than newer events), so the row keeps the event
-- time of the latest change applied and only a newer event changes it; an unfollow keeps the row
-- with active = false. Current followers of X: WHERE followee_id = X AND active.
CREATE TABLE user_follows (
    follower_id UUID        NOT NULL,
    followee_id UUID        NOT NULL,
    active      BOOLEAN     NOT NULL,
    created_at  TIMESTAMPTZ,                -- start of the current follow; NULL while inactive
    changed_at  TIMESTAMPTZ NOT NULL,       -- event time of the latest follow, unfollow or block
    PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX user_follows_followers ON user_follows (followee_id, created_at) WHERE active;

-- Who blocked whom (there is no unblock event yet). A block ends any follow between the two, in
-- both directions, and later follows between them are ignored.
CREATE TABLE user_blocks (
    blocker_id UUID        NOT NULL,
    blocked_id UUID        NOT NULL,
    blocked_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX user_blocks_blocked ON user_blocks (blocked_id);
