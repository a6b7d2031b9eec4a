-- kinto-rs: an index Kinto's schema does not have (API.md 11.4 allows it; Kinto ignores it).
-- Equality filters on object fields (`?n=5`) are written as JSONB containment (`data @> ...`)
-- and use it instead of scanning the whole list. Not partial: generic plans must match it.
-- Used where the btree_gin extension cannot be created (see kinto_rs_indexes.sql).
CREATE INDEX IF NOT EXISTS idx_objects_data_jsonb_path_ops ON objects USING gin (data jsonb_path_ops);
