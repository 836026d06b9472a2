-- im-server schema, PostgreSQL flavour (kept structurally identical to migrations/sqlite).
-- Times are i64 milliseconds since the Unix epoch. Ids are ASCII `[A-Za-z0-9_-]` and compare
-- byte-wise (COLLATE "C", as in SQLite and MySQL's utf8mb4_bin): the same order on every
-- backend, and cheaper index comparisons than a linguistic collation.

-- One row per conversation: the gapless per-conversation seq counter.
CREATE TABLE conversations (
    conversation_id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    conversation_type INTEGER          NOT NULL,
    max_seq           BIGINT           NOT NULL DEFAULT 0,
    created_at        BIGINT           NOT NULL,
    updated_at        BIGINT           NOT NULL
);

-- Every stored message. `seq` is allocated from conversations.max_seq.
CREATE TABLE messages (
    id                BIGINT           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_msg_id     TEXT COLLATE "C" NOT NULL,
    client_msg_id     TEXT COLLATE "C" NOT NULL,
    conversation_id   TEXT COLLATE "C" NOT NULL REFERENCES conversations (conversation_id),
    conversation_type INTEGER          NOT NULL,
    sender_id         TEXT COLLATE "C" NOT NULL,
    receiver_id       TEXT COLLATE "C" NOT NULL DEFAULT '',
    group_id          TEXT COLLATE "C" NOT NULL DEFAULT '',
    message_type      INTEGER          NOT NULL,
    content           BYTEA            NOT NULL,
    send_time         BIGINT           NOT NULL,
    server_time       BIGINT           NOT NULL,
    seq               BIGINT           NOT NULL,
    extra             TEXT             NOT NULL DEFAULT '',
    revoked_by        TEXT COLLATE "C",
    revoked_time      BIGINT,
    -- find_by_server_id
    CONSTRAINT messages_server_msg_id_key UNIQUE (server_msg_id),
    -- conversation_range, the inbox join, and a guard on gapless seqs
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    -- idempotent send
    CONSTRAINT messages_sender_client_key UNIQUE (sender_id, client_msg_id)
);

-- Per-user change cursor: head = highest cursor handed out.
CREATE TABLE user_cursors (
    user_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    head    BIGINT           NOT NULL
);

-- One row per (participant, new message). cursor_pos is contiguous per user from 1.
CREATE TABLE user_inbox (
    user_id         TEXT COLLATE "C" NOT NULL,
    cursor_pos      BIGINT           NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    seq             BIGINT           NOT NULL,
    PRIMARY KEY (user_id, cursor_pos),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq)
);

-- Which conversations a user takes part in.
CREATE TABLE user_conversations (
    user_id         TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations (conversation_id),
    created_at      BIGINT           NOT NULL,
    updated_at      BIGINT           NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);

-- MSG_ACK: highest seq a device has received per conversation. Never moves backwards.
CREATE TABLE deliveries (
    user_id         TEXT COLLATE "C" NOT NULL,
    device_id       TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    seq             BIGINT           NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
);

-- Users seen by the server (first authenticated contact provisions them).
CREATE TABLE users (
    user_id    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    created_at BIGINT           NOT NULL,
    last_seen  BIGINT           NOT NULL
);
