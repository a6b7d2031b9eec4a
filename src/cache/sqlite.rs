//! The cache role on SQLite: the `cache` table (JSON text values, expiry in epoch seconds),
//! autocommitted, shared by every worker process using the same database file.

use super::{now_seconds, Cache};
use crate::settings::BackendSettings;
use crate::storage::sqlite::{parse_url, sql_err, SqlitePool, Target};
use crate::storage::{BackendError, Result};
use rusqlite::{params, OptionalExtension};
use serde_json::Value;

pub struct SqliteCache {
    pool: SqlitePool,
    prefix: String,
}

impl SqliteCache {
    pub fn open(settings: &BackendSettings, prefix: String) -> SqliteCache {
        SqliteCache {
            pool: SqlitePool::new(settings),
            prefix,
        }
    }

    /// The cache of a server whose storage is `storage`: when both name the same SQLite file,
    /// the cache lives in `<file>.cache` instead, because a request's open storage transaction
    /// holds the file's write lock and its autocommitted cache writes (pagination nonces)
    /// would otherwise wait for it.
    pub fn beside(
        settings: &BackendSettings,
        storage: &BackendSettings,
        prefix: String,
    ) -> SqliteCache {
        let target = parse_url(&settings.url);
        match &target {
            Target::File(path)
                if storage.kind == settings.kind && parse_url(&storage.url) == target =>
            {
                let mut own = settings.clone();
                own.url = format!("sqlite:///{}.cache", path.display());
                SqliteCache::open(&own, prefix)
            }
            _ => SqliteCache::open(settings, prefix),
        }
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

impl Cache for SqliteCache {
    fn get(&self, key: &str) -> Result<Option<Value>> {
        let conn = self.pool.get()?;
        let text: Option<String> = conn
            .prepare_cached("SELECT value FROM cache WHERE key = ? AND (ttl IS NULL OR ttl > ?)")
            .and_then(|mut s| {
                s.query_row(params![self.key(key), now_seconds()], |r| r.get(0))
                    .optional()
            })
            .map_err(sql_err)?;
        decode(text)
    }

    fn set(&self, key: &str, value: &Value, ttl_seconds: Option<f64>) -> Result<()> {
        let conn = self.pool.get()?;
        let now = now_seconds();
        // Expired rows are swept on writes, keeping reads read-only.
        conn.prepare_cached("DELETE FROM cache WHERE ttl IS NOT NULL AND ttl <= ?")
            .and_then(|mut s| s.execute([now]))
            .map_err(sql_err)?;
        conn.prepare_cached(
            "INSERT INTO cache (key, value, ttl) VALUES (?, ?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, ttl = excluded.ttl",
        )
        .and_then(|mut s| {
            s.execute(params![
                self.key(key),
                value.to_string(),
                ttl_seconds.map(|t| now + t)
            ])
        })
        .map_err(sql_err)?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<Option<Value>> {
        let conn = self.pool.get()?;
        let row: Option<(String, Option<f64>)> = conn
            .prepare_cached("DELETE FROM cache WHERE key = ? RETURNING value, ttl")
            .and_then(|mut s| {
                s.query_row([self.key(key)], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(sql_err)?;
        let live = row.filter(|(_, ttl)| ttl.is_none_or(|t| t > now_seconds()));
        decode(live.map(|(value, _)| value))
    }

    fn expire(&self, key: &str, ttl_seconds: f64) -> Result<()> {
        let conn = self.pool.get()?;
        conn.prepare_cached("UPDATE cache SET ttl = ? WHERE key = ?")
            .and_then(|mut s| s.execute(params![now_seconds() + ttl_seconds, self.key(key)]))
            .map_err(sql_err)?;
        Ok(())
    }

    fn ttl(&self, key: &str) -> Result<i64> {
        let conn = self.pool.get()?;
        let ttl: Option<Option<f64>> = conn
            .prepare_cached("SELECT ttl FROM cache WHERE key = ?")
            .and_then(|mut s| s.query_row([self.key(key)], |r| r.get(0)).optional())
            .map_err(sql_err)?;
        Ok(match ttl.flatten() {
            Some(expiry) if expiry > now_seconds() => (expiry - now_seconds()).floor() as i64,
            _ => -1,
        })
    }

    fn flush(&self) -> Result<()> {
        let conn = self.pool.get()?;
        conn.execute("DELETE FROM cache", []).map_err(sql_err)?;
        Ok(())
    }

    fn migrate(&self, dry_run: bool) -> Result<Vec<String>> {
        // Opening a connection creates every table (idempotent).
        if !dry_run {
            self.pool.get()?;
        }
        Ok(vec![crate::storage::sqlite::SCHEMA.to_string()])
    }

    fn ping(&self) -> bool {
        self.pool
            .get()
            .and_then(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_err))
            .is_ok()
    }
}
