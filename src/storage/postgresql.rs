//! The PostgreSQL backend on Kinto's own schema (storage version 26, permission version 2): a lazy
//! r2d2 pool of connections with per-connection prepared statements. The database transaction is
//! opened at the first write; writers of one list are serialised by a transaction-scoped advisory
//! lock on that list, so Kinto's timestamp trigger never computes the same value twice (no 409s).

use super::pg_inline;
use super::pg_query::{self, from_epoch, PgSql, EPOCH_LM};
use super::{
    build_object, data_text, split_object, tombstone, Backend, BackendError, ListQuery, ListRef,
    ListRequest, ListResult, Object, PageObject, ReadRequest, ReadResult, Result, Storage,
    Transaction,
};
use crate::permission::ObjectPermissions;
use crate::settings::BackendSettings;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, SimpleQueryMessage, SimpleQueryRow, Statement};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// The storage schema version this code reads and writes.
pub const STORAGE_SCHEMA_VERSION: i64 = 26;
/// The permission schema version this code reads and writes.
pub const PERMISSION_SCHEMA_VERSION: i64 = 2;

const STORAGE_SCHEMA: &str = include_str!("../../sql/postgresql/storage_schema.sql");
const PERMISSION_SCHEMA: &str = include_str!("../../sql/postgresql/permission_schema.sql");
/// Indexes of kinto-rs's own on Kinto's tables (unversioned: Kinto ignores them).
const EXTRA_INDEXES: &str = include_str!("../../sql/postgresql/kinto_rs_indexes.sql");
/// The cache table (unversioned).
pub const CACHE_SCHEMA: &str = include_str!("../../sql/postgresql/cache_schema.sql");
/// Storage migrations this code knows: `(from version, script)`.
const STORAGE_MIGRATIONS: &[(i64, &str)] = &[
    (
        23,
        include_str!("../../sql/postgresql/storage_migration_023_024.sql"),
    ),
    (
        24,
        include_str!("../../sql/postgresql/storage_migration_024_025.sql"),
    ),
    (
        25,
        include_str!("../../sql/postgresql/storage_migration_025_026.sql"),
    ),
];
const PERMISSION_MIGRATIONS: &[(i64, &str)] = &[(
    1,
    include_str!("../../sql/postgresql/permission_migration_001_002.sql"),
)];

/// Maps driver errors: integrity violations and serialisation failures are conflicts (409),
/// everything else (connection refused, closed, unexpected SQL error) is unavailability (503).
pub(crate) fn pg_err(e: postgres::Error) -> BackendError {
    let conflict = [
        SqlState::UNIQUE_VIOLATION,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
    ];
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    };
    match e.code() {
        Some(code) if conflict.contains(code) => BackendError::Conflict(message),
        _ => BackendError::Unavailable(message),
    }
}

thread_local! {
    static ROUND_TRIPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Round trips this thread's storage connections made to PostgreSQL (statements, statement
/// preparations, batches): lets tests hold a request to its budget of round trips.
pub fn round_trips() -> u64 {
    ROUND_TRIPS.with(|n| n.get())
}

fn count_round_trip() {
    ROUND_TRIPS.with(|n| n.set(n.get() + 1));
}

/// A pooled connection with its prepared statements.
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// The [`Named`] statements prepared on this connection.
    named: HashSet<&'static str>,
}

impl PgConn {
    fn prepare(&mut self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        count_round_trip();
        let stmt = self.client.prepare(sql).map_err(pg_err)?;
        if self.statements.len() >= 512 {
            // Dynamic filter queries vary; keep the cache bounded.
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    pub(crate) fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.prepare(sql)?;
        count_round_trip();
        self.client.query(&stmt, params).map_err(pg_err)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let stmt = self.prepare(sql)?;
        count_round_trip();
        self.client.query_opt(&stmt, params).map_err(pg_err)
    }

    pub(crate) fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let stmt = self.prepare(sql)?;
        count_round_trip();
        self.client.query_one(&stmt, params).map_err(pg_err)
    }

    pub(crate) fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.prepare(sql)?;
        count_round_trip();
        self.client.execute(&stmt, params).map_err(pg_err)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        count_round_trip();
        self.client.batch_execute(sql).map_err(pg_err)
    }

    /// Statements in one simple-protocol round trip, with their rows as text.
    fn simple(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>> {
        count_round_trip();
        self.client.simple_query(sql).map_err(pg_err)
    }

    /// Prepares `named` under its name, once per connection: a statement sent as text would be
    /// planned at every use.
    fn prepare_named(&mut self, named: &Named) -> Result<()> {
        if !self.named.contains(named.name) {
            let sql = &*named.sql;
            self.batch(&format!("PREPARE {} {} AS {sql}", named.name, named.types))?;
            self.named.insert(named.name);
        }
        Ok(())
    }
}

/// A statement executed by name with its parameters as literals (`EXECUTE name (...)`, see
/// `pg_inline`), so that it travels in one simple-protocol round trip with the statements that
/// open its transaction and, for a request's last write, with the `COMMIT`.
pub(crate) struct Named {
    pub(crate) name: &'static str,
    /// The parameter types, `(text, ...)`.
    pub(crate) types: &'static str,
    pub(crate) sql: LazyLock<String>,
}

/// The rows of one statement of a multi-statement simple query: the one followed by `trailing`
/// more statements.
fn statement_rows(messages: &[SimpleQueryMessage], trailing: usize) -> Vec<&SimpleQueryRow> {
    let mut completed = 0;
    let mut rows = Vec::new();
    for message in messages.iter().rev() {
        match message {
            SimpleQueryMessage::CommandComplete(_) => {
                completed += 1;
                if completed > trailing + 1 {
                    break;
                }
            }
            SimpleQueryMessage::Row(row) if completed == trailing + 1 => rows.push(row),
            _ => {}
        }
    }
    rows.reverse();
    rows
}

/// The statements that end a write transaction: the commit record is written without waiting
/// for its flush (`synchronous_commit` is off in write transactions, so that the list lock is
/// released at once and writers of one list do not queue behind each other's fsync); the
/// transaction that follows takes an xid, so it commits synchronously, and its flush covers the
/// commit just before. Concurrent writers share those flushes (group commit). Two statements.
const COMMIT_DURABLY: &str = "COMMIT; SELECT txid_current();";

/// The statements that open a write transaction (see `COMMIT_DURABLY`).
const OPEN_TRANSACTION: &str = "BEGIN; SET LOCAL synchronous_commit TO OFF;";

/// How long a write sent with its commit may wait for a lock (see `PgTx::write_and_commit`):
/// far above the usual wait for a list's lock (a write or a batch of them), far below any
/// harakiri (one second at least).
const FUSED_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '100ms';";

/// r2d2 manager of [`PgConn`]s. Sessions run in UTC, as Kinto's schema requires.
pub struct PgManager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for PgManager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<PgConn, postgres::Error> {
        let client = self.config.connect(NoTls)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            named: HashSet::new(),
        })
    }

    fn is_valid(&self, conn: &mut PgConn) -> std::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client.is_closed()
    }
}

/// The last failure to open a connection, recorded by the pool's error handler.
type LastError = Arc<Mutex<Option<(Instant, String)>>>;

#[derive(Debug)]
struct RecordErrors(LastError);

impl r2d2::HandleError<postgres::Error> for RecordErrors {
    fn handle_error(&self, error: postgres::Error) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some((Instant::now(), error.to_string()));
    }
}

/// A lazy pool: no connection is opened until one is needed, so a database that is down at
/// startup does not prevent starting, and the pool reconnects when it returns. A checkout fails
/// as soon as opening a connection fails (a refused database answers 503 at once instead of
/// holding the request), and waits at most `pool_timeout` for a busy pool.
pub struct PgPool {
    pool: r2d2::Pool<PgManager>,
    last_error: LastError,
    timeout: Duration,
}

impl PgPool {
    pub fn new(settings: &BackendSettings) -> std::result::Result<PgPool, String> {
        // Kinto's SQLAlchemy URLs may name a driver (`postgresql+psycopg2://`).
        let url = match settings.url.split_once("://") {
            Some((scheme, rest)) if scheme.starts_with("postgres") => {
                format!("postgresql://{rest}")
            }
            _ => settings.url.clone(),
        };
        let mut config = postgres::Config::from_str(&url)
            .map_err(|e| format!("invalid PostgreSQL URL {:?}: {e}", settings.url))?;
        let timeout = Duration::from_secs(settings.pool_timeout.max(1));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        // UTC sessions (the trigger reads the clock as a TIMESTAMP); generic plans, so that
        // prepared statements are not re-planned on every execution.
        let options = format!(
            "{} -c TimeZone=UTC -c plan_cache_mode=force_generic_plan",
            config.get_options().unwrap_or("")
        );
        config.options(options.trim());
        let last_error = LastError::default();
        let pool = r2d2::Pool::builder()
            .max_size(settings.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(timeout)
            .test_on_check_out(false)
            .error_handler(Box::new(RecordErrors(last_error.clone())))
            .build_unchecked(PgManager { config });
        Ok(PgPool {
            pool,
            last_error,
            timeout,
        })
    }

    pub fn get(&self) -> Result<r2d2::PooledConnection<PgManager>> {
        let start = Instant::now();
        let deadline = start + self.timeout;
        loop {
            let now = Instant::now();
            let slice = deadline
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            if let Ok(conn) = self.pool.get_timeout(slice.max(Duration::from_millis(1))) {
                return Ok(conn);
            }
            let last = self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some((at, message)) = last {
                if at >= start {
                    return Err(BackendError::Unavailable(format!(
                        "PostgreSQL unavailable: {message}"
                    )));
                }
            }
            if Instant::now() >= deadline {
                return Err(BackendError::Unavailable(
                    "PostgreSQL unavailable: no free connection in the pool".into(),
                ));
            }
        }
    }
}

/// The PostgreSQL storage + permission backend.
pub struct PgBackend {
    pool: PgPool,
    readonly: bool,
}

impl PgBackend {
    /// Prepares the pool (no connection yet).
    pub fn open(settings: &BackendSettings, readonly: bool) -> std::result::Result<Self, String> {
        Ok(PgBackend {
            pool: PgPool::new(settings)?,
            readonly,
        })
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<PgManager>> {
        self.pool.get()
    }
}

/// The highest version recorded in `metadata` for `name`, if the table exists.
fn metadata_version(conn: &mut PgConn, name: &str) -> Result<Option<i64>> {
    let row = conn.query_one("SELECT to_regclass('metadata') IS NOT NULL", &[])?;
    if !row.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = conn.query_one(
        "SELECT max(value::BIGINT) FROM metadata WHERE name = $1 AND value ~ '^[0-9]+$'",
        &[&name],
    )?;
    Ok(row.get(0))
}

fn table_exists(conn: &mut PgConn, table: &str) -> Result<bool> {
    Ok(conn
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])?
        .get(0))
}

/// The scripts bringing one schema up to date.
fn plan(
    role: &str,
    installed: Option<i64>,
    target: i64,
    create: &'static str,
    migrations: &[(i64, &'static str)],
) -> Result<Vec<String>> {
    let Some(mut version) = installed else {
        return Ok(vec![create.to_string()]);
    };
    if version > target {
        return Err(BackendError::Unavailable(format!(
            "PostgreSQL {role} schema version {version} is newer than the supported version \
             {target}: upgrade kinto-rs"
        )));
    }
    let mut scripts = Vec::new();
    while version < target {
        let Some((_, script)) = migrations.iter().find(|(from, _)| *from == version) else {
            return Err(BackendError::Unavailable(format!(
                "PostgreSQL {role} schema version {version} is too old to migrate from: \
                 run Kinto's own `kinto migrate` first"
            )));
        };
        scripts.push(script.to_string());
        version += 1;
    }
    Ok(scripts)
}

impl Backend for PgBackend {
    fn begin(&self) -> Result<Box<dyn Transaction + '_>> {
        Ok(Box::new(PgTx {
            conn: self.connection()?,
            begun: false,
            locked: HashSet::new(),
            readonly: self.readonly,
            deferred: String::new(),
            commit_with_write: false,
            committed: false,
        }))
    }

    fn ping(&self) -> bool {
        match self.connection() {
            Ok(mut conn) => conn.client.simple_query("SELECT 1").is_ok(),
            Err(_) => false,
        }
    }

    fn migrate(&self, dry_run: bool) -> Result<Vec<String>> {
        let mut conn = self.connection()?;
        let storage = if table_exists(&mut conn, "objects")? {
            // Tables without a version row: assume the oldest version we know how to migrate.
            Some(metadata_version(&mut conn, "storage_schema_version")?.unwrap_or(1))
        } else {
            None
        };
        let permission = if table_exists(&mut conn, "access_control_entries")? {
            Some(metadata_version(&mut conn, "permission_schema_version")?.unwrap_or(1))
        } else {
            None
        };
        let mut scripts = plan(
            "storage",
            storage,
            STORAGE_SCHEMA_VERSION,
            STORAGE_SCHEMA,
            STORAGE_MIGRATIONS,
        )?;
        scripts.extend(plan(
            "permission",
            permission,
            PERMISSION_SCHEMA_VERSION,
            PERMISSION_SCHEMA,
            PERMISSION_MIGRATIONS,
        )?);
        if !table_exists(&mut conn, "cache")? {
            scripts.push(CACHE_SCHEMA.to_string());
        }
        if !table_exists(&mut conn, "idx_objects_data_by_list")? {
            scripts.push(EXTRA_INDEXES.to_string());
        }
        if dry_run || scripts.is_empty() {
            return Ok(scripts);
        }
        let all = format!("BEGIN;\n{}\nCOMMIT;", scripts.join("\n"));
        if let Err(e) = conn.batch(&all) {
            let _ = conn.batch("ROLLBACK");
            return Err(e);
        }
        Ok(scripts)
    }

    fn flush(&self) -> Result<()> {
        let mut conn = self.connection()?;
        conn.batch(
            "BEGIN; DELETE FROM objects; DELETE FROM timestamps; DELETE FROM user_principals; \
             DELETE FROM access_control_entries; COMMIT;",
        )
        .inspect_err(|_| {
            let _ = conn.batch("ROLLBACK");
        })
    }
}

/// A stable 63-bit key of a list for `pg_advisory_xact_lock` (FNV-1a, identical in every process).
fn list_lock_key(list: ListRef) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in list
        .parent_id
        .bytes()
        .chain([0])
        .chain(list.resource_name.bytes())
    {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 1) as i64
}

/// One request's transaction: `BEGIN` is sent with the first write (reads before it autocommit).
pub struct PgTx {
    conn: r2d2::PooledConnection<PgManager>,
    begun: bool,
    locked: HashSet<i64>,
    readonly: bool,
    /// Writes nobody waits the answer of (ACEs), sent ahead of the next statement: with the
    /// next write or the `COMMIT` they cost no round trip of their own.
    deferred: String,
    /// Set by `commit_with_next_write`: the next object write carries the `COMMIT`.
    commit_with_write: bool,
    /// The `COMMIT` went with a write: nothing may follow.
    committed: bool,
}

fn select_sql(
    resource_name: &str,
    parent_id: &str,
    query: &ListQuery,
    include_deleted: bool,
) -> PgSql {
    let mut q = PgSql::new(&format!(
        "SELECT id, {EPOCH_LM}, data::text FROM objects WHERE "
    ));
    pg_query::scope_for(resource_name, parent_id, &query.filters, &mut q);
    if !include_deleted {
        q.push(" AND NOT deleted");
    }
    pg_query::conditions(query, &mut q);
    pg_query::order_by(&query.sorting, &mut q);
    let limit = q.bind(query.limit.map(|l| l as i64));
    q.push(&format!(" LIMIT {limit}::BIGINT"));
    q
}

pub(crate) fn parse_data(text: &str) -> Result<Object> {
    serde_json::from_str(text)
        .map_err(|e| BackendError::Unavailable(format!("corrupt object data: {e}")))
}

const TOMBSTONE_DATA: &str = "'{\"deleted\": true}'::JSONB";

/// The object, its ACEs, the caller's principals, the permission check and the parents' existence
/// (`Transaction::read_object`), one row.
const READ_OBJECT_SQL: &str = "WITH p AS (SELECT unnest($1::text[]) AS principal UNION \
               SELECT principal FROM user_principals WHERE user_id = ANY($2::text[])) \
             SELECT (SELECT array_agg(principal) FROM p), \
               EXISTS (SELECT 1 FROM access_control_entries AS a \
                 JOIN unnest($3::text[], $4::text[]) AS b(o, perm) \
                   ON a.object_id = b.o AND a.permission = b.perm \
                 WHERE a.principal IN (SELECT principal FROM p)), \
               (SELECT array_agg(permission || ' ' || principal) FROM access_control_entries \
                 WHERE object_id = $5), \
               (SELECT array_agg(EXISTS (SELECT 1 FROM objects AS x WHERE x.id = q.id \
                   AND x.parent_id = q.parent AND x.resource_name = q.res AND NOT x.deleted) \
                   ORDER BY q.n) \
                 FROM unnest($6::text[], $7::text[], $8::text[]) WITH ORDINALITY \
                   AS q(res, parent, id, n)), \
               o.data::text, (EXTRACT(EPOCH FROM o.last_modified) * 1000)::BIGINT \
             FROM (SELECT 1) AS one LEFT JOIN objects AS o \
               ON o.id = $9 AND o.parent_id = $10 AND o.resource_name = $11 AND NOT o.deleted";

static READ_OBJECT: Named = Named {
    name: "kinto_rs_read_object",
    types: "(text[], text[], text[], text[], text, text[], text[], text[], text, text, text)",
    sql: LazyLock::new(|| READ_OBJECT_SQL.to_string()),
};

/// A new object (`Storage::create`): no row when a live object has the id.
static CREATE: Named = Named {
    name: "kinto_rs_create",
    types: "(text, text, text, text, bigint)",
    sql: LazyLock::new(|| {
        format!(
            "INSERT INTO objects (id, parent_id, resource_name, data, last_modified, deleted) \
             VALUES ($1, $2, $3, $4::text::JSONB, {}, FALSE) \
             ON CONFLICT (id, parent_id, resource_name) DO UPDATE \
             SET last_modified = EXCLUDED.last_modified, data = EXCLUDED.data, deleted = FALSE \
             WHERE objects.deleted \
             RETURNING {EPOCH_LM}",
            from_epoch("$5::BIGINT")
        )
    }),
};

/// An object written whole (`Storage::update`, `Storage::update_if`). The replication value
/// counts only when newer than the live object (2.5 rule 1). With `$6` (guarded), only while the
/// live object's timestamp is still `$7` (no live object when `$7` is NULL): no row otherwise.
static UPDATE: Named = Named {
    name: "kinto_rs_update",
    types: "(text, text, text, text, bigint, boolean, bigint)",
    sql: LazyLock::new(|| {
        format!(
            "INSERT INTO objects (id, parent_id, resource_name, data, last_modified, deleted) \
             SELECT $1, $2, $3, $4::text::JSONB, ( \
               SELECT CASE WHEN $5::BIGINT IS NOT NULL AND (e.lm IS NULL OR {hint} > e.lm) \
                      THEN {hint} END \
               FROM (SELECT (SELECT last_modified FROM objects WHERE id = $1 AND parent_id = $2 \
                     AND resource_name = $3 AND NOT deleted) AS lm) AS e), FALSE \
             WHERE NOT $6::BOOLEAN OR $7::BIGINT IS NULL OR EXISTS (SELECT 1 FROM objects \
               WHERE id = $1 AND parent_id = $2 AND resource_name = $3 AND NOT deleted) \
             ON CONFLICT (id, parent_id, resource_name) DO UPDATE \
             SET data = EXCLUDED.data, deleted = FALSE, last_modified = EXCLUDED.last_modified \
             WHERE NOT $6::BOOLEAN OR CASE WHEN $7::BIGINT IS NULL THEN objects.deleted \
               ELSE NOT objects.deleted AND {current} = $7::BIGINT END \
             RETURNING {EPOCH_LM}",
            hint = from_epoch("$5::BIGINT"),
            current = "(EXTRACT(EPOCH FROM objects.last_modified) * 1000)::BIGINT",
        )
    }),
};

/// The literals of an object write: id, list, data, replication timestamp.
fn object_params(list: ListRef, id: &str, data: &str, hint: Option<i64>) -> Result<Vec<String>> {
    let text = |value| pg_inline::text(value).ok_or_else(nul_in_text);
    Ok(vec![
        text(id)?,
        text(list.parent_id)?,
        text(list.resource_name)?,
        text(data)?,
        bigint(hint),
    ])
}

fn bigint(value: Option<i64>) -> String {
    value.map_or_else(|| "NULL".to_string(), |v| v.to_string())
}

impl PgTx {
    /// The connection, for a statement of this transaction: deferred writes are sent first.
    pub(crate) fn conn(&mut self) -> Result<&mut PgConn> {
        self.send_deferred("")?;
        Ok(&mut self.conn)
    }

    /// Opens the transaction if needed and, for a list write, takes the list's lock, in one
    /// round trip (with the deferred writes).
    pub(crate) fn write(&mut self, list: Option<ListRef>) -> Result<&mut PgConn> {
        let opening = self.opening(list)?;
        self.send_deferred(&opening)?;
        Ok(&mut self.conn)
    }

    /// Sends the deferred writes followed by `more`, when there is anything to send.
    fn send_deferred(&mut self, more: &str) -> Result<()> {
        if self.committed {
            return Err(after_commit());
        }
        if self.deferred.is_empty() && more.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.deferred);
        batch.push_str(more);
        self.conn.batch(&batch)
    }

    /// Ends the transaction on this side: drops the deferred writes. Whether the server has
    /// a transaction to roll back (its `BEGIN` was sent).
    fn forget_unsent(&mut self) -> bool {
        let unsent = self.deferred.starts_with(OPEN_TRANSACTION);
        self.deferred.clear();
        let begun = std::mem::replace(&mut self.begun, false);
        begun && !unsent
    }

    /// Queues a write whose answer nobody needs, to go with the next statement; `named` is
    /// prepared now if needed.
    pub(crate) fn defer(&mut self, named: &Named, params: &[String]) -> Result<()> {
        if self.committed {
            return Err(after_commit());
        }
        self.conn.prepare_named(named)?;
        let opening = self.opening(None)?;
        self.deferred.push_str(&opening);
        self.deferred
            .push_str(&format!("EXECUTE {} ({});", named.name, params.join(", ")));
        Ok(())
    }

    /// The statements still needed to open the transaction and hold `list`'s lock (empty when
    /// done already), counted as sent: from here a failure leaves a transaction to roll back
    /// (see `Drop`).
    fn opening(&mut self, list: Option<ListRef>) -> Result<String> {
        if self.committed {
            return Err(after_commit());
        }
        let mut batch = String::new();
        if !self.begun {
            batch.push_str(OPEN_TRANSACTION);
            self.begun = true;
        }
        if let Some(list) = list {
            let key = list_lock_key(list);
            if self.locked.insert(key) {
                // An integer literal: nothing from the request reaches the SQL text.
                batch.push_str(&format!("SELECT pg_advisory_xact_lock({key});"));
            }
        }
        Ok(batch)
    }

    /// Executes `named` in one round trip with the deferred writes and the statements that open
    /// the transaction and take `lock`'s list lock. A write that may end the transaction
    /// (`may_commit`) also carries the `COMMIT` when the request asked for it
    /// (`commit_with_next_write`) and nothing of the transaction was sent yet. Answers the
    /// statement's rows.
    fn execute_named(
        &mut self,
        named: &Named,
        params: &[String],
        lock: ListRef,
        may_commit: bool,
    ) -> Result<Vec<SimpleQueryMessage>> {
        self.conn.prepare_named(named)?;
        let mut sql = std::mem::take(&mut self.deferred);
        sql.push_str(&self.opening(Some(lock))?);
        sql.push_str(&format!("EXECUTE {} ({});", named.name, params.join(", ")));
        // Nothing of the transaction sent yet: it all starts with its BEGIN here.
        let fused = may_commit && self.commit_with_write && sql.starts_with(OPEN_TRANSACTION);
        let messages = if fused {
            self.write_and_commit(&sql)?
        } else {
            self.conn.simple(&sql)?
        };
        Ok(messages)
    }

    /// Sends the transaction `sql` (from its `BEGIN` to its last write) with the `COMMIT`.
    ///
    /// A write sent with its commit would land even if its worker were killed (harakiri) while
    /// it waits for a lock: nothing tells the server to stop. So it waits for locks only a
    /// moment (`FUSED_LOCK_TIMEOUT`); past that, the transaction is sent again without its
    /// commit and waits as long as needed, with the commit to follow once the write is done.
    fn write_and_commit(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>> {
        let body = &sql[OPEN_TRANSACTION.len()..];
        let fused = format!("{OPEN_TRANSACTION}{FUSED_LOCK_TIMEOUT}{body}{COMMIT_DURABLY}");
        count_round_trip();
        match self.conn.client.simple_query(&fused) {
            Ok(messages) => {
                self.begun = false;
                self.committed = true;
                Ok(messages)
            }
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                self.conn.batch("ROLLBACK")?;
                self.conn.simple(sql)
            }
            Err(e) => Err(pg_err(e)),
        }
    }

    /// The rows of the statement `execute_named` executed (two statements follow it when the
    /// `COMMIT` went with it).
    fn named_rows<'m>(&self, messages: &'m [SimpleQueryMessage]) -> Vec<&'m SimpleQueryRow> {
        statement_rows(messages, if self.committed { 2 } else { 0 })
    }

    /// Opens the transaction, takes `lock`'s list lock and reads the object in one round trip.
    /// `None` when a parameter cannot be a literal.
    fn begin_and_read_object(
        &mut self,
        req: &ReadRequest,
        lock: ListRef,
    ) -> Result<Option<ReadResult>> {
        let principals = req.principals.iter().map(String::as_str);
        let parents = req.parents;
        let params = [
            pg_inline::text_array(principals),
            pg_inline::text_array(req.user_ids.iter().map(String::as_str)),
            pg_inline::text_array(req.bound_permissions.iter().map(|(o, _)| o.as_str())),
            pg_inline::text_array(req.bound_permissions.iter().map(|(_, p)| p.as_str())),
            pg_inline::text(req.object_uri),
            pg_inline::text_array(parents.iter().map(|(l, _)| l.resource_name)),
            pg_inline::text_array(parents.iter().map(|(l, _)| l.parent_id)),
            pg_inline::text_array(parents.iter().map(|(_, id)| *id)),
            pg_inline::text(req.id),
            pg_inline::text(req.list.parent_id),
            pg_inline::text(req.list.resource_name),
        ];
        let Some(params) = params.into_iter().collect::<Option<Vec<String>>>() else {
            return Ok(None);
        };
        let messages = self.execute_named(&READ_OBJECT, &params, lock, false)?;
        match self
            .named_rows(&messages)
            .first()
            .and_then(|row| ReadRow::from_text(row))
        {
            Some(read) => read.into_result(req.id).map(Some),
            None => Err(BackendError::Unavailable(
                "unexpected answer to an object read".into(),
            )),
        }
    }

    /// Executes the object write `named` (create or update) and answers the `last_modified`
    /// of the row it returned, if any.
    fn write_object(
        &mut self,
        named: &Named,
        list: ListRef,
        params: Vec<String>,
        may_commit: bool,
    ) -> Result<Option<i64>> {
        let messages = self.execute_named(named, &params, list, may_commit)?;
        match self.named_rows(&messages).first() {
            None => Ok(None),
            Some(row) => row
                .get(0)
                .and_then(|ts| ts.parse().ok())
                .map(Some)
                .ok_or_else(|| BackendError::Unavailable("unexpected answer to a write".into())),
        }
    }

    /// `update` (`guard` `None`) and `update_if` (`Some(read)`).
    fn write_whole(
        &mut self,
        list: ListRef,
        id: &str,
        obj: Object,
        guard: Option<Option<i64>>,
    ) -> Result<Option<Object>> {
        let (data, hint) = split_object(obj);
        let text = data_text(&data);
        let mut params = object_params(list, id, &text, hint)?;
        params.push(guard.is_some().to_string());
        params.push(bigint(guard.flatten()));
        // A guarded write that finds the object changed writes nothing: the COMMIT may go with
        // it only when nothing else was written before (then nothing is committed).
        let may_commit = guard.is_none() || !self.begun;
        let written = self.write_object(&UPDATE, list, params, may_commit)?;
        Ok(written.map(|ts| build_object(data, id, ts)))
    }

    fn rows(&mut self, q: &PgSql) -> Result<Vec<Row>> {
        self.conn()?.query(&q.sql, &q.refs())
    }
}

/// A statement after the `COMMIT` that went with the request's last write: a bug in the caller.
fn after_commit() -> BackendError {
    BackendError::Unavailable("statement after the transaction was committed".into())
}

/// PostgreSQL's text cannot hold a NUL byte (the same refusal as the server's for a parameter).
pub(crate) fn nul_in_text() -> BackendError {
    BackendError::Unavailable("invalid byte sequence for encoding \"UTF8\": 0x00".into())
}

impl Storage for PgTx {
    fn resource_timestamp(&mut self, list: ListRef) -> Result<i64> {
        // One round trip: the list's greatest timestamp, or a new `timestamps` row (reads write,
        // once per empty list) unless read-only.
        let sql = "WITH current AS (SELECT max(m) AS m FROM ( \
               SELECT max(last_modified) AS m FROM objects \
                WHERE parent_id = $1 AND resource_name = $2 \
               UNION ALL SELECT last_modified FROM timestamps \
                WHERE parent_id = $1 AND resource_name = $2) AS t), \
             created AS (INSERT INTO timestamps (parent_id, resource_name, last_modified) \
               SELECT $1, $2, date_trunc('milliseconds', clock_timestamp() AT TIME ZONE 'UTC') \
               WHERE (SELECT m FROM current) IS NULL \
               ON CONFLICT DO NOTHING RETURNING last_modified) \
             SELECT (EXTRACT(EPOCH FROM COALESCE((SELECT m FROM current), \
               (SELECT last_modified FROM created))) * 1000)::BIGINT";
        if self.readonly {
            // No INSERT at all: a read-only server may run on a hot standby.
            let row = self.conn()?.query_one(
                "SELECT (EXTRACT(EPOCH FROM max(m)) * 1000)::BIGINT FROM ( \
                   SELECT max(last_modified) AS m FROM objects \
                    WHERE parent_id = $1 AND resource_name = $2 \
                   UNION ALL SELECT last_modified FROM timestamps \
                    WHERE parent_id = $1 AND resource_name = $2) AS t",
                &[&list.parent_id, &list.resource_name],
            )?;
            return row.get::<_, Option<i64>>(0).ok_or(BackendError::ReadOnly);
        }
        let row = self
            .conn
            .query_one(sql, &[&list.parent_id, &list.resource_name])?;
        if let Some(ts) = row.get::<_, Option<i64>>(0) {
            return Ok(ts);
        }
        // Another transaction created the row concurrently: read it.
        let row = self.conn()?.query_one(
            "SELECT (EXTRACT(EPOCH FROM last_modified) * 1000)::BIGINT FROM timestamps \
             WHERE parent_id = $1 AND resource_name = $2",
            &[&list.parent_id, &list.resource_name],
        )?;
        Ok(row.get(0))
    }

    fn all_resources_timestamps(&mut self, resource_name: &str) -> Result<Vec<(String, i64)>> {
        let rows = self.conn()?.query(
            "SELECT parent_id, (EXTRACT(EPOCH FROM max(m)) * 1000)::BIGINT AS ts FROM ( \
               SELECT parent_id, max(last_modified) AS m FROM objects \
                WHERE resource_name = $1 GROUP BY parent_id \
               UNION ALL SELECT parent_id, last_modified FROM timestamps \
                WHERE resource_name = $1) AS t \
             GROUP BY parent_id ORDER BY ts DESC",
            &[&resource_name],
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
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
        let text = data_text(&data);
        let params = object_params(list, &id, &text, hint)?;
        match self.write_object(&CREATE, list, params, true)? {
            Some(ts) => Ok(Ok(build_object(data, &id, ts))),
            // The commit went with the write: the caller vouched for a fresh id.
            None if self.committed => Err(BackendError::Conflict(format!(
                "object {id} exists already"
            ))),
            None => match self.get(list, &id)? {
                Some(existing) => Ok(Err(existing)),
                None => Err(BackendError::Conflict(format!(
                    "object {id} changed concurrently"
                ))),
            },
        }
    }

    fn get(&mut self, list: ListRef, id: &str) -> Result<Option<Object>> {
        let row = self.conn()?.query_opt(
            &format!(
                "SELECT data::text, {EPOCH_LM} FROM objects \
                 WHERE id = $1 AND parent_id = $2 AND resource_name = $3 AND NOT deleted"
            ),
            &[&id, &list.parent_id, &list.resource_name],
        )?;
        match row {
            Some(row) => Ok(Some(build_object(parse_data(row.get(0))?, id, row.get(1)))),
            None => Ok(None),
        }
    }

    fn update(&mut self, list: ListRef, id: &str, obj: Object) -> Result<Object> {
        self.write_whole(list, id, obj, None)?
            .ok_or_else(|| BackendError::Unavailable("an object write answered no row".into()))
    }

    fn update_if(
        &mut self,
        list: ListRef,
        id: &str,
        obj: Object,
        read: Option<i64>,
    ) -> Result<Option<Object>> {
        self.write_whole(list, id, obj, Some(read))
    }

    fn delete(
        &mut self,
        list: ListRef,
        id: &str,
        with_deleted: bool,
        last_modified: Option<i64>,
    ) -> Result<Option<Object>> {
        let row = if with_deleted {
            let sql = format!(
                "UPDATE objects SET deleted = TRUE, data = {TOMBSTONE_DATA}, \
                 last_modified = CASE WHEN {hint} > last_modified THEN {hint} END \
                 WHERE id = $1 AND parent_id = $2 AND resource_name = $3 AND NOT deleted \
                 RETURNING {EPOCH_LM}",
                hint = from_epoch("$4::BIGINT")
            );
            self.write(Some(list))?.query_opt(
                &sql,
                &[&id, &list.parent_id, &list.resource_name, &last_modified],
            )?
        } else {
            let sql = format!(
                "DELETE FROM objects \
                 WHERE id = $1 AND parent_id = $2 AND resource_name = $3 AND NOT deleted \
                 RETURNING {EPOCH_LM}"
            );
            self.write(Some(list))?
                .query_opt(&sql, &[&id, &list.parent_id, &list.resource_name])?
        };
        Ok(row.map(|r| tombstone(id, r.get(0))))
    }

    fn delete_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
        with_deleted: bool,
    ) -> Result<Vec<Object>> {
        let single_list = !parent_id.contains('*') && resource_name != "*";
        let list = ListRef {
            resource_name,
            parent_id,
        };
        self.write(single_list.then_some(list))?;
        let mut q =
            PgSql::new("WITH matching AS (SELECT id, parent_id, resource_name FROM objects WHERE ");
        pg_query::scope_for(resource_name, parent_id, &query.filters, &mut q);
        q.push(" AND NOT deleted");
        pg_query::conditions(query, &mut q);
        pg_query::order_by(&query.sorting, &mut q);
        let limit = q.bind(query.limit.map(|l| l as i64));
        q.push(&format!(" LIMIT {limit}::BIGINT FOR UPDATE), "));
        q.push("numbered AS (SELECT id, parent_id, resource_name, row_number() OVER () AS rn FROM matching) ");
        let key = "o.id = n.id AND o.parent_id = n.parent_id AND o.resource_name = n.resource_name";
        if with_deleted {
            let stamp = if single_list {
                // Under the list lock: tombstones get base, base + 1, ... in page order, where
                // base follows Kinto's rule (clock, or the list timestamp + 1).
                let p = q.bind(parent_id.to_string());
                let r = q.bind(resource_name.to_string());
                q.push(&format!(
                    ", base AS (SELECT GREATEST( \
                       (EXTRACT(EPOCH FROM clock_timestamp() AT TIME ZONE 'UTC') * 1000)::BIGINT, \
                       COALESCE((SELECT (EXTRACT(EPOCH FROM max(m)) * 1000)::BIGINT + 1 FROM ( \
                         SELECT max(last_modified) AS m FROM objects \
                          WHERE parent_id = {p} AND resource_name = {r} \
                         UNION ALL SELECT last_modified FROM timestamps \
                          WHERE parent_id = {p} AND resource_name = {r}) AS t), 0)) AS b) "
                ));
                from_epoch("(SELECT b FROM base) + n.rn - 1")
            } else {
                // Several lists: the trigger stamps each row.
                "NULL".to_string()
            };
            q.push(&format!(
                "UPDATE objects AS o SET deleted = TRUE, data = {TOMBSTONE_DATA}, \
                 last_modified = {stamp} FROM numbered AS n WHERE {key} \
                 RETURNING o.id, (EXTRACT(EPOCH FROM o.last_modified) * 1000)::BIGINT, n.rn"
            ));
        } else {
            q.push(&format!(
                "DELETE FROM objects AS o USING numbered AS n WHERE {key} \
                 RETURNING o.id, (EXTRACT(EPOCH FROM o.last_modified) * 1000)::BIGINT, n.rn"
            ));
        }
        let mut rows: Vec<(i64, String, i64)> = self
            .rows(&q)?
            .iter()
            .map(|r| (r.get(2), r.get(0), r.get(1)))
            .collect();
        rows.sort();
        let whole_lists =
            query.filters.is_empty() && query.pagination_rules.is_empty() && query.limit.is_none();
        if !with_deleted && whole_lists {
            // Cascade: the lists go entirely, tombstones included.
            let mut d = PgSql::new("DELETE FROM objects WHERE ");
            pg_query::scope(resource_name, parent_id, &mut d);
            d.push(" AND deleted");
            self.conn()?.execute(&d.sql, &d.refs())?;
        }
        Ok(rows
            .into_iter()
            .map(|(_, id, ts)| tombstone(&id, ts))
            .collect())
    }

    fn purge_deleted(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        before: Option<i64>,
    ) -> Result<usize> {
        let mut q = PgSql::new("DELETE FROM objects WHERE ");
        pg_query::scope(resource_name, parent_id, &mut q);
        q.push(" AND deleted");
        if let Some(before) = before {
            let p = q.bind(before);
            q.push(&format!(
                " AND last_modified < {}",
                from_epoch(&format!("{p}::BIGINT"))
            ));
        }
        let n = self.write(None)?.execute(&q.sql, &q.refs())?;
        Ok(n as usize)
    }

    fn purge_deleted_retaining(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        max_retained: usize,
    ) -> Result<usize> {
        let mut q = PgSql::new(
            "DELETE FROM objects AS o USING (SELECT id, parent_id, resource_name, row_number() \
             OVER (PARTITION BY parent_id, resource_name ORDER BY last_modified DESC) AS rank \
             FROM objects WHERE ",
        );
        pg_query::scope(resource_name, parent_id, &mut q);
        let p = q.bind(max_retained as i64);
        q.push(&format!(
            " AND deleted) AS r WHERE r.rank > {p}::BIGINT AND o.id = r.id \
             AND o.parent_id = r.parent_id AND o.resource_name = r.resource_name"
        ));
        let n = self.write(None)?.execute(&q.sql, &q.refs())?;
        Ok(n as usize)
    }

    fn list_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        query: &ListQuery,
    ) -> Result<Vec<Object>> {
        let q = select_sql(resource_name, parent_id, query, query.include_deleted);
        self.rows(&q)?
            .iter()
            .map(|r| Ok(build_object(parse_data(r.get(2))?, r.get(0), r.get(1))))
            .collect()
    }

    fn count_all(
        &mut self,
        resource_name: &str,
        parent_id: &str,
        filters: &[super::Filter],
    ) -> Result<usize> {
        let mut q = PgSql::new("SELECT count(*) FROM objects WHERE ");
        pg_query::scope_for(resource_name, parent_id, filters, &mut q);
        q.push(" AND NOT deleted");
        let query = ListQuery {
            filters: filters.to_vec(),
            ..ListQuery::default()
        };
        pg_query::conditions(&query, &mut q);
        let row = self.conn()?.query_one(&q.sql, &q.refs())?;
        Ok(row.get::<_, i64>(0) as usize)
    }

    fn count_tombstones(&mut self, resource_name: &str, parent_id: &str) -> Result<usize> {
        let mut q = PgSql::new("SELECT count(*) FROM objects WHERE ");
        pg_query::scope(resource_name, parent_id, &mut q);
        q.push(" AND deleted");
        let row = self.conn()?.query_one(&q.sql, &q.refs())?;
        Ok(row.get::<_, i64>(0) as usize)
    }
}

impl Transaction for PgTx {
    fn lock_list(&mut self, list: ListRef) -> Result<()> {
        self.write(Some(list)).map(|_| ())
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if self.begun {
            self.begun = false;
            // Durability before the answer (see COMMIT_DURABLY).
            let mut batch = std::mem::take(&mut self.deferred);
            batch.push_str(COMMIT_DURABLY);
            self.conn.batch(&batch)?;
        }
        Ok(())
    }

    fn commit_with_next_write(&mut self) {
        self.commit_with_write = true;
    }

    fn rollback(mut self: Box<Self>) -> Result<()> {
        if self.forget_unsent() {
            self.conn.batch("ROLLBACK")?;
        }
        Ok(())
    }

    fn read_list(&mut self, req: &ListRequest) -> Result<ListResult> {
        self.read_list_query(req)
    }

    fn read_object(&mut self, req: &ReadRequest) -> Result<ReadResult> {
        if let Some(list) = req.lock {
            if !self.begun {
                if let Some(read) = self.begin_and_read_object(req, list)? {
                    return Ok(read);
                }
            }
            self.write(Some(list))?;
        }
        let principals: Vec<&String> = req.principals.iter().collect();
        let (objects, perms): (Vec<&str>, Vec<&str>) = req
            .bound_permissions
            .iter()
            .map(|(o, p)| (o.as_str(), p.as_str()))
            .unzip();
        let parent_resources: Vec<&str> =
            req.parents.iter().map(|(l, _)| l.resource_name).collect();
        let parent_parents: Vec<&str> = req.parents.iter().map(|(l, _)| l.parent_id).collect();
        let parent_ids: Vec<&str> = req.parents.iter().map(|(_, id)| *id).collect();
        let row = self.conn()?.query_one(
            READ_OBJECT_SQL,
            &[
                &principals,
                &req.user_ids,
                &objects,
                &perms,
                &req.object_uri,
                &parent_resources,
                &parent_parents,
                &parent_ids,
                &req.id,
                &req.list.parent_id,
                &req.list.resource_name,
            ],
        )?;
        ReadRow {
            principals: row.get(0),
            allowed: row.get(1),
            aces: row.get(2),
            parents_exist: row.get(3),
            data: row.get(4),
            last_modified: row.get(5),
        }
        .into_result(req.id)
    }
}

/// The row of [`READ_OBJECT_SQL`].
struct ReadRow<'a> {
    principals: Option<Vec<String>>,
    allowed: bool,
    /// `"<permission> <principal>"` of each of the object's ACEs.
    aces: Option<Vec<String>>,
    parents_exist: Option<Vec<bool>>,
    data: Option<&'a str>,
    last_modified: Option<i64>,
}

impl<'a> ReadRow<'a> {
    /// From the text form of the row, as the simple protocol gives it.
    fn from_text(row: &'a postgres::SimpleQueryRow) -> Option<ReadRow<'a>> {
        let array = |i: usize| match row.get(i) {
            None => Some(None),
            Some(text) => pg_inline::parse_array(text).map(Some),
        };
        Some(ReadRow {
            principals: array(0)?,
            allowed: row.get(1)? == "t",
            aces: array(2)?,
            parents_exist: match row.get(3) {
                None => None,
                Some(text) => Some(pg_inline::parse_bool_array(text)?),
            },
            data: row.get(4),
            last_modified: match row.get(5) {
                None => None,
                Some(text) => Some(text.parse().ok()?),
            },
        })
    }

    fn into_result(self, id: &str) -> Result<ReadResult> {
        let mut permissions = ObjectPermissions::new();
        for ace in self.aces.unwrap_or_default() {
            // Permission names never contain spaces; principals may.
            if let Some((perm, principal)) = ace.split_once(' ') {
                permissions
                    .entry(perm.to_string())
                    .or_default()
                    .insert(principal.to_string());
            }
        }
        let object = match (self.data, self.last_modified) {
            (Some(data), Some(last_modified)) => {
                Some(build_object(parse_data(data)?, id, last_modified))
            }
            _ => None,
        };
        Ok(ReadResult {
            object,
            permissions,
            principals: self.principals.unwrap_or_default().into_iter().collect(),
            allowed: self.allowed,
            parents_exist: self.parents_exist.unwrap_or_default(),
        })
    }
}

impl PgTx {
    /// [`Transaction::read_list`] in one statement.
    fn read_list_query(&mut self, req: &ListRequest) -> Result<ListResult> {
        let mut q = PgSql::new("");
        let principals = q.bind(req.principals.iter().cloned().collect::<Vec<String>>());
        let users = q.bind(req.user_ids.to_vec());
        let (objects, perms): (Vec<String>, Vec<String>) =
            req.bound_permissions.iter().cloned().unzip();
        let (objects, perms) = (q.bind(objects), q.bind(perms));
        let res = q.bind(
            req.parents
                .iter()
                .map(|(l, _)| l.resource_name.to_string())
                .collect::<Vec<_>>(),
        );
        let par = q.bind(
            req.parents
                .iter()
                .map(|(l, _)| l.parent_id.to_string())
                .collect::<Vec<_>>(),
        );
        let ids = q.bind(
            req.parents
                .iter()
                .map(|(_, id)| id.to_string())
                .collect::<Vec<_>>(),
        );
        let lp = q.bind(req.parent_id.to_string());
        let lr = q.bind(req.resource_name.to_string());
        q.push(&format!(
            "WITH p AS (SELECT unnest({principals}::text[]) AS principal UNION \
               SELECT principal FROM user_principals WHERE user_id = ANY({users}::text[])), \
             ok AS (SELECT EXISTS (SELECT 1 FROM access_control_entries AS a \
                 JOIN unnest({objects}::text[], {perms}::text[]) AS b(o, perm) \
                   ON a.object_id = b.o AND a.permission = b.perm \
                 WHERE a.principal IN (SELECT principal FROM p)) AS allowed), \
             par AS (SELECT COALESCE(bool_and(x.id IS NOT NULL), TRUE) AS all_exist, \
                 COALESCE(array_agg(x.data::text ORDER BY q.n), '{{}}') AS data, \
                 COALESCE(array_agg((EXTRACT(EPOCH FROM x.last_modified) * 1000)::BIGINT \
                   ORDER BY q.n), '{{}}') AS lm \
               FROM unnest({res}::text[], {par}::text[], {ids}::text[]) WITH ORDINALITY \
                 AS q(res, parent, id, n) \
               LEFT JOIN objects AS x ON x.id = q.id AND x.parent_id = q.parent \
                 AND x.resource_name = q.res AND NOT x.deleted), \
             go AS (SELECT (SELECT allowed FROM ok) AND all_exist AS go FROM par), \
             cur AS (SELECT max(m) AS m FROM ( \
                 SELECT max(last_modified) AS m FROM objects \
                  WHERE parent_id = {lp}::text AND resource_name = {lr}::text \
                 UNION ALL SELECT last_modified FROM timestamps \
                  WHERE parent_id = {lp}::text AND resource_name = {lr}::text) AS t)"
        ));
        let created = if self.readonly {
            // No INSERT at all: a read-only server may run on a hot standby.
            "NULL::TIMESTAMP"
        } else {
            q.push(&format!(
                ", created AS (INSERT INTO timestamps (parent_id, resource_name, last_modified) \
                   SELECT {lp}::text, {lr}::text, \
                     date_trunc('milliseconds', clock_timestamp() AT TIME ZONE 'UTC') \
                   WHERE (SELECT go FROM go) AND (SELECT m FROM cur) IS NULL \
                   ON CONFLICT DO NOTHING RETURNING last_modified)"
            ));
            "(SELECT last_modified FROM created)"
        };
        q.push(&format!(
            " SELECT (SELECT array_agg(principal) FROM p), (SELECT allowed FROM ok), \
               (SELECT data FROM par), \
               CASE WHEN (SELECT go FROM go) THEN (EXTRACT(EPOCH FROM \
                 COALESCE((SELECT m FROM cur), {created})) * 1000)::BIGINT END, \
               CASE WHEN (SELECT go FROM go) THEN (SELECT \
                 json_agg(json_build_array(page.id, page.lm, page.data))::text FROM ( \
                 SELECT id, {EPOCH_LM} AS lm, data FROM objects WHERE "
        ));
        pg_query::scope_for(req.resource_name, req.parent_id, &req.query.filters, &mut q);
        if !req.query.include_deleted {
            q.push(" AND NOT deleted");
        }
        pg_query::conditions(req.query, &mut q);
        pg_query::order_by(&req.query.sorting, &mut q);
        let limit = q.bind(req.query.limit.map(|l| l as i64));
        q.push(&format!(" LIMIT {limit}::BIGINT) AS page) END, "));
        if req.with_count {
            q.push("CASE WHEN (SELECT go FROM go) THEN (SELECT count(*) FROM objects WHERE ");
            pg_query::scope_for(req.resource_name, req.parent_id, &req.query.filters, &mut q);
            q.push(" AND NOT deleted");
            let filters_only = ListQuery {
                filters: req.query.filters.clone(),
                ..ListQuery::default()
            };
            pg_query::conditions(&filters_only, &mut q);
            q.push(") END");
        } else {
            q.push("NULL::BIGINT");
        }
        q.push(", (SELECT lm FROM par)");
        let row = self.conn()?.query_one(&q.sql, &q.refs())?;
        // The objects' fields stay text (see `PageObject`).
        let page: Vec<(String, i64, &serde_json::value::RawValue)> =
            match row.get::<_, Option<&str>>(4) {
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| BackendError::Unavailable(format!("corrupt object data: {e}")))?,
                None => Vec::new(),
            };
        let allowed: bool = row.get(1);
        let data: Vec<Option<&str>> = row.get(2);
        let stamps: Vec<Option<i64>> = row.get(6);
        let parents = req
            .parents
            .iter()
            .zip(data.into_iter().zip(stamps))
            .map(|((_, id), found)| match found {
                (Some(data), Some(lm)) => Ok(Some(build_object(parse_data(data)?, id, lm))),
                _ => Ok(None),
            })
            .collect::<Result<Vec<_>>>()?;
        let go = allowed && parents.iter().all(Option::is_some);
        let mut timestamp: Option<i64> = row.get(3);
        if go && timestamp.is_none() {
            if self.readonly {
                return Err(BackendError::ReadOnly);
            }
            // Another transaction created the timestamps row concurrently.
            let list = ListRef {
                resource_name: req.resource_name,
                parent_id: req.parent_id,
            };
            timestamp = Some(self.resource_timestamp(list)?);
        }
        Ok(ListResult {
            principals: row
                .get::<_, Option<Vec<String>>>(0)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            allowed,
            parents,
            timestamp,
            objects: page
                .into_iter()
                .map(|(id, ts, fields)| PageObject::text(id, ts, fields.get()))
                .collect::<Result<_>>()?,
            count: row.get::<_, Option<i64>>(5).map(|c| c as usize),
        })
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if self.forget_unsent() {
            // An abandoned request: undo its writes (a failed ROLLBACK leaves a closed
            // connection, which the pool discards).
            let _ = self.conn.batch("ROLLBACK");
        }
    }
}

/// Groups `(object_id, permission, principal)` rows.
pub(crate) fn group_aces(rows: &[Row]) -> BTreeMap<String, ObjectPermissions> {
    let mut out: BTreeMap<String, ObjectPermissions> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0))
            .or_default()
            .entry(r.get(1))
            .or_default()
            .insert(r.get(2));
    }
    out
}
