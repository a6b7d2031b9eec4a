-- Storage schema 24 -> 25: partial index for the timestamps of record lists.
CREATE INDEX IF NOT EXISTS idx_objects_parent_id_record_last_modified
    ON objects (parent_id, last_modified DESC)
    WHERE resource_name = 'record';

INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '25');
