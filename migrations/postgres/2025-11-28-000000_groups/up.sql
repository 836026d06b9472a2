-- Groups, their members, and per-user read cursors (issue 4). PostgreSQL
-- flavour (kept structurally identical to migrations/sqlite).
--
-- Group membership is also conversation membership: while a user is a member
-- of group <gid>, they have a user_conversations row for `group_<gid>` (added
-- with the member, removed with them, and when the group is dismissed).
-- (`chat_groups`, not `groups`: GROUPS is a reserved word in MySQL 8.)

CREATE TABLE chat_groups (
    group_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name         TEXT             NOT NULL DEFAULT '',
    face_url     TEXT             NOT NULL DEFAULT '',
    introduction TEXT             NOT NULL DEFAULT '',
    notification TEXT             NOT NULL DEFAULT '',
    extra        TEXT             NOT NULL DEFAULT '',
    owner_id     TEXT COLLATE "C" NOT NULL,
    -- 0 normal, 1 dismissed
    status       INTEGER          NOT NULL DEFAULT 0,
    mute_all     BOOLEAN          NOT NULL DEFAULT FALSE,
    created_at   BIGINT           NOT NULL,
    updated_at   BIGINT           NOT NULL
);

-- Members by group: the primary key.
CREATE TABLE group_members (
    group_id    TEXT COLLATE "C" NOT NULL REFERENCES chat_groups (group_id),
    user_id     TEXT COLLATE "C" NOT NULL,
    -- 1 owner, 2 admin, 3 member
    role        INTEGER          NOT NULL,
    -- muted until (ms); 0 = not muted
    muted_until BIGINT           NOT NULL DEFAULT 0,
    joined_at   BIGINT           NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
-- Groups by user.
CREATE INDEX group_members_user_key ON group_members (user_id, group_id);

-- Read cursor per (user, conversation): the highest seq the user has read.
-- Never moves backwards; kept when a member leaves (read_cursors lists it).
CREATE TABLE read_cursors (
    user_id         TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    read_seq        BIGINT           NOT NULL,
    updated_at      BIGINT           NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
-- Who read up to where in a conversation (covering).
CREATE INDEX read_cursors_conversation_key ON read_cursors (conversation_id, user_id, read_seq);

-- Every membership of a conversation (dismissing a group deletes them).
CREATE INDEX user_conversations_conversation_key ON user_conversations (conversation_id);
