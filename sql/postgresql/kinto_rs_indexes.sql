-- kinto-rs: an index Kinto's schema does not have (API.md 11.4 allows it; Kinto ignores it).
-- Equality filters on object fields (`?n=5`) are written as JSONB containment of the object's
-- data under its list's key (`jsonb_set('{}', ARRAY['<parent_id> <resource_name>'], data)`), so
-- that each (list, path, value) is one key of this index: a filtered list is one lookup of the
-- matching objects of that list, whatever the other lists hold, and reads no list-wide posting
-- list. Not partial: generic plans must match it. Needs no extension. Replaces the indexes of
-- earlier kinto-rs versions.
CREATE INDEX IF NOT EXISTS idx_objects_data_by_list ON objects USING gin ((jsonb_set('{}'::jsonb, ARRAY[parent_id || ' ' || resource_name], data)) jsonb_path_ops);
DROP INDEX IF EXISTS idx_objects_list_data;
DROP INDEX IF EXISTS idx_objects_data_jsonb_path_ops;
