DROP INDEX user_conversations_conversation_key;
DROP TABLE read_cursors;
DROP TABLE group_members;
DROP TABLE chat_groups;
