//! The cache role on PostgreSQL: Kinto's `cache` table (JSON text values, `ttl` expiry in UTC),
//! autocommitted on its own pool. Reads never write: expired rows are ignored by reads and swept
//! by writes.

use super::Cache;
use crate::settings::BackendSettings;
use crate::storage::postgresql::{PgManager, PgPool, CACHE_SCHEMA};
use crate::storage::{BackendError, Result};
use serde_json::Value;

pub struct PgCache {
    pool: PgPool,
    prefix: String,
}

impl PgCache {
    /// Prepares the pool (no connection yet).
    pub fn open(settings: &BackendSettings, prefix: String) -> std::result::Result<Self, String> {
        Ok(PgCache {
            pool: PgPool::new(settings)?,
            prefix,
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<PgManager>> {
        self.pool.get()
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }
}

fn decode(text: Option<String>) -> Result<Option<Value>> {
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| BackendError::Unavailable(format!("corrupt cache value: {e}")))
    })
    .transpose()
}

/// `now() + seconds` in UTC, without time zone (the body of `sec2ttl`, inlined).
const TTL_FROM_SECONDS: &str = "(now() AT TIME ZONE 'UTC') + ($3::FLOAT8 * INTERVAL '1 second')";

impl Cache for PgCache {
    fn get(&self, key: &str) -> Result<Option<Value>> {
        let row = self.conn()?.query_opt(
            "SELECT value FROM cache WHERE key = $1 \
             AND (ttl IS NULL OR ttl > now() AT TIME ZONE 'UTC')",
            &[&self.key(key)],
        )?;
        decode(row.map(|r| r.get(0)))
    }

    fn set(&self, key: &str, value: &Value, ttl_seconds: Option<f64>) -> Result<()> {
        let sql = format!(
            "WITH swept AS (DELETE FROM cache WHERE ttl < now() AT TIME ZONE 'UTC' AND key <> $1) \
             INSERT INTO cache (key, value, ttl) VALUES ($1, $2, {TTL_FROM_SECONDS}) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, ttl = EXCLUDED.ttl"
        );
        self.conn()?
            .execute(&sql, &[&self.key(key), &value.to_string(), &ttl_seconds])?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<Option<Value>> {
        let row = self.conn()?.query_opt(
            "DELETE FROM cache WHERE key = $1 RETURNING value, \
             (ttl IS NULL OR ttl > now() AT TIME ZONE 'UTC')",
            &[&self.key(key)],
        )?;
        decode(row.filter(|r| r.get::<_, bool>(1)).map(|r| r.get(0)))
    }

    fn expire(&self, key: &str, ttl_seconds: f64) -> Result<()> {
        self.conn()?.execute(
            "UPDATE cache SET ttl = (now() AT TIME ZONE 'UTC') + ($2::FLOAT8 * INTERVAL '1 second') \
             WHERE key = $1",
            &[&self.key(key), &ttl_seconds],
        )?;
        Ok(())
    }

    fn ttl(&self, key: &str) -> Result<i64> {
        let row = self.conn()?.query_opt(
            "SELECT floor(EXTRACT(EPOCH FROM (ttl - now() AT TIME ZONE 'UTC')))::BIGINT \
             FROM cache WHERE key = $1 AND ttl > now() AT TIME ZONE 'UTC'",
            &[&self.key(key)],
        )?;
        Ok(row.map(|r| r.get(0)).unwrap_or(-1))
    }

    fn flush(&self) -> Result<()> {
        self.conn()?.execute("DELETE FROM cache", &[])?;
        Ok(())
    }

    fn migrate(&self, dry_run: bool) -> Result<Vec<String>> {
        let mut conn = self.conn()?;
        let exists: bool = conn
            .query_one("SELECT to_regclass('cache') IS NOT NULL", &[])?
            .get(0);
        if exists {
            return Ok(Vec::new());
        }
        if !dry_run {
            conn.batch(CACHE_SCHEMA)?;
        }
        Ok(vec![CACHE_SCHEMA.to_string()])
    }

    fn ping(&self) -> bool {
        self.conn()
            .and_then(|mut c| c.query_one("SELECT 1", &[]))
            .is_ok()
    }
}
