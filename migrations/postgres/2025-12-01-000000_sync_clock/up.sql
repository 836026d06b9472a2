-- Per-user sync by one global, commit-ordered position (issue 7). PostgreSQL
-- flavour, structurally identical to migrations/sqlite.
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

-- It references messages (conversation_id, seq).
DROP TABLE user_inbox;

ALTER TABLE messages ADD COLUMN pos BIGINT;
UPDATE messages SET pos = id + (SELECT COALESCE(MAX(head), 0) FROM user_cursors);
-- the global sync position (sync_clock), increasing in commit order
ALTER TABLE messages ALTER COLUMN pos SET NOT NULL;
-- v1 sync: a conversation's messages after a position, in position order
ALTER TABLE messages ADD CONSTRAINT messages_conversation_pos_key UNIQUE (conversation_id, pos);

-- Position of the conversation's newest message (0: none yet).
ALTER TABLE conversations ADD COLUMN last_pos BIGINT NOT NULL DEFAULT 0;
UPDATE conversations AS c SET last_pos = m.last
FROM (SELECT conversation_id, MAX(pos) AS last FROM messages GROUP BY conversation_id) AS m
WHERE m.conversation_id = c.conversation_id;

-- One row (id = 1): the highest position handed out.
CREATE TABLE sync_clock (
    id  INTEGER NOT NULL PRIMARY KEY,
    pos BIGINT  NOT NULL
);
INSERT INTO sync_clock (id, pos)
SELECT 1, COALESCE(MAX(pos), (SELECT COALESCE(MAX(head), 0) FROM user_cursors)) FROM messages;

DROP TABLE user_cursors;
