-- im-server schema, MySQL 8 / MariaDB 10.5+ flavour (kept structurally identical to migrations/sqlite).
-- Times are i64 milliseconds since the Unix epoch. Ids compare byte-wise (utf8mb4_bin),
-- as in SQLite and PostgreSQL. Lengths: user ids <= 64 (im-core MAX_ID_LEN),
-- conversation ids are `single_<a>_<b>` / `group_<gid>` (<= 136).

CREATE TABLE conversations (
    conversation_id   VARCHAR(160) NOT NULL PRIMARY KEY,
    conversation_type INT          NOT NULL,
    max_seq           BIGINT       NOT NULL DEFAULT 0,
    created_at        BIGINT       NOT NULL,
    updated_at        BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE messages (
    id                BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    server_msg_id     VARCHAR(128) NOT NULL,
    client_msg_id     VARCHAR(128) NOT NULL,
    conversation_id   VARCHAR(160) NOT NULL,
    conversation_type INT          NOT NULL,
    sender_id         VARCHAR(64)  NOT NULL,
    receiver_id       VARCHAR(64)  NOT NULL DEFAULT '',
    group_id          VARCHAR(64)  NOT NULL DEFAULT '',
    message_type      INT          NOT NULL,
    content           MEDIUMBLOB   NOT NULL,
    send_time         BIGINT       NOT NULL,
    server_time       BIGINT       NOT NULL,
    seq               BIGINT       NOT NULL,
    extra             MEDIUMTEXT   NOT NULL,
    revoked_by        VARCHAR(64)  NULL,
    revoked_time      BIGINT       NULL,
    CONSTRAINT messages_server_msg_id_key UNIQUE (server_msg_id),
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq),
    CONSTRAINT messages_sender_client_key UNIQUE (sender_id, client_msg_id),
    CONSTRAINT messages_conversation_fk FOREIGN KEY (conversation_id)
        REFERENCES conversations (conversation_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE user_cursors (
    user_id VARCHAR(64) NOT NULL PRIMARY KEY,
    head    BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Unlike SQLite and PostgreSQL, no foreign key to messages (conversation_id, seq): InnoDB
-- would add an index on user_inbox (conversation_id, seq) for it, used by nothing else, and
-- the two cost ~40% of append throughput (examples/append_sweep, batches of 1024). The
-- append transaction writes an inbox row with its message, and messages are never deleted.
CREATE TABLE user_inbox (
    user_id         VARCHAR(64)  NOT NULL,
    cursor_pos      BIGINT       NOT NULL,
    conversation_id VARCHAR(160) NOT NULL,
    seq             BIGINT       NOT NULL,
    PRIMARY KEY (user_id, cursor_pos)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE user_conversations (
    user_id         VARCHAR(64)  NOT NULL,
    conversation_id VARCHAR(160) NOT NULL,
    created_at      BIGINT       NOT NULL,
    updated_at      BIGINT       NOT NULL,
    PRIMARY KEY (user_id, conversation_id),
    CONSTRAINT user_conversations_conversation_fk FOREIGN KEY (conversation_id)
        REFERENCES conversations (conversation_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE deliveries (
    user_id         VARCHAR(64)  NOT NULL,
    device_id       VARCHAR(128) NOT NULL,
    conversation_id VARCHAR(160) NOT NULL,
    seq             BIGINT       NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE users (
    user_id    VARCHAR(64) NOT NULL PRIMARY KEY,
    created_at BIGINT      NOT NULL,
    last_seen  BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
