-- MSG_ACK per message and device (issue 18, item 5): a v2 device's BATCH_SYNC
-- leaves out what that device acknowledged (it stored those pushes first).
-- Rows at or below a cursor the device presents are deleted on its sync;
-- rows older than message.ack_retention (acked_at, ms) by a periodic purge.
CREATE TABLE acked_messages (
    user_id         VARCHAR(64)  NOT NULL,
    device_id       VARCHAR(128) NOT NULL,
    conversation_id VARCHAR(160) NOT NULL,
    seq             BIGINT       NOT NULL,
    acked_at        BIGINT       NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
CREATE INDEX acked_messages_acked_at ON acked_messages (acked_at);
