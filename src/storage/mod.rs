//! The storage role: Kinto's objects (buckets, collections, groups, records, tombstones) and the
//! per-list timestamps, behind one trait with a SQLite and a PostgreSQL implementation.
//!
//! A request (or a whole batch) runs in one [`Transaction`], which carries the storage and the
//! permission roles on one connection, as Kinto shares one transaction between them.

use crate::permission::Permission;
use serde_json::{Map, Value};

/// An object as stored: the JSON body plus `id` and `last_modified` (and `deleted` on tombstones).
pub type Object = Map<String, Value>;

/// Errors of every backend role. Mapped once to Kinto's error body by `crate::error`.
#[derive(Debug)]
pub enum BackendError {
    /// Connection refused, timeout, pool exhausted, unexpected SQL error: 503 errno 201.
    Unavailable(String),
    /// Integrity conflict (duplicate timestamp in a list, concurrent writes): 409 errno 122.
    Conflict(String),
    /// Reading a list timestamp that was never initialised on a read-only database: 503.
    ReadOnly,
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Identifies one list: a resource type under a parent (`("record", "/buckets/b/collections/c")`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListRef<'a> {
    pub resource_name: &'a str,
    pub parent_id: &'a str,
}

/// One filter of a plural query (`?field=value`, `?gt_field=value`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Dotted field path (`title`, `author.name`); `id` and `last_modified` are columns.
    pub field: String,
    pub op: FilterOp,
    pub value: Value,
}

/// Kinto's filter operators (section 3.8 of the API contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    NotEq,
    Lt,
    Gt,
    /// `min_`: greater or equal.
    Min,
    /// `max_`: lower or equal.
    Max,
    /// `in_`: value is a JSON array of candidates.
    In,
    NotIn,
    /// `like_`: value is a string pattern with `*` wildcards.
    Like,
    /// `has_`: value is a boolean (the field exists / does not).
    Has,
    /// `contains_`: value is a JSON array; the field (an array) contains all of them.
    Contains,
    /// `contains_any_`: the field (an array) contains any of them.
    ContainsAny,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    pub field: String,
    pub descending: bool,
}

/// A plural query: filters (AND), sort keys, pagination rules (an OR of AND-groups, built from the
/// last object of the previous page), a limit, and whether tombstones are included.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filters: Vec<Filter>,
    pub sorting: Vec<Sort>,
    pub pagination_rules: Vec<Vec<Filter>>,
    pub limit: Option<usize>,
    pub include_deleted: bool,
}

/// The storage role, on one transaction. Mirrors `kinto.core.storage.StorageBase`.
pub trait Storage {
    /// The list timestamp (2.5), initialised and persisted on first read.
    fn resource_timestamp(&mut self, list: ListRef) -> Result<i64>;
    /// Timestamps of every list of a resource type, as `(parent_id, timestamp)` pairs.
    fn all_resources_timestamps(&mut self, resource_name: &str) -> Result<Vec<(String, i64)>>;
    /// Creates an object (its `id` set by the caller); `Ok(Err(existing))` when a live object with
    /// that id exists. A tombstone with that id is replaced. `last_modified` in `obj` is a
    /// replication hint (2.5 rule 1).
    fn create(&mut self, list: ListRef, obj: Object)
        -> Result<std::result::Result<Object, Object>>;
    /// The live object, or `None` (tombstones are not returned).
    fn get(&mut self, list: ListRef, id: &str) -> Result<Option<Object>>;
    /// Creates or replaces (revives a tombstone); returns the stored object.
    fn update(&mut self, list: ListRef, id: &str, obj: Object) -> Result<Object>;
    /// Deletes a live object, leaving a tombstone (unless `with_deleted` is false); returns the
    /// tombstone, or `None` when there was no live object. `last_modified` is a replication hint.
    fn delete(
        &mut self,
        list: ListRef,
        id: &str,
        with_deleted: bool,
        last_modified: Option<i64>,
    ) -> Result<Option<Object>>;
    /// Deletes the live objects matching the query (each tombstone gets its own increasing
    /// timestamp, in page order), returns the tombstones. `parent_id` may contain `*` wildcards;
    /// with `with_deleted` false, rows (and tombstones) are removed physically (cascades).
    fn delete_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
        with_deleted: bool,
    ) -> Result<Vec<Object>>;
    /// Removes tombstones (all, or older than `before`) of matching lists; returns the count.
    fn purge_deleted(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        before: Option<i64>,
    ) -> Result<usize>;
    /// Objects of the list matching the query. `parent_id` may contain `*` wildcards.
    fn list_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
    ) -> Result<Vec<Object>>;
    /// Number of live objects matching the filters (pagination and limit ignored).
    fn count_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        filters: &[Filter],
    ) -> Result<usize>;
}

/// One database transaction carrying the storage and permission roles.
pub trait Transaction: Storage + Permission {
    fn commit(self: Box<Self>) -> Result<()>;
    fn rollback(self: Box<Self>) -> Result<()>;
}

/// A storage + permission backend: hands out transactions on pooled connections.
/// Built in each worker after fork.
pub trait Backend: Send + Sync {
    fn begin(&self) -> Result<Box<dyn Transaction + '_>>;
    /// Health check for `/__heartbeat__` (read-only, never races).
    fn ping(&self) -> bool;
    /// Creates or upgrades the schema (`kinto migrate`); with `dry_run`, returns the SQL instead.
    fn migrate(&self, dry_run: bool) -> Result<Vec<String>>;
    /// Removes everything (`POST /__flush__`).
    fn flush(&self) -> Result<()>;
}
