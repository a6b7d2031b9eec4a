-- kinto-rs: Kinto's PostgreSQL storage schema, version 26 (tables, indexes, functions, the
-- timestamp trigger). Written for kinto-rs from the documented facts of Kinto 26 so that Kinto and
-- kinto-rs can share one database. Run once on an empty database by `kinto migrate`.
SET client_min_messages TO ERROR;

-- Milliseconds since the epoch <-> TIMESTAMP (UTC, without time zone).
CREATE OR REPLACE FUNCTION as_epoch(ts TIMESTAMP) RETURNS BIGINT AS $$
BEGIN
    RETURN (EXTRACT(EPOCH FROM ts) * 1000)::BIGINT;
END;
$$ LANGUAGE plpgsql IMMUTABLE;

CREATE OR REPLACE FUNCTION from_epoch(epoch BIGINT) RETURNS TIMESTAMP AS $$
BEGIN
    RETURN TIMESTAMP WITH TIME ZONE 'epoch' + epoch * INTERVAL '1 millisecond';
END;
$$ LANGUAGE plpgsql IMMUTABLE;

-- Every object of every resource type; tombstones have deleted = TRUE.
-- Ids are URLs and names, not prose: the C collation keeps prefix LIKE on indexes.
CREATE TABLE IF NOT EXISTS objects (
    id TEXT COLLATE "C" NOT NULL,
    parent_id TEXT COLLATE "C" NOT NULL,
    resource_name TEXT COLLATE "C" NOT NULL,
    last_modified TIMESTAMP NOT NULL,
    data JSONB NOT NULL DEFAULT '{}'::JSONB,
    deleted BOOLEAN NOT NULL,
    PRIMARY KEY (id, parent_id, resource_name)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_objects_parent_id_resource_name_last_modified
    ON objects (parent_id, resource_name, last_modified DESC);
CREATE INDEX IF NOT EXISTS idx_objects_last_modified_epoch
    ON objects (as_epoch(last_modified));
CREATE INDEX IF NOT EXISTS idx_objects_resource_name_parent_id_deleted
    ON objects (resource_name, parent_id, deleted);
CREATE INDEX IF NOT EXISTS idx_objects_parent_id_record_last_modified
    ON objects (parent_id, last_modified DESC)
    WHERE resource_name = 'record';
CREATE INDEX IF NOT EXISTS idx_objects_history_userid_and_resourcename
    ON objects ((data->'user_id'), (data->'resource_name'))
    WHERE resource_name = 'history';

-- The timestamp of lists read while empty.
CREATE TABLE IF NOT EXISTS timestamps (
    parent_id TEXT COLLATE "C" NOT NULL,
    resource_name TEXT COLLATE "C" NOT NULL,
    last_modified TIMESTAMP NOT NULL,
    PRIMARY KEY (parent_id, resource_name)
);

-- The timestamp rule of every write: the list's previous timestamp is the greatest of its objects
-- and of its `timestamps` row; "current" is the clock, raised to previous + 1 when not greater;
-- a row without last_modified, or with exactly the previous value, gets current.
DROP TRIGGER IF EXISTS tgr_objects_last_modified ON objects;

CREATE OR REPLACE FUNCTION bump_timestamp() RETURNS trigger AS $$
DECLARE
    previous BIGINT;
    current BIGINT;
BEGIN
    SELECT as_epoch(MAX(candidates.last_modified)) INTO previous
      FROM (
        (SELECT last_modified FROM objects
          WHERE parent_id = NEW.parent_id AND resource_name = NEW.resource_name
          ORDER BY last_modified DESC LIMIT 1)
        UNION
        (SELECT last_modified FROM timestamps
          WHERE parent_id = NEW.parent_id AND resource_name = NEW.resource_name)
      ) AS candidates;

    current := as_epoch(clock_timestamp()::TIMESTAMP);
    IF previous IS NOT NULL AND previous >= current THEN
        current := previous + 1;
    END IF;

    IF NEW.last_modified IS NULL
       OR (previous IS NOT NULL AND as_epoch(NEW.last_modified) = previous) THEN
        NEW.last_modified := from_epoch(current);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tgr_objects_last_modified
    BEFORE INSERT OR UPDATE OF data ON objects
    FOR EACH ROW EXECUTE PROCEDURE bump_timestamp();

-- Schema versions, one row per applied version (the highest wins).
CREATE TABLE IF NOT EXISTS metadata (
    name VARCHAR(128) NOT NULL,
    value VARCHAR(512) NOT NULL
);
INSERT INTO metadata (name, value) VALUES ('created_at', NOW()::TEXT);
INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '26');
