-- im-server schema, PostgreSQL flavour (not wired yet; kept identical to migrations/sqlite).
-- Times are i64 milliseconds since the Unix epoch.

CREATE TABLE conversations (
    conversation_id   TEXT    NOT NULL PRIMARY KEY,
    conversation_type INTEGER NOT NULL,
    max_seq           BIGINT  NOT NULL DEFAULT 0,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

CREATE TABLE messages (
    id                BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    server_msg_id     TEXT    NOT NULL,
    client_msg_id     TEXT    NOT NULL,
    conversation_id   TEXT    NOT NULL REFERENCES conversations (conversation_id),
    conversation_type INTEGER NOT NULL,
    sender_id         TEXT    NOT NULL,
    receiver_id       TEXT    NOT NULL DEFAULT '',
    group_id          TEXT    NOT NULL DEFAULT '',
    message_type      INTEGER NOT NULL,
    content           BYTEA   NOT NULL,
    send_time         BIGINT  NOT NULL,
    server_time       BIGINT  NOT NULL,
    seq               BIGINT  NOT NULL,
    extra             TEXT    NOT NULL DEFAULT '',
    revoked_by        TEXT,
    revoked_time      BIGINT,
    CONSTRAINT messages_server_msg_id_key UNIQUE (server_msg_id),
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT messages_sender_client_key UNIQUE (sender_id, client_msg_id)
);

CREATE TABLE user_cursors (
    user_id TEXT   NOT NULL PRIMARY KEY,
    head    BIGINT NOT NULL
);

CREATE TABLE user_inbox (
    user_id         TEXT   NOT NULL,
    cursor_pos      BIGINT NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (user_id, cursor_pos),
    FOREIGN KEY (conversation_id, seq) REFERENCES messages (conversation_id, seq)
);

CREATE TABLE user_conversations (
    user_id         TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL REFERENCES conversations (conversation_id),
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);

CREATE TABLE deliveries (
    user_id         TEXT   NOT NULL,
    device_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
);

CREATE TABLE users (
    user_id    TEXT   NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);
