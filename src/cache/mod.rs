//! The cache role: shared key/value entries with a TTL (pagination tokens, account verification),
//! autocommitted, shared by every worker process.

use crate::storage::Result;
use serde_json::Value;

pub trait Cache: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Value>>;
    fn set(&self, key: &str, value: &Value, ttl_seconds: Option<f64>) -> Result<()>;
    fn delete(&self, key: &str) -> Result<Option<Value>>;
    /// Sets the TTL of an existing key.
    fn expire(&self, key: &str, ttl_seconds: f64) -> Result<()>;
    /// Remaining seconds, or -1 when the key has no TTL or does not exist.
    fn ttl(&self, key: &str) -> Result<i64>;
    fn flush(&self) -> Result<()>;
    /// Health check for `/__heartbeat__`.
    fn ping(&self) -> bool;
    /// Creates the cache table when missing (`kinto migrate`, for a cache in another database
    /// than the storage); with `dry_run`, returns the SQL instead.
    fn migrate(&self, dry_run: bool) -> Result<Vec<String>>;
}

pub mod postgresql;
pub mod sqlite;

use crate::settings::{BackendKind, Settings};

/// Builds the cache backend of a worker (after fork; connects lazily). Keys are prefixed with
/// `cache_prefix` inside the backend, as Kinto does, so callers pass unprefixed keys.
pub fn connect(settings: &Settings) -> std::result::Result<Box<dyn Cache>, String> {
    let prefix = settings.cache_prefix.clone();
    match settings.cache.kind {
        BackendKind::Sqlite => Ok(Box::new(sqlite::SqliteCache::beside(
            &settings.cache,
            &settings.storage,
            prefix,
        ))),
        BackendKind::PostgreSql => Ok(Box::new(postgresql::PgCache::open(
            &settings.cache,
            prefix,
        )?)),
    }
}

/// Seconds since the epoch as a float (cache expiry times).
pub(crate) fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
