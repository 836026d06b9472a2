DROP TABLE users;
DROP TABLE deliveries;
DROP TABLE user_conversations;
DROP TABLE user_inbox;
DROP TABLE user_cursors;
DROP TABLE messages;
DROP TABLE conversations;
