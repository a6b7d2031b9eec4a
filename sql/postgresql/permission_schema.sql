-- kinto-rs: Kinto's PostgreSQL permission schema, version 2.
SET client_min_messages TO ERROR;

-- Groups (principals) of each user id; `system.Authenticated` rows apply to every user.
CREATE TABLE IF NOT EXISTS user_principals (
    user_id TEXT COLLATE "C",
    principal TEXT,
    PRIMARY KEY (user_id, principal)
);

-- Access control entries: object URI, permission name, principal.
CREATE TABLE IF NOT EXISTS access_control_entries (
    object_id TEXT COLLATE "C",
    permission TEXT,
    principal TEXT,
    PRIMARY KEY (object_id, permission, principal)
);
CREATE INDEX IF NOT EXISTS idx_access_control_entries_object_id
    ON access_control_entries (object_id);
CREATE INDEX IF NOT EXISTS idx_access_control_entries_permission
    ON access_control_entries (permission);
CREATE INDEX IF NOT EXISTS idx_access_control_entries_principal
    ON access_control_entries (principal);

CREATE TABLE IF NOT EXISTS metadata (
    name VARCHAR(128) NOT NULL,
    value VARCHAR(512) NOT NULL
);
INSERT INTO metadata (name, value) VALUES ('permission_schema_version', '2');
