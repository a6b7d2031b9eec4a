-- Storage schema 23 -> 24: index for the history plugin's trimming.
CREATE INDEX IF NOT EXISTS idx_objects_history_userid_and_resourcename
    ON objects ((data->'user_id'), (data->'resource_name'))
    WHERE resource_name = 'history';

INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '24');
