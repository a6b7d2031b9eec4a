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
}
