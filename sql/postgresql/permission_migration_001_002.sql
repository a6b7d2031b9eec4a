-- Permission schema 1 -> 2: ids in the C collation (prefix LIKE can use the indexes).
CREATE TABLE IF NOT EXISTS metadata (
    name VARCHAR(128) NOT NULL,
    value VARCHAR(512) NOT NULL
);
ALTER TABLE user_principals ALTER COLUMN user_id TYPE TEXT COLLATE "C";
ALTER TABLE access_control_entries ALTER COLUMN object_id TYPE TEXT COLLATE "C";

INSERT INTO metadata (name, value) VALUES ('permission_schema_version', '2');
