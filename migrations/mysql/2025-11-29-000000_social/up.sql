-- Accounts and profiles, friends and friend requests, blocklists, revoked
-- tokens. MySQL 8 / MariaDB 10.5+ flavour (kept structurally identical to
-- migrations/sqlite).
--
-- Profiles are columns of `users`: a user provisioned by a token on first
-- contact (`touch`) is a profile with empty fields. `updated_at` is the time
-- of the last profile update, or `created_at` when there was none.
-- Lengths (characters; strict mode rejects longer values): ids <= 64,
-- nickname and remark 64, phone 64, email 255, friend request message 256,
-- password hash 255 (a PHC string); avatar, signature and the extras are
-- TEXT (a few KiB, bounded by the service). TEXT defaults are expressions
-- (`('')`): MySQL 8 refuses a literal default on TEXT.

ALTER TABLE users
    ADD COLUMN nickname   VARCHAR(64)  NOT NULL DEFAULT '',
    ADD COLUMN avatar     TEXT         NOT NULL DEFAULT (''),
    ADD COLUMN phone      VARCHAR(64)  NOT NULL DEFAULT '',
    ADD COLUMN email      VARCHAR(255) NOT NULL DEFAULT '',
    -- 0 unknown, 1 male, 2 female
    ADD COLUMN gender     INT          NOT NULL DEFAULT 0,
    -- birth date (ms); 0 = unknown
    ADD COLUMN birth      BIGINT       NOT NULL DEFAULT 0,
    ADD COLUMN signature  TEXT         NOT NULL DEFAULT (''),
    ADD COLUMN extra      TEXT         NOT NULL DEFAULT (''),
    ADD COLUMN updated_at BIGINT       NOT NULL DEFAULT 0;
UPDATE users SET updated_at = created_at;

-- Credentials of users who registered with a password. The users row is
-- created in the same transaction.
CREATE TABLE accounts (
    user_id       VARCHAR(64)  NOT NULL PRIMARY KEY,
    password_hash VARCHAR(255) NOT NULL,
    created_at    BIGINT       NOT NULL,
    CONSTRAINT accounts_user_fk FOREIGN KEY (user_id) REFERENCES users (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per side of a friendship: owner_id's entry for friend_id. A
-- user's friends by friend id: the primary key.
CREATE TABLE friends (
    owner_id    VARCHAR(64) NOT NULL,
    friend_id   VARCHAR(64) NOT NULL,
    -- the owner's private name for the friend
    remark      VARCHAR(64) NOT NULL DEFAULT '',
    -- how the friendship started (1 = request accepted)
    add_source  INT         NOT NULL DEFAULT 0,
    -- who completed it
    operator_id VARCHAR(64) NOT NULL DEFAULT '',
    extra       TEXT        NOT NULL DEFAULT (''),
    created_at  BIGINT      NOT NULL,
    PRIMARY KEY (owner_id, friend_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- At most one request per ordered pair; asking again refreshes it
-- (created_at kept). Requests sent by a user: the primary key.
CREATE TABLE friend_requests (
    from_id    VARCHAR(64)  NOT NULL,
    to_id      VARCHAR(64)  NOT NULL,
    message    VARCHAR(256) NOT NULL DEFAULT '',
    -- 0 pending, 1 accepted, 2 rejected
    status     INT          NOT NULL DEFAULT 0,
    created_at BIGINT       NOT NULL,
    updated_at BIGINT       NOT NULL,
    PRIMARY KEY (from_id, to_id),
    -- Requests sent to a user, newest first.
    KEY friend_requests_to_key (to_id, updated_at, from_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- owner_id blocked blocked_id. A user's blocklist by blocked id: the primary key.
CREATE TABLE blocks (
    owner_id   VARCHAR(64) NOT NULL,
    blocked_id VARCHAR(64) NOT NULL,
    created_at BIGINT      NOT NULL,
    PRIMARY KEY (owner_id, blocked_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Revoked tokens by JWT id, kept until they expire (seconds since the epoch).
CREATE TABLE revoked_tokens (
    jti        VARCHAR(128) NOT NULL PRIMARY KEY,
    user_id    VARCHAR(64)  NOT NULL,
    expires_at BIGINT       NOT NULL,
    -- Purging the expired ones.
    KEY revoked_tokens_expires_key (expires_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
