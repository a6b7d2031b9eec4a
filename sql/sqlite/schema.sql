-- kinto-rs SQLite schema: the logical schema of Kinto's PostgreSQL backend (storage version 26,
-- permission version 2), with timestamps stored as integer milliseconds since the epoch and JSON
-- stored as text. Every statement is idempotent; it runs each time a connection opens.
CREATE TABLE IF NOT EXISTS objects (
    id TEXT NOT NULL,
    parent_id TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    data TEXT NOT NULL DEFAULT '{}',
    deleted INTEGER NOT NULL,
    PRIMARY KEY (id, parent_id, resource_name)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_objects_parent_id_resource_name_last_modified
    ON objects (parent_id, resource_name, last_modified DESC);
CREATE INDEX IF NOT EXISTS idx_objects_resource_name_parent_id_deleted
    ON objects (resource_name, parent_id, deleted);
CREATE INDEX IF NOT EXISTS idx_objects_last_modified ON objects (last_modified);

CREATE TABLE IF NOT EXISTS timestamps (
    parent_id TEXT NOT NULL,
    resource_name TEXT NOT NULL,
    last_modified INTEGER NOT NULL,
    PRIMARY KEY (parent_id, resource_name)
);

CREATE TABLE IF NOT EXISTS metadata (
    name TEXT NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS user_principals (
    user_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (user_id, principal)
);

CREATE TABLE IF NOT EXISTS access_control_entries (
    object_id TEXT NOT NULL,
    permission TEXT NOT NULL,
    principal TEXT NOT NULL,
    PRIMARY KEY (object_id, permission, principal)
);
CREATE INDEX IF NOT EXISTS idx_access_control_entries_permission
    ON access_control_entries (permission);
CREATE INDEX IF NOT EXISTS idx_access_control_entries_principal
    ON access_control_entries (principal);

-- ttl: expiry as seconds since the epoch (REAL), NULL for no expiry.
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    ttl REAL NULL
);
CREATE INDEX IF NOT EXISTS idx_cache_ttl ON cache (ttl);

INSERT INTO metadata (name, value)
    SELECT 'created_at', datetime('now')
    WHERE NOT EXISTS (SELECT 1 FROM metadata WHERE name = 'created_at');
INSERT INTO metadata (name, value)
    SELECT 'storage_schema_version', '26'
    WHERE NOT EXISTS (SELECT 1 FROM metadata WHERE name = 'storage_schema_version');
INSERT INTO metadata (name, value)
    SELECT 'permission_schema_version', '2'
    WHERE NOT EXISTS (SELECT 1 FROM metadata WHERE name = 'permission_schema_version');
