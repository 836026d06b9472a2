-- Back to per-user inbox rows, rebuilt from the positions: every user gets
-- cursors 1.. over the messages of their current conversations, by pos.
-- (v1 clients then hold cursors from the position era, larger than the
-- rebuilt ones: they see nothing new until their conversations pass them.)
CREATE TABLE user_cursors (
    user_id VARCHAR(64) NOT NULL PRIMARY KEY,
    head    BIGINT      NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE TABLE user_inbox (
    user_id         VARCHAR(64)  NOT NULL,
    cursor_pos      BIGINT       NOT NULL,
    conversation_id VARCHAR(160) NOT NULL,
    seq             BIGINT       NOT NULL,
    PRIMARY KEY (user_id, cursor_pos)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO user_inbox (user_id, cursor_pos, conversation_id, seq)
SELECT uc.user_id, ROW_NUMBER() OVER (PARTITION BY uc.user_id ORDER BY m.pos),
    m.conversation_id, m.seq
FROM user_conversations AS uc JOIN messages AS m ON m.conversation_id = uc.conversation_id;
INSERT INTO user_cursors (user_id, head)
SELECT user_id, MAX(cursor_pos) FROM user_inbox GROUP BY user_id;

DROP TABLE sync_clock;
ALTER TABLE conversations DROP COLUMN last_pos;
ALTER TABLE messages DROP INDEX messages_conversation_pos_key, DROP COLUMN pos;
