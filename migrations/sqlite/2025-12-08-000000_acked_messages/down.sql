DROP TABLE acked_messages;
