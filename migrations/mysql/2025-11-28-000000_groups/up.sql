-- Groups, their members, and per-user read cursors (issue 4). MySQL 8 /
-- MariaDB 10.5+ flavour (kept structurally identical to migrations/sqlite).
-- Lengths: group ids <= 128 (server-generated), user ids <= 64; the texts are
-- bounded by the service (name 256, face_url 2048, introduction and
-- notification 8192, extra 16 KiB bytes).
--
-- Group membership is also conversation membership: while a user is a member
-- of group <gid>, they have a user_conversations row for `group_<gid>` (added
-- with the member, removed with them, and when the group is dismissed).
-- (`chat_groups`, not `groups`: GROUPS is a reserved word in MySQL 8.)

CREATE TABLE chat_groups (
    group_id     VARCHAR(128) NOT NULL PRIMARY KEY,
    name         TEXT         NOT NULL,
    face_url     TEXT         NOT NULL,
    introduction TEXT         NOT NULL,
    notification TEXT         NOT NULL,
    extra        MEDIUMTEXT   NOT NULL,
    owner_id     VARCHAR(64)  NOT NULL,
    -- 0 normal, 1 dismissed
    status       INT          NOT NULL DEFAULT 0,
    mute_all     BOOLEAN      NOT NULL DEFAULT FALSE,
    created_at   BIGINT       NOT NULL,
    updated_at   BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Members by group: the primary key.
CREATE TABLE group_members (
    group_id    VARCHAR(128) NOT NULL,
    user_id     VARCHAR(64)  NOT NULL,
    -- 1 owner, 2 admin, 3 member
    role        INT          NOT NULL,
    -- muted until (ms); 0 = not muted
    muted_until BIGINT       NOT NULL DEFAULT 0,
    joined_at   BIGINT       NOT NULL,
    PRIMARY KEY (group_id, user_id),
    -- Groups by user.
    KEY group_members_user_key (user_id, group_id),
    CONSTRAINT group_members_group_fk FOREIGN KEY (group_id)
        REFERENCES chat_groups (group_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Read cursor per (user, conversation): the highest seq the user has read.
-- Never moves backwards; kept when a member leaves (read_cursors lists it).
CREATE TABLE read_cursors (
    user_id         VARCHAR(64)  NOT NULL,
    conversation_id VARCHAR(160) NOT NULL,
    read_seq        BIGINT       NOT NULL,
    updated_at      BIGINT       NOT NULL,
    PRIMARY KEY (user_id, conversation_id),
    -- Who read up to where in a conversation (covering).
    KEY read_cursors_conversation_key (conversation_id, user_id, read_seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Every membership of a conversation (dismissing a group deletes them). It
-- also serves user_conversations_conversation_fk, whose implicit index InnoDB
-- then drops.
CREATE INDEX user_conversations_conversation_key ON user_conversations (conversation_id);
