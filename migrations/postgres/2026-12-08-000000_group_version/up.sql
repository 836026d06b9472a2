-- A version per group, raised by every change to the group row or its members
-- (issue 19): a node serves a cached snapshot of the group only while the
-- stored version still equals the one the snapshot was loaded with, so a
-- membership change made on another node takes effect there at once, not
-- when its cache invalidation arrives.
ALTER TABLE chat_groups ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
