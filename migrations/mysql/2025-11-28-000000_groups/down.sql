DROP TABLE read_cursors;
DROP TABLE group_members;
DROP TABLE chat_groups;
-- InnoDB needs an index for user_conversations_conversation_fk: put back the
-- one it had made (named after the constraint) before dropping ours.
CREATE INDEX user_conversations_conversation_fk ON user_conversations (conversation_id);
DROP INDEX user_conversations_conversation_key ON user_conversations;
