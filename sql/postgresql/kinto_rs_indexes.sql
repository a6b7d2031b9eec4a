-- kinto-rs: an index Kinto's schema does not have (API.md 11.4 allows it; Kinto ignores it).
-- Equality filters on object fields (`?n=5`) are written as JSONB containment (`data @> ...`).
-- With btree_gin the index also holds each object's list, so a filtered list is one index lookup
-- of the matching objects of that list, whatever the other lists hold. Not partial: generic
-- plans must match it. Replaces the unscoped index of earlier kinto-rs versions.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX IF NOT EXISTS idx_objects_list_data ON objects USING gin (parent_id, resource_name, data jsonb_path_ops);
DROP INDEX IF EXISTS idx_objects_data_jsonb_path_ops;
