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
    /// As `update`, only while the object is still as the caller read it: `read` is its
    /// `last_modified` then (every write of an object moves it forward), `None` when there was no
    /// live object. `None` (nothing written) when another write came between: the caller decided
    /// on a state that is gone.
    fn update_if(
        &mut self,
        list: ListRef,
        id: &str,
        obj: Object,
        read: Option<i64>,
    ) -> Result<Option<Object>>;
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
    /// timestamp, in page order), returns the tombstones. `parent_id` may contain `*` wildcards
    /// (other characters are literal) and `resource_name` may be `"*"` (every type);
    /// with `with_deleted` false, rows are removed physically, and with an empty query (a
    /// cascade) the lists' tombstones too.
    fn delete_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
        with_deleted: bool,
    ) -> Result<Vec<Object>>;
    /// Removes tombstones (all, or older than `before`) of matching lists (`*` wildcards as in
    /// `delete_all`); returns the count.
    fn purge_deleted(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        before: Option<i64>,
    ) -> Result<usize>;
    /// Removes the tombstones of each matching list but its `max_retained` most recent ones
    /// (`kinto purge-deleted RESOURCE... MAX_RETAINED`); returns the count.
    fn purge_deleted_retaining(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        max_retained: usize,
    ) -> Result<usize>;
    /// Objects of the list matching the query. `parent_id` may contain `*` wildcards, and
    /// `resource_name` may be `"*"`. Pagination rules use [`Filter::missing`] for fields the
    /// last object lacked.
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
    /// Number of tombstones of matching lists (`parent_id` may contain `*`), for `__counters__`.
    /// The default reads them; backends answer with a count query.
    fn count_tombstones(&mut self, resource_name: &str, parent_id: &str) -> Result<usize> {
        let query = ListQuery {
            include_deleted: true,
            ..ListQuery::default()
        };
        let all = self.list_all(resource_name, parent_id, &query)?;
        Ok(all
            .iter()
            .filter(|o| o.get("deleted") == Some(&Value::Bool(true)))
            .count())
    }
}

/// One database transaction carrying the storage and permission roles.
///
/// Both backends open the database transaction lazily, just before the first write: reads before
/// it run in autocommit (one round trip each, no `BEGIN`/`COMMIT`), which under READ COMMITTED
/// sees the same data a transaction would. Dropping an uncommitted transaction rolls it back.
pub trait Transaction: Storage + Permission {
    fn commit(self: Box<Self>) -> Result<()>;
    /// The caller's promise that its next object write (`create`, `update`) is its last
    /// statement: a backend may send the `COMMIT` with that write (PostgreSQL: one round trip
    /// and the list lock held for no round trip at all), and `commit` then has nothing left to
    /// do. A `create` whose id turns out taken then fails with a conflict, so the promise is
    /// for fresh ids only; any statement after such a write fails.
    /// No default: a wrapper that forgot to delegate it would silently lose the speed.
    fn commit_with_next_write(&mut self);
    fn rollback(self: Box<Self>) -> Result<()>;
    /// Begins the write transaction now, holding the list's write lock (the one every write
    /// takes), so that a read-check-write sequence (`If-Match`, PATCH) is not interleaved with
    /// another worker's write to that list.
    /// No default: a wrapper that forgot to delegate it would silently lose the lock.
    fn lock_list(&mut self, list: ListRef) -> Result<()>;
    /// Object, ACEs, principals, permission check and parents in one round trip (PostgreSQL);
    /// the default runs the equivalent queries one after the other.
    fn read_object(&mut self, req: &ReadRequest) -> Result<ReadResult> {
        if let Some(list) = req.lock {
            self.lock_list(list)?;
        }
        read_object_by_parts(self, req)
    }
    /// A plural read in one round trip where the backend can (PostgreSQL): principals,
    /// permission check, parents, list timestamp, page and count. The default runs the
    /// equivalent queries one after the other.
    fn read_list(&mut self, req: &ListRequest) -> Result<ListResult> {
        read_list_by_parts(self, req)
    }
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

pub mod jsonb;
mod page;
pub use page::PageObject;
pub(crate) mod pg_inline;
mod pg_query;
pub mod postgresql;
pub mod sqlite;
pub(crate) mod sqlite_query;

use crate::permission::ObjectPermissions;
use crate::settings::{BackendKind, Settings};
use std::collections::BTreeSet;

/// Builds the storage + permission backend of a worker (call after fork: connections are opened
/// lazily, so a database that is down does not prevent starting).
pub fn connect(settings: &Settings) -> std::result::Result<Box<dyn Backend>, String> {
    match settings.storage.kind {
        BackendKind::Sqlite => Ok(Box::new(sqlite::SqliteBackend::open(
            &settings.storage,
            settings.readonly,
        )?)),
        BackendKind::PostgreSql => Ok(Box::new(postgresql::PgBackend::open(
            &settings.storage,
            settings.readonly,
        )?)),
    }
}

/// The marker of a field the last object of a page did not have (Kinto's `MISSING`), for
/// pagination rules: build the filter with [`Filter::missing`]. Objects and arrays never occur as
/// pagination values (the token rejects them), so this value cannot collide with real data.
const MISSING_KEY: &str = "$kinto-rs:missing";

impl Filter {
    /// A pagination filter against a field absent from the last object of the previous page.
    pub fn missing(field: &str, op: FilterOp) -> Filter {
        let mut marker = Map::new();
        marker.insert(MISSING_KEY.to_string(), Value::Bool(true));
        Filter {
            field: field.to_string(),
            op,
            value: Value::Object(marker),
        }
    }

    /// True for filters built by [`Filter::missing`].
    pub fn is_missing(&self) -> bool {
        matches!(&self.value, Value::Object(m) if m.len() == 1 && m.contains_key(MISSING_KEY))
    }
}

/// A whole object read in one round trip where the backend can (record/collection GET): the
/// object, its ACEs, the caller's principals (from `user_principals`) and the permission check.
pub struct ReadRequest<'a> {
    pub list: ListRef<'a>,
    pub id: &'a str,
    /// The object URI, key of its ACEs (`/buckets/b/collections/c/records/r`).
    pub object_uri: &'a str,
    /// User ids whose `user_principals` rows are added to `principals` (the user id and
    /// `system.Authenticated` for an authenticated caller; empty for anonymous).
    pub user_ids: &'a [String],
    /// Principals known without the database (`system.Everyone`, the user id, ...).
    pub principals: &'a BTreeSet<String>,
    /// Candidate `(object_uri, permission)` pairs that grant the access (section 6.2).
    pub bound_permissions: &'a [(String, String)],
    /// Parent objects whose existence is checked: `(list, id)`.
    pub parents: &'a [(ListRef<'a>, &'a str)],
    /// Take this list's write lock first (`Transaction::lock_list`), so that what is read holds
    /// until the transaction commits: the read of a write request.
    pub lock: Option<ListRef<'a>>,
}

/// Answer to a [`ReadRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReadResult {
    /// The live object, or `None`.
    pub object: Option<Object>,
    /// The object's ACEs.
    pub permissions: ObjectPermissions,
    /// `principals` of the request plus the groups of `user_ids`.
    pub principals: BTreeSet<String>,
    /// Whether one of the principals holds one of the bound permissions.
    pub allowed: bool,
    /// One flag per requested parent: a live object exists.
    pub parents_exist: Vec<bool>,
}

/// A plural read (GET/HEAD of a list) in one call: see [`Transaction::read_list`].
pub struct ListRequest<'a> {
    pub resource_name: &'a str,
    pub parent_id: &'a str,
    /// Filters, sorting, pagination rules, limit and `include_deleted` of the page.
    pub query: &'a ListQuery,
    /// Also count the live objects matching the filters (`Total-Objects` of HEAD).
    pub with_count: bool,
    /// As in [`ReadRequest`]: user ids whose groups are looked up, known principals, the
    /// `(object_uri, permission)` pairs granting read on the whole list, parents to check.
    pub user_ids: &'a [String],
    pub principals: &'a BTreeSet<String>,
    pub bound_permissions: &'a [(String, String)],
    pub parents: &'a [(ListRef<'a>, &'a str)],
}

/// Answer to a [`ListRequest`]. The timestamp, page and count are only computed when the caller
/// is `allowed` and every parent exists (so a denied or dangling read never creates a list
/// timestamp); otherwise they are `None` / empty and the API takes its slower path (restricted
/// views of 6.5, 404 of a missing parent).
#[derive(Debug, Clone, PartialEq)]
pub struct ListResult {
    pub principals: BTreeSet<String>,
    pub allowed: bool,
    /// One entry per requested parent: the live object (the collection of records gives the
    /// list's `cache_expires`), or `None`.
    pub parents: Vec<Option<Object>>,
    /// The list timestamp (2.5), created on first read like [`Storage::resource_timestamp`].
    /// Like `objects` and `count`, read only when `allowed` and every parent exists.
    pub timestamp: Option<i64>,
    pub objects: Vec<PageObject>,
    pub count: Option<usize>,
}

/// The default, several-query implementation of [`Transaction::read_list`].
pub fn read_list_by_parts<T: Transaction + ?Sized>(
    tx: &mut T,
    req: &ListRequest,
) -> Result<ListResult> {
    let mut principals = req.principals.clone();
    for user_id in req.user_ids {
        principals.extend(tx.get_user_principals(user_id)?);
    }
    let allowed = tx.check_permission(&principals, req.bound_permissions)?;
    let mut parents = Vec::with_capacity(req.parents.len());
    for (list, id) in req.parents {
        parents.push(tx.get(*list, id)?);
    }
    let mut result = ListResult {
        principals,
        allowed,
        parents,
        timestamp: None,
        objects: Vec::new(),
        count: None,
    };
    if allowed && result.parents.iter().all(Option::is_some) {
        let list = ListRef {
            resource_name: req.resource_name,
            parent_id: req.parent_id,
        };
        result.timestamp = Some(tx.resource_timestamp(list)?);
        result.objects = tx
            .list_all(req.resource_name, req.parent_id, req.query)?
            .into_iter()
            .map(PageObject::Parsed)
            .collect();
        if req.with_count {
            result.count =
                Some(tx.count_all(req.resource_name, req.parent_id, &req.query.filters)?);
        }
    }
    Ok(result)
}

/// The default, several-query implementation of [`Transaction::read_object`].
pub fn read_object_by_parts<T: Transaction + ?Sized>(
    tx: &mut T,
    req: &ReadRequest,
) -> Result<ReadResult> {
    let mut principals = req.principals.clone();
    for user_id in req.user_ids {
        principals.extend(tx.get_user_principals(user_id)?);
    }
    let allowed = tx.check_permission(&principals, req.bound_permissions)?;
    let mut parents_exist = Vec::with_capacity(req.parents.len());
    for (list, id) in req.parents {
        parents_exist.push(tx.get(*list, id)?.is_some());
    }
    let object = tx.get(req.list, req.id)?;
    let permissions = tx
        .get_objects_permissions(&[req.object_uri.to_string()])?
        .pop()
        .unwrap_or_default();
    Ok(ReadResult {
        object,
        permissions,
        principals,
        allowed,
        parents_exist,
    })
}

/// Milliseconds since the epoch, from the wall clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Kinto's timestamp rule (trigger `bump_timestamp`): `previous` is the list timestamp, `supplied`
/// the (already validated) replication value.
pub(crate) fn assign_timestamp(previous: Option<i64>, now: i64, supplied: Option<i64>) -> i64 {
    let current = match previous {
        Some(p) if p >= now => p + 1,
        _ => now,
    };
    match supplied {
        Some(v) if Some(v) != previous => v,
        _ => current,
    }
}

/// Splits an object into its stored `data` (without `id` and `last_modified`) and the
/// replication hint (an integer `last_modified`).
pub(crate) fn split_object(mut obj: Object) -> (Object, Option<i64>) {
    obj.remove("id");
    let hint = obj.remove("last_modified").and_then(|v| v.as_i64());
    (obj, hint)
}

/// Rebuilds an object from its stored row.
pub(crate) fn build_object(mut data: Object, id: &str, last_modified: i64) -> Object {
    data.insert("id".into(), Value::String(id.to_string()));
    data.insert("last_modified".into(), Value::from(last_modified));
    data
}

/// The JSON text of an object's fields, as stored (serialised in place, not through a copy of
/// the map).
pub(crate) fn data_text(data: &Object) -> String {
    // A map of JSON values always serialises.
    serde_json::to_string(data).unwrap_or_default()
}

/// The tombstone returned by deletes.
pub(crate) fn tombstone(id: &str, last_modified: i64) -> Object {
    let mut obj = Map::new();
    obj.insert("deleted".into(), Value::Bool(true));
    build_object(obj, id, last_modified)
}

/// Kinto's `like_` value: `*` wildcards, implicitly `*v*` without any; `%`/`_` stay SQL wildcards.
pub(crate) fn like_pattern(value: &Value) -> String {
    let raw = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let raw = if raw.contains('*') {
        raw
    } else {
        format!("*{raw}*")
    };
    raw.replace('*', "%")
}

/// A `*`-wildcard id pattern as a `LIKE ... ESCAPE '\'` pattern (other characters literal, unlike
/// Kinto which lets `_` and `%` of ids act as wildcards).
pub(crate) fn escape_like(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The byte-order range holding every id matching a `*` pattern: `[prefix, prefix + U+10FFFF)`,
/// where the prefix is the text before the first `*`. Added next to `LIKE` so that PostgreSQL's
/// generic plans (prepared statements) still scan the C-collation indexes by range.
pub(crate) fn like_range(pattern: &str) -> (String, String) {
    let prefix = pattern.split('*').next().unwrap_or("");
    (prefix.to_string(), format!("{prefix}\u{10FFFF}"))
}

/// JSON truthiness as Python's (for `has_` values).
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `contains_`/`contains_any_` values: a non-array value is a one-element array.
pub(crate) fn as_array(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

/// The `id` filter value as text (Kinto turns integers into strings).
pub(crate) fn id_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `last_modified` filter value as an integer (also from a numeric string).
pub(crate) fn epoch_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim_matches('"').parse().ok(),
        _ => None,
    }
}

/// The candidates of `in_`/`exclude_` (a JSON array, or a single value).
pub(crate) fn candidates(value: &Value) -> Vec<Value> {
    as_array(value)
}
