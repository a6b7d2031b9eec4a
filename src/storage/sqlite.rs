//! The SQLite backend: Kinto's logical schema in one database file shared by every worker
//! process (WAL, busy timeout), or `:memory:` for a single worker. Timestamps follow Kinto's
//! trigger rule, computed here under `BEGIN IMMEDIATE` (the database write lock serialises every
//! writer of every process, so list timestamps are strictly increasing without conflicts).

use super::{
    assign_timestamp, build_object, data_text, jsonb, now_ms, split_object, sqlite_query,
    tombstone, Backend, BackendError, ListQuery, ListRef, Object, Result, Storage, Transaction,
};
use crate::settings::BackendSettings;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The schema, run (idempotently) on every new connection.
pub const SCHEMA: &str = include_str!("../../sql/sqlite/schema.sql");
/// The storage schema version this code reads and writes.
pub const STORAGE_SCHEMA_VERSION: i64 = 26;

/// Maps SQLite errors: integrity violations are conflicts (409), the rest is unavailability.
pub(crate) fn sql_err(e: rusqlite::Error) -> BackendError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            BackendError::Conflict(e.to_string())
        }
        _ => BackendError::Unavailable(e.to_string()),
    }
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Memory,
}

/// Parses `sqlite:///relative.db`, `sqlite:////abs/path.db`, `:memory:` (or an empty URL, or a
/// bare path).
pub fn parse_url(url: &str) -> Target {
    let rest = url.strip_prefix("sqlite://").unwrap_or(url);
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() || rest == ":memory:" || url == ":memory:" {
        return Target::Memory;
    }
    if url.starts_with("sqlite://") {
        // After `sqlite:///`, a further `/` starts an absolute path.
        return Target::File(PathBuf::from(rest));
    }
    Target::File(PathBuf::from(url))
}

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

/// A small connection pool: at most `max` connections (one for `:memory:`, where each connection
/// would otherwise be a separate database), waiting up to `timeout` for a free one.
pub(crate) struct SqlitePool {
    target: Target,
    max: usize,
    timeout: Duration,
    state: Mutex<PoolState>,
    freed: Condvar,
}

impl SqlitePool {
    pub(crate) fn new(settings: &BackendSettings) -> SqlitePool {
        let target = parse_url(&settings.url);
        let max = match target {
            Target::Memory => 1,
            Target::File(_) => settings.pool_size.max(1) as usize,
        };
        SqlitePool {
            target,
            max,
            timeout: Duration::from_secs(settings.pool_timeout.max(1)),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn open_connection(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match &self.target {
            Target::Memory => Connection::open_in_memory(),
            Target::File(path) => Connection::open_with_flags(path, flags),
        }
        .map_err(sql_err)?;
        conn.busy_timeout(self.timeout).map_err(sql_err)?;
        conn.set_prepared_statement_cache_capacity(128);
        if self.target != Target::Memory {
            conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                .map_err(sql_err)?;
            conn.execute_batch("PRAGMA synchronous=NORMAL")
                .map_err(sql_err)?;
        }
        register_functions(&conn).map_err(sql_err)?;
        check_version(&conn)?;
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        Ok(conn)
    }

    /// A connection, opened on demand; `Unavailable` when none is free within the timeout or the
    /// database cannot be opened.
    pub(crate) fn get(&self) -> Result<PooledConn<'_>> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(PooledConn {
                    conn: Some(conn),
                    pool: self,
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.open_connection() {
                    Ok(conn) => Ok(PooledConn {
                        conn: Some(conn),
                        pool: self,
                    }),
                    Err(e) => {
                        self.release(None);
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(BackendError::Unavailable("SQLite pool exhausted".into()));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn release(&self, conn: Option<Connection>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match conn {
            Some(conn) => state.idle.push(conn),
            None => state.open -= 1,
        }
        drop(state);
        self.freed.notify_one();
    }
}

/// A connection lent by the pool, returned on drop (closed if it is left in a transaction).
pub(crate) struct PooledConn<'a> {
    conn: Option<Connection>,
    pool: &'a SqlitePool,
}

impl Deref for PooledConn<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for PooledConn<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        let conn = self.conn.take().filter(|c| c.is_autocommit());
        self.pool.release(conn);
    }
}

/// The installed storage schema version, if any.
fn installed_version(conn: &Connection) -> Result<Option<i64>> {
    let has_metadata: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'metadata'",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    if !has_metadata {
        return Ok(None);
    }
    conn.query_row(
        "SELECT max(CAST(value AS INTEGER)) FROM metadata WHERE name = 'storage_schema_version'",
        [],
        |r| r.get(0),
    )
    .map_err(sql_err)
}

fn check_version(conn: &Connection) -> Result<()> {
    match installed_version(conn)? {
        Some(v) if v > STORAGE_SCHEMA_VERSION => Err(BackendError::Unavailable(format!(
            "storage schema version {v} is newer than the supported version \
             {STORAGE_SCHEMA_VERSION}: upgrade kinto-rs"
        ))),
        _ => Ok(()),
    }
}

/// The JSONB-semantics functions used by [`sqlite_query`].
fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    fn field(ctx: &rusqlite::functions::Context) -> rusqlite::Result<Option<Value>> {
        let data: Value = match ctx.get_raw(0).as_str_or_null()? {
            Some(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            None => return Ok(None),
        };
        let path = ctx.get_raw(1).as_str()?;
        Ok(jsonb::lookup(&data, path).cloned())
    }
    conn.create_scalar_function("kval", 2, flags, |ctx| {
        Ok(field(ctx)?.map(|v| jsonb::sort_key(&v)))
    })?;
    conn.create_scalar_function("ktext", 2, flags, |ctx| {
        Ok(field(ctx)?.and_then(|v| jsonb::text_form(&v)))
    })?;
    conn.create_scalar_function("kilike", 2, flags, |ctx| {
        let text = ctx.get_raw(0).as_str_or_null()?;
        let pattern = ctx.get_raw(1).as_str()?;
        Ok(text.map(|t| jsonb::ilike(t, pattern)))
    })?;
    conn.create_scalar_function("kcontains", 4, flags, |ctx| {
        let Some(Value::Array(items)) = field(ctx)? else {
            return Ok(false);
        };
        let wanted: Vec<Value> = serde_json::from_str(ctx.get_raw(2).as_str()?).unwrap_or_default();
        let any: i64 = ctx.get(3)?;
        Ok(if any == 1 {
            wanted.iter().any(|w| {
                items
                    .iter()
                    .any(|i| jsonb::sort_key(i) == jsonb::sort_key(w))
            })
        } else {
            jsonb::contains(&Value::Array(items), &Value::Array(wanted))
        })
    })?;
    Ok(())
}

/// The SQLite storage + permission backend.
pub struct SqliteBackend {
    pool: SqlitePool,
    readonly: bool,
}

impl SqliteBackend {
    /// Prepares the pool; the database is opened (and its schema created) on first use.
    pub fn open(settings: &BackendSettings, readonly: bool) -> std::result::Result<Self, String> {
        Ok(SqliteBackend {
            pool: SqlitePool::new(settings),
            readonly,
        })
    }
}

impl Backend for SqliteBackend {
    fn begin(&self) -> Result<Box<dyn Transaction + '_>> {
        Ok(Box::new(SqliteTx {
            conn: self.pool.get()?,
            begun: false,
            readonly: self.readonly,
        }))
    }

    fn ping(&self) -> bool {
        self.pool
            .get()
            .and_then(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(sql_err))
            .is_ok()
    }

    fn migrate(&self, dry_run: bool) -> Result<Vec<String>> {
        if dry_run {
            // Opening a connection would create the schema: only read the version.
            if let Target::File(path) = &self.pool.target {
                if path.exists() {
                    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                        .map_err(sql_err)?;
                    check_version(&conn)?;
                    if installed_version(&conn)? == Some(STORAGE_SCHEMA_VERSION) {
                        return Ok(Vec::new());
                    }
                }
            }
            return Ok(vec![SCHEMA.to_string()]);
        }
        let conn = self.pool.get()?;
        check_version(&conn)?;
        conn.execute_batch(SCHEMA).map_err(sql_err)?;
        Ok(vec![SCHEMA.to_string()])
    }

    fn flush(&self) -> Result<()> {
        let conn = self.pool.get()?;
        conn.execute_batch(
            "BEGIN IMMEDIATE; DELETE FROM objects; DELETE FROM timestamps; \
             DELETE FROM user_principals; DELETE FROM access_control_entries; COMMIT;",
        )
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            sql_err(e)
        })
    }
}

/// One request's transaction, begun (`BEGIN IMMEDIATE`) just before its first write.
pub struct SqliteTx<'a> {
    conn: PooledConn<'a>,
    begun: bool,
    readonly: bool,
}

impl SqliteTx<'_> {
    /// The connection, for reads.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The connection inside the write transaction.
    pub(crate) fn write(&mut self) -> Result<&Connection> {
        if !self.begun {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(sql_err)?;
            self.begun = true;
        }
        Ok(&self.conn)
    }

    fn list_max(&self, list: ListRef) -> Result<Option<i64>> {
        self.conn
            .prepare_cached(
                "SELECT max(m) FROM (SELECT max(last_modified) AS m FROM objects \
                 WHERE parent_id = ?1 AND resource_name = ?2 UNION ALL \
                 SELECT last_modified FROM timestamps WHERE parent_id = ?1 AND resource_name = ?2)",
            )
            .and_then(|mut s| {
                s.query_row(params![list.parent_id, list.resource_name], |r| r.get(0))
            })
            .map_err(sql_err)
    }

    fn live_timestamp(&self, list: ListRef, id: &str) -> Result<Option<i64>> {
        self.conn
            .prepare_cached(
                "SELECT last_modified FROM objects \
                 WHERE id = ? AND parent_id = ? AND resource_name = ? AND NOT deleted",
            )
            .and_then(|mut s| {
                s.query_row(params![id, list.parent_id, list.resource_name], |r| {
                    r.get(0)
                })
                .optional()
            })
            .map_err(sql_err)
    }

    /// Writes `obj` over the live object last modified at `current` (if any).
    fn replace(
        &mut self,
        list: ListRef,
        id: &str,
        obj: Object,
        current: Option<i64>,
    ) -> Result<Object> {
        let (data, hint) = split_object(obj);
        // A replication value only counts when newer than the existing object (2.5 rule 1).
        let hint = hint.filter(|h| current.is_none_or(|c| *h > c));
        let ts = assign_timestamp(self.list_max(list)?, now_ms(), hint);
        self.upsert(list, id, &data, ts)?;
        Ok(build_object(data, id, ts))
    }

    fn upsert(&mut self, list: ListRef, id: &str, data: &Object, ts: i64) -> Result<()> {
        let text = data_text(data);
        self.write()?
            .prepare_cached(
                "INSERT INTO objects (id, parent_id, resource_name, last_modified, data, deleted) \
                 VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT (id, parent_id, resource_name) DO UPDATE \
                 SET last_modified = excluded.last_modified, data = excluded.data, deleted = 0",
            )
            .and_then(|mut s| s.execute(params![id, list.parent_id, list.resource_name, ts, text]))
            .map_err(sql_err)?;
        Ok(())
    }

    fn query_rows(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<ObjectRow>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(sql_err)?;
        let rows = stmt
            .query_map(params_from_iter(params.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
    }
}

/// `(id, parent_id, resource_name, last_modified, data)` of an `objects` row.
type ObjectRow = (String, String, String, i64, String);

/// Parses a stored `data` column.
pub(crate) fn parse_data(text: &str) -> Result<Object> {
    serde_json::from_str(text)
        .map_err(|e| BackendError::Unavailable(format!("corrupt object data: {e}")))
}

/// `SELECT id, parent_id, resource_name, last_modified, data FROM objects WHERE ...` for a query.
fn select_sql(
    resource_name: &str,
    parent_id: &str,
    query: &ListQuery,
    include_deleted: bool,
) -> (String, Vec<SqlValue>) {
    let mut sql = String::from(
        "SELECT id, parent_id, resource_name, last_modified, data FROM objects WHERE ",
    );
    let mut params = Vec::new();
    sqlite_query::scope(resource_name, parent_id, &mut sql, &mut params);
    if !include_deleted {
        sql.push_str(" AND NOT deleted");
    }
    sqlite_query::conditions(query, &mut sql, &mut params);
    sqlite_query::order_by(&query.sorting, &mut sql, &mut params);
    sql.push_str(" LIMIT ?");
    params.push(SqlValue::Integer(
        query.limit.map(|l| l as i64).unwrap_or(-1),
    ));
    (sql, params)
}

impl Storage for SqliteTx<'_> {
    fn resource_timestamp(&mut self, list: ListRef) -> Result<i64> {
        if let Some(ts) = self.list_max(list)? {
            return Ok(ts);
        }
        if self.readonly {
            return Err(BackendError::ReadOnly);
        }
        // Reads write: the list timestamp of an empty list is created once and then stays.
        self.conn
            .prepare_cached(
                "INSERT INTO timestamps (parent_id, resource_name, last_modified) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![list.parent_id, list.resource_name, now_ms()]))
            .map_err(sql_err)?;
        self.list_max(list)?
            .ok_or_else(|| BackendError::Unavailable("list timestamp vanished".into()))
    }

    fn all_resources_timestamps(&mut self, resource_name: &str) -> Result<Vec<(String, i64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT parent_id, max(m) FROM (SELECT parent_id, max(last_modified) AS m \
                 FROM objects WHERE resource_name = ?1 GROUP BY parent_id UNION ALL \
                 SELECT parent_id, last_modified FROM timestamps WHERE resource_name = ?1) \
                 GROUP BY parent_id ORDER BY 2 DESC",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([resource_name], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql_err)
    }

    fn create(
        &mut self,
        list: ListRef,
        obj: Object,
    ) -> Result<std::result::Result<Object, Object>> {
        let id = match obj.get("id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let (data, hint) = split_object(obj);
        self.write()?;
        if let Some(existing) = self.get(list, &id)? {
            return Ok(Err(existing));
        }
        let ts = assign_timestamp(self.list_max(list)?, now_ms(), hint);
        self.upsert(list, &id, &data, ts)?;
        Ok(Ok(build_object(data, &id, ts)))
    }

    fn get(&mut self, list: ListRef, id: &str) -> Result<Option<Object>> {
        let row: Option<(String, i64)> = self
            .conn
            .prepare_cached(
                "SELECT data, last_modified FROM objects \
                 WHERE id = ? AND parent_id = ? AND resource_name = ? AND NOT deleted",
            )
            .and_then(|mut s| {
                s.query_row(params![id, list.parent_id, list.resource_name], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(sql_err)?;
        match row {
            Some((data, ts)) => Ok(Some(build_object(parse_data(&data)?, id, ts))),
            None => Ok(None),
        }
    }

    fn update(&mut self, list: ListRef, id: &str, obj: Object) -> Result<Object> {
        self.write()?;
        let current = self.live_timestamp(list, id)?;
        self.replace(list, id, obj, current)
    }

    fn update_if(
        &mut self,
        list: ListRef,
        id: &str,
        obj: Object,
        read: Option<i64>,
    ) -> Result<Option<Object>> {
        // The write lock of `BEGIN IMMEDIATE` holds from here to the commit.
        self.write()?;
        let current = self.live_timestamp(list, id)?;
        if current != read {
            return Ok(None);
        }
        self.replace(list, id, obj, current).map(Some)
    }

    fn delete(
        &mut self,
        list: ListRef,
        id: &str,
        with_deleted: bool,
        last_modified: Option<i64>,
    ) -> Result<Option<Object>> {
        self.write()?;
        let Some(current) = self.live_timestamp(list, id)? else {
            return Ok(None);
        };
        let params_pk = params![id, list.parent_id, list.resource_name];
        if !with_deleted {
            self.conn
                .prepare_cached(
                    "DELETE FROM objects WHERE id = ? AND parent_id = ? AND resource_name = ?",
                )
                .and_then(|mut s| s.execute(params_pk))
                .map_err(sql_err)?;
            return Ok(Some(tombstone(id, current)));
        }
        let hint = last_modified.filter(|h| *h > current);
        let ts = assign_timestamp(self.list_max(list)?, now_ms(), hint);
        self.conn
            .prepare_cached(
                "UPDATE objects SET deleted = 1, data = '{\"deleted\":true}', last_modified = ? \
                 WHERE id = ? AND parent_id = ? AND resource_name = ?",
            )
            .and_then(|mut s| s.execute(params![ts, id, list.parent_id, list.resource_name]))
            .map_err(sql_err)?;
        Ok(Some(tombstone(id, ts)))
    }

    fn delete_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
        with_deleted: bool,
    ) -> Result<Vec<Object>> {
        self.write()?;
        let (sql, params) = select_sql(resource_name, parent_id, query, false);
        let rows = self.query_rows(&sql, &params)?;
        let mut out = Vec::with_capacity(rows.len());
        if with_deleted {
            // Each tombstone gets its own increasing timestamp, in page order.
            let mut latest: HashMap<(String, String), Option<i64>> = HashMap::new();
            for (id, parent, resource, _, _) in rows {
                let key = (parent, resource);
                let previous = match latest.get(&key) {
                    Some(p) => *p,
                    None => self.list_max(ListRef {
                        parent_id: &key.0,
                        resource_name: &key.1,
                    })?,
                };
                let ts = assign_timestamp(previous, now_ms(), None);
                self.conn
                    .prepare_cached(
                        "UPDATE objects SET deleted = 1, data = '{\"deleted\":true}', \
                         last_modified = ? WHERE id = ? AND parent_id = ? AND resource_name = ?",
                    )
                    .and_then(|mut s| s.execute(params![ts, id, key.0, key.1]))
                    .map_err(sql_err)?;
                latest.insert(key, Some(ts));
                out.push(tombstone(&id, ts));
            }
            return Ok(out);
        }
        let whole_lists =
            query.filters.is_empty() && query.pagination_rules.is_empty() && query.limit.is_none();
        if whole_lists {
            // Cascade: the lists go entirely, tombstones included.
            let mut sql = String::from("DELETE FROM objects WHERE ");
            let mut params = Vec::new();
            sqlite_query::scope(resource_name, parent_id, &mut sql, &mut params);
            self.conn
                .execute(&sql, params_from_iter(params.iter()))
                .map_err(sql_err)?;
        }
        for (id, parent, resource, ts, _) in rows {
            if !whole_lists {
                self.conn
                    .prepare_cached(
                        "DELETE FROM objects WHERE id = ? AND parent_id = ? AND resource_name = ?",
                    )
                    .and_then(|mut s| s.execute(params![id, parent, resource]))
                    .map_err(sql_err)?;
            }
            out.push(tombstone(&id, ts));
        }
        Ok(out)
    }

    fn purge_deleted(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        before: Option<i64>,
    ) -> Result<usize> {
        let mut sql = String::from("DELETE FROM objects WHERE ");
        let mut params = Vec::new();
        sqlite_query::scope(resource_name, parent_id, &mut sql, &mut params);
        sql.push_str(" AND deleted");
        if let Some(before) = before {
            sql.push_str(" AND last_modified < ?");
            params.push(SqlValue::Integer(before));
        }
        self.write()?
            .execute(&sql, params_from_iter(params.iter()))
            .map_err(sql_err)
    }

    fn purge_deleted_retaining(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        max_retained: usize,
    ) -> Result<usize> {
        let mut sql = String::from(
            "DELETE FROM objects WHERE (id, parent_id, resource_name) IN (SELECT id, parent_id, \
             resource_name FROM (SELECT id, parent_id, resource_name, row_number() OVER \
             (PARTITION BY parent_id, resource_name ORDER BY last_modified DESC) AS rank \
             FROM objects WHERE ",
        );
        let mut params = Vec::new();
        sqlite_query::scope(resource_name, parent_id, &mut sql, &mut params);
        sql.push_str(" AND deleted) WHERE rank > ?)");
        params.push(SqlValue::Integer(max_retained as i64));
        self.write()?
            .execute(&sql, params_from_iter(params.iter()))
            .map_err(sql_err)
    }

    fn list_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
    ) -> Result<Vec<Object>> {
        let (sql, params) = select_sql(resource_name, parent_id, query, query.include_deleted);
        self.query_rows(&sql, &params)?
            .into_iter()
            .map(|(id, _, _, ts, data)| Ok(build_object(parse_data(&data)?, &id, ts)))
            .collect()
    }

    fn count_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        filters: &[super::Filter],
    ) -> Result<usize> {
        let mut sql = String::from("SELECT count(*) FROM objects WHERE ");
        let mut params = Vec::new();
        sqlite_query::scope(resource_name, parent_id, &mut sql, &mut params);
        sql.push_str(" AND NOT deleted");
        let query = ListQuery {
            filters: filters.to_vec(),
            ..ListQuery::default()
        };
        sqlite_query::conditions(&query, &mut sql, &mut params);
        let count: i64 = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
            .map_err(sql_err)?;
        Ok(count as usize)
    }

    fn count_tombstones(&mut self, resource_name: &str, parent_id: &str) -> Result<usize> {
        let mut sql = String::from("SELECT count(*) FROM objects WHERE ");
        let mut params = Vec::new();
        sqlite_query::scope(resource_name, parent_id, &mut sql, &mut params);
        sql.push_str(" AND deleted");
        let count: i64 = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
            .map_err(sql_err)?;
        Ok(count as usize)
    }
}

impl Transaction for SqliteTx<'_> {
    fn lock_list(&mut self, _list: ListRef) -> Result<()> {
        // `BEGIN IMMEDIATE` takes the database's write lock: it covers every list.
        self.write().map(|_| ())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if self.begun {
            self.begun = false;
            self.conn.execute_batch("COMMIT").map_err(sql_err)?;
        }
        Ok(())
    }

    /// An embedded database commits without a round trip: nothing to gain.
    fn commit_with_next_write(&mut self) {}

    fn rollback(mut self: Box<Self>) -> Result<()> {
        if self.begun {
            self.begun = false;
            self.conn.execute_batch("ROLLBACK").map_err(sql_err)?;
        }
        Ok(())
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if self.begun {
            // An abandoned request: undo its writes. On failure the pool closes the connection.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BackendKind;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("sqlite:///rel/k.db"),
            Target::File(PathBuf::from("rel/k.db"))
        );
        assert_eq!(
            parse_url("sqlite:////abs/k.db"),
            Target::File(PathBuf::from("/abs/k.db"))
        );
        assert_eq!(parse_url(":memory:"), Target::Memory);
        assert_eq!(parse_url("sqlite:///:memory:"), Target::Memory);
        assert_eq!(parse_url(""), Target::Memory);
        assert_eq!(
            parse_url("/plain/k.db"),
            Target::File(PathBuf::from("/plain/k.db"))
        );
    }

    #[test]
    fn memory_database_is_one_shared_connection() {
        let settings = BackendSettings {
            kind: BackendKind::Sqlite,
            url: ":memory:".into(),
            pool_size: 4,
            pool_timeout: 1,
        };
        let backend = SqliteBackend::open(&settings, false).unwrap();
        let list = ListRef {
            resource_name: "bucket",
            parent_id: "",
        };
        let mut tx = backend.begin().unwrap();
        let mut obj = Object::new();
        obj.insert("id".into(), Value::from("b1"));
        tx.create(list, obj).unwrap().unwrap();
        tx.commit().unwrap();
        let mut tx = backend.begin().unwrap();
        assert!(
            tx.get(list, "b1").unwrap().is_some(),
            "same database across transactions"
        );
        // The only connection is taken: another checkout times out as unavailable.
        assert!(matches!(
            backend.begin().err(),
            Some(BackendError::Unavailable(_))
        ));
    }
}
