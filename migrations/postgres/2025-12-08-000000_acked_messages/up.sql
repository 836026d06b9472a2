-- MSG_ACK per message and device (issue 18, item 5): a v2 device's BATCH_SYNC
-- leaves out what that device acknowledged (it stored those pushes first).
-- Rows at or below a cursor the device presents are deleted on its sync;
-- rows older than message.ack_retention (acked_at, ms) by a periodic purge.
CREATE TABLE acked_messages (
    user_id         TEXT COLLATE "C" NOT NULL,
    device_id       TEXT COLLATE "C" NOT NULL,
    conversation_id TEXT COLLATE "C" NOT NULL,
    seq             BIGINT           NOT NULL,
    acked_at        BIGINT           NOT NULL,
    PRIMARY KEY (user_id, device_id, conversation_id, seq)
);
CREATE INDEX acked_messages_acked_at ON acked_messages (acked_at);
