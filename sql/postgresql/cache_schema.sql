-- kinto-rs: Kinto's PostgreSQL cache schema (unversioned, idempotent).
SET client_min_messages TO ERROR;

-- value: JSON text; ttl: expiry (UTC), NULL for none.
CREATE TABLE IF NOT EXISTS cache (
    key VARCHAR(256) PRIMARY KEY,
    value TEXT NOT NULL,
    ttl TIMESTAMP DEFAULT NULL
);
CREATE INDEX IF NOT EXISTS idx_cache_ttl ON cache (ttl);

-- now() + seconds, NULL for NULL.
CREATE OR REPLACE FUNCTION sec2ttl(seconds FLOAT) RETURNS TIMESTAMP AS $$
BEGIN
    IF seconds IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN now() + (seconds || ' SECOND')::INTERVAL;
END;
$$ LANGUAGE plpgsql;
