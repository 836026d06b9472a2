-- Accounts and profiles, friends and friend requests, blocklists, revoked
-- tokens. SQLite flavour; keep migrations/postgres and migrations/mysql
-- structurally identical.
--
-- Profiles are columns of `users`: a user provisioned by a token on first
-- contact (`touch`) is a profile with empty fields. `updated_at` is the time
-- of the last profile update, or `created_at` when there was none.
-- Text bounds are the service's (nickname 64 characters, remark 64, friend
-- request message 256; avatar, signature and the extras a few KiB).

ALTER TABLE users ADD COLUMN nickname   TEXT    NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN avatar     TEXT    NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN phone      TEXT    NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN email      TEXT    NOT NULL DEFAULT '';
-- 0 unknown, 1 male, 2 female
ALTER TABLE users ADD COLUMN gender     INTEGER NOT NULL DEFAULT 0;
-- birth date (ms); 0 = unknown
ALTER TABLE users ADD COLUMN birth      BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN signature  TEXT    NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN extra      TEXT    NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN updated_at BIGINT  NOT NULL DEFAULT 0;
UPDATE users SET updated_at = created_at;

-- Credentials of users who registered with a password (`password_hash` is a
-- PHC string). The users row is created in the same transaction.
CREATE TABLE accounts (
    user_id       TEXT   NOT NULL PRIMARY KEY REFERENCES users (user_id),
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
) WITHOUT ROWID;

-- One row per side of a friendship: owner_id's entry for friend_id. A
-- user's friends by friend id: the primary key.
CREATE TABLE friends (
    owner_id    TEXT    NOT NULL,
    friend_id   TEXT    NOT NULL,
    -- the owner's private name for the friend
    remark      TEXT    NOT NULL DEFAULT '',
    -- how the friendship started (1 = request accepted)
    add_source  INTEGER NOT NULL DEFAULT 0,
    -- who completed it
    operator_id TEXT    NOT NULL DEFAULT '',
    extra       TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT  NOT NULL,
    PRIMARY KEY (owner_id, friend_id)
) WITHOUT ROWID;

-- At most one request per ordered pair; asking again refreshes it
-- (created_at kept). Requests sent by a user: the primary key.
CREATE TABLE friend_requests (
    from_id    TEXT    NOT NULL,
    to_id      TEXT    NOT NULL,
    message    TEXT    NOT NULL DEFAULT '',
    -- 0 pending, 1 accepted, 2 rejected
    status     INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (from_id, to_id)
) WITHOUT ROWID;
-- Requests sent to a user, newest first.
CREATE INDEX friend_requests_to_key ON friend_requests (to_id, updated_at, from_id);

-- owner_id blocked blocked_id. A user's blocklist by blocked id: the primary key.
CREATE TABLE blocks (
    owner_id   TEXT   NOT NULL,
    blocked_id TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (owner_id, blocked_id)
) WITHOUT ROWID;

-- Revoked tokens by JWT id, kept until they expire (seconds since the epoch).
CREATE TABLE revoked_tokens (
    jti        TEXT   NOT NULL PRIMARY KEY,
    user_id    TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
) WITHOUT ROWID;
-- Purging the expired ones.
CREATE INDEX revoked_tokens_expires_key ON revoked_tokens (expires_at);
