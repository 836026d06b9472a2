-- Per-user sync by one global, commit-ordered position (issue 7). SQLite
-- flavour; keep migrations/postgres and migrations/mysql structurally identical.
--
-- Before: every new message wrote one user_inbox row and advanced one
-- user_cursors row per participant (100 rows per message in a group of 100).
-- After: each message gets `pos` from the one-row `sync_clock`, advanced once
-- per append batch; `conversations.last_pos` is the pos of the conversation's
-- newest message. A user's v1 sync (SYNC_REQ, POST /api/v1/messages/sync) is
-- "messages of my conversations with pos > cursor, by pos", and
-- AuthResponse.max_seq is the largest last_pos of the user's conversations.
--
-- Backfill: pos = id + H, where H is the largest per-user cursor ever handed
-- out (max user_cursors.head). A v1 client's saved cursor c is one of those
-- old per-user cursors, so c <= H < every backfilled pos < every new pos:
-- after the upgrade such a client re-receives the history of its
-- conversations once (it may already hold some of it; clients dedupe by
-- message id) and can never miss a message. Using pos = id alone could miss:
-- with concurrent writers on PostgreSQL/MySQL a user's old cursor order and
-- the id order of their messages could differ, so a message the client had
-- not seen could have an id <= its saved cursor. `id` order keeps the
-- messages of a conversation in seq order (seqs were allocated in id order
-- under the conversation's row lock).

-- It references messages, which is rebuilt below.
DROP TABLE user_inbox;

-- SQLite cannot add a NOT NULL column without a default: rebuild messages
-- with `pos` (the statement of migrations/sqlite/2025-11-27-000000_init plus
-- pos, the global sync position from sync_clock, increasing in commit order;
-- no comments inside the statement: ALTER TABLE DROP COLUMN in down.sql
-- edits its text).
CREATE TABLE messages_new (
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
    revoked_time      BIGINT,
    pos               BIGINT  NOT NULL
);
INSERT INTO messages_new (id, server_msg_id, client_msg_id, conversation_id, conversation_type,
    sender_id, receiver_id, group_id, message_type, content, send_time, server_time, seq, extra,
    revoked_by, revoked_time, pos)
SELECT id, server_msg_id, client_msg_id, conversation_id, conversation_type,
    sender_id, receiver_id, group_id, message_type, content, send_time, server_time, seq, extra,
    revoked_by, revoked_time, id + (SELECT COALESCE(MAX(head), 0) FROM user_cursors)
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE UNIQUE INDEX messages_server_msg_id_key ON messages (server_msg_id);
CREATE UNIQUE INDEX messages_conversation_seq_key ON messages (conversation_id, seq);
CREATE UNIQUE INDEX messages_sender_client_key ON messages (sender_id, client_msg_id);
-- v1 sync: a conversation's messages after a position, in position order
CREATE UNIQUE INDEX messages_conversation_pos_key ON messages (conversation_id, pos);

-- Position of the conversation's newest message (0: none yet).
ALTER TABLE conversations ADD COLUMN last_pos BIGINT NOT NULL DEFAULT 0;
UPDATE conversations SET last_pos = COALESCE(
    (SELECT MAX(m.pos) FROM messages AS m WHERE m.conversation_id = conversations.conversation_id),
    0);

-- One row (id = 1): the highest position handed out.
CREATE TABLE sync_clock (
    id  INTEGER NOT NULL PRIMARY KEY,
    pos BIGINT  NOT NULL
);
INSERT INTO sync_clock (id, pos)
SELECT 1, COALESCE(MAX(pos), (SELECT COALESCE(MAX(head), 0) FROM user_cursors)) FROM messages;

DROP TABLE user_cursors;
