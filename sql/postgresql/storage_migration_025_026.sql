-- Storage schema 25 -> 26: the trigger orders by the raw last_modified column (so the composite
-- index serves it) instead of as_epoch(last_modified). The expression index stays.
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

INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '26');
