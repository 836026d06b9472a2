-- im-server schema, SQLite flavour. Times are i64 milliseconds since the Unix epoch.
-- Keep migrations/postgres and migrations/mysql structurally identical.

-- One row per conversation: the gapless per-conversation seq counter.
CREATE TABLE conversations (
    conversation_id   TEXT    NOT NULL PRIMARY KEY,
    conversation_type INTEGER NOT NULL,
    max_seq           BIGINT  NOT NULL DEFAULT 0,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
) WITHOUT ROWID;

-- Every stored message. `seq` is allocated from conversations.max_seq.
CREATE TABLE messages (
    id                INTEGER NOT NULL PRIMARY KEY,
    server_msg_id     TEXT    NOT NULL,
    client_msg_id     TEXT    NOT NULL,
    conversation_id   TEXT    NOT NULL REFERENCES conversations (conversation_id),
    conversation_type INTEGER NOT NULL,
    sender_id         TEXT    NOT NULL,
    receiver_id       TEXT    NOT NULL DEFAULT '',
    group_id          TEXT    NOT NULL DEFAULT '',
    message_type      INTEGER NOT NULL,
    content           BLOB    NOT NULL,
    send_time         BIGINT  NOT NULL,
    server_time       BIGINT  NOT NULL,
    seq               BIGINT  NOT NULL,
    extra             TEXT    NOT NULL DEFAULT '',
    revoked_by        TEXT,
    revoked_time      BIGINT
);
-- (Named unique indexes rather than table constraints: SQLite would call
-- those sqlite_autoindex_*; the names match the PostgreSQL/MySQL constraints.)
-- find_by_server_id
CREATE UNIQUE INDEX messages_server_msg_id_key ON messages (server_msg_id);
-- conversation_range, the inbox join, and a guard on gapless seqs
CREATE UNIQUE INDEX messages_conversation_seq_key ON messages (conversation_id, seq);
-- idempotent send
CREATE UNIQUE INDEX messages_sender_client_key ON messages (sender_id, client_msg_id);

-- Per-user change cursor: head = highest cursor handed out.
CREATE TABLE user_cursors (
    user_id TEXT   NOT NULL PRIMARY KEY,
    head    BIGINT NOT NULL
) WITHOUT ROWID;

-- One row per (participant, new message). cursor_pos is contiguous per user from 1.
-- (`cursor` is a reserved word in MySQL, hence cursor_pos.)
CREATE TABLE user_inbox (
    user_id         TEXT   NOT NULL,
    cursor_pos      BIGINT NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (user_id, cursor_pos),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq)
) WITHOUT ROWID;

-- Which conversations a user takes part in.
CREATE TABLE user_conversations (
    user_id         TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL REFERENCES conversations (conversation_id),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;

-- MSG_ACK: highest seq a device has received per conversation. Never moves backwards.
CREATE TABLE deliveries (
    user_id         TEXT   NOT NULL,
    device_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
) WITHOUT ROWID;

-- Users seen by the server (first authenticated contact provisions them).
CREATE TABLE users (
    user_id    TEXT   NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
) WITHOUT ROWID;
