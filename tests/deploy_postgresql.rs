//! The PostgreSQL setup of the production docs, through the real binary: a dedicated user and
//! database, then `kinto migrate` on a fresh database, on one built from Kinto's schema files
//! (`sql/postgresql/*_schema.sql`, the docs' alternative to `migrate`), on an older Kinto schema,
//! and `kinto migrate --dry-run`, which prints the SQL and changes nothing. Each test has its own
//! database (and user) on 127.0.0.1:5432, dropped at the end.

mod deploy_support;

use deploy_support::{unique, TempDir, KINTO};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn admin_url() -> String {
    std::env::var("KINTO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".to_string())
}

fn admin() -> postgres::Client {
    let url = admin_url();
    postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("PostgreSQL unreachable at {url}: {e}"))
}

/// `postgres=# CREATE USER prod; CREATE DATABASE prod OWNER prod;`, under a unique name;
/// dropped (database, then user) when this goes out of scope.
struct ProdDatabase {
    name: String,
}

impl ProdDatabase {
    fn create() -> ProdDatabase {
        let name = unique("pg").to_lowercase();
        let mut client = admin();
        // Two statements: CREATE DATABASE cannot run inside the implicit transaction of a batch.
        client
            .batch_execute(&format!("CREATE USER {name}"))
            .expect("create the dedicated user");
        let db = ProdDatabase { name };
        client
            .batch_execute(&format!(
                "CREATE DATABASE {0} OWNER {0} ENCODING 'UTF8' TEMPLATE template0",
                db.name
            ))
            .expect("create the dedicated database");
        db
    }

    /// The URL the application uses: the dedicated user on its database.
    fn url(&self) -> String {
        let admin = admin_url();
        let host = admin
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@').map(|(_, h)| h).or(Some(rest)))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("127.0.0.1:5432")
            .to_string();
        format!("postgresql://{0}@{host}/{0}", self.name)
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }

    fn text(&self, sql: &str) -> Option<String> {
        self.client()
            .query_opt(sql, &[])
            .unwrap()
            .and_then(|row| row.get(0))
    }

    fn version(&self, name: &str) -> Option<String> {
        self.text(&format!(
            "SELECT max(value::int)::text FROM metadata WHERE name = '{name}'"
        ))
    }

    fn has_relation(&self, name: &str) -> bool {
        self.text(&format!("SELECT to_regclass('{name}')::text"))
            .is_some()
    }

    /// Every table of the public schema with its owner.
    fn tables(&self) -> Vec<(String, String)> {
        self.client()
            .query(
                "SELECT tablename::text, tableowner::text FROM pg_tables \
                 WHERE schemaname = 'public' ORDER BY tablename",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

impl Drop for ProdDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
            let _ = client.batch_execute(&format!("DROP USER IF EXISTS {}", self.name));
        }
    }
}

/// The production ini of the docs: the three PostgreSQL backends on the dedicated database.
fn production_ini(dir: &Path, db: &ProdDatabase) -> PathBuf {
    let url = db.url();
    let ini = dir.join("production.ini");
    std::fs::write(
        &ini,
        format!(
            "[app:main]\nuse = egg:kinto\n\
             kinto.storage_backend = kinto.core.storage.postgresql\nkinto.storage_url = {url}\n\
             kinto.permission_backend = kinto.core.permission.postgresql\nkinto.permission_url = {url}\n\
             kinto.cache_backend = kinto.core.cache.postgresql\nkinto.cache_url = {url}\n\
             kinto.userid_hmac_secret = deploy-secret\n\n\
             [uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\n"
        ),
    )
    .unwrap();
    ini
}

fn kinto(ini: &Path, args: &[&str]) -> Output {
    Command::new(KINTO)
        .arg("--ini")
        .arg(ini)
        .args(args)
        .env_remove("KINTO_INI")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
}

const TABLES: [&str; 6] = [
    "access_control_entries",
    "cache",
    "metadata",
    "objects",
    "timestamps",
    "user_principals",
];

/// Applies Kinto's schema files with the dedicated user, as the docs' note suggests.
fn apply_schema_files(db: &ProdDatabase) {
    let sql = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/postgresql");
    let mut client = db.client();
    for file in [
        "storage_schema.sql",
        "permission_schema.sql",
        "cache_schema.sql",
    ] {
        let text = std::fs::read_to_string(sql.join(file)).unwrap();
        client
            .batch_execute(&text)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn dry_run_prints_the_sql_then_migrate_creates_the_schema_owned_by_the_user() {
    let dir = TempDir::new("pg_fresh");
    let db = ProdDatabase::create();
    let ini = production_ini(dir.path(), &db);

    let dry = kinto(&ini, &["migrate", "--dry-run"]);
    assert_ok(&dry);
    let printed = stdout(&dry);
    for needle in [
        "CREATE TABLE IF NOT EXISTS objects",
        "CREATE TABLE IF NOT EXISTS cache",
        "access_control_entries",
        "'storage_schema_version', '26'",
    ] {
        assert!(
            printed.contains(needle),
            "dry run lacks {needle}: {printed}"
        );
    }
    assert!(db.tables().is_empty(), "dry run changed the database");

    assert_ok(&kinto(&ini, &["migrate"]));
    let tables = db.tables();
    let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, TABLES);
    assert!(
        tables.iter().all(|(_, owner)| owner == &db.name),
        "tables owned by the dedicated user: {tables:?}"
    );
    assert_eq!(db.version("storage_schema_version").as_deref(), Some("26"));
    assert_eq!(
        db.version("permission_schema_version").as_deref(),
        Some("2")
    );

    // Idempotent: a second run changes nothing and a dry run has nothing left to print.
    assert_ok(&kinto(&ini, &["migrate"]));
    let dry = kinto(&ini, &["migrate", "--dry-run"]);
    assert_ok(&dry);
    assert_eq!(stdout(&dry).trim(), "");
}

#[test]
fn migrate_accepts_a_database_built_from_kintos_schema_files() {
    let dir = TempDir::new("pg_kinto");
    let db = ProdDatabase::create();
    apply_schema_files(&db);
    // A row as Kinto writes it: last_modified NULL, the trigger assigns it.
    db.client()
        .batch_execute(
            "INSERT INTO objects (id, parent_id, resource_name, data, last_modified, deleted) \
             VALUES ('b', '', 'bucket', '{}', NULL, FALSE)",
        )
        .unwrap();
    let ini = production_ini(dir.path(), &db);
    let dry = kinto(&ini, &["migrate", "--dry-run"]);
    assert_ok(&dry);
    // Kinto's current schema: nothing of it to change, only kinto-rs's own filter index to add.
    let planned = stdout(&dry);
    assert!(
        planned.contains("idx_objects_data_by_list") && !planned.contains("CREATE TABLE"),
        "{planned}"
    );
    assert_ok(&kinto(&ini, &["migrate"]));
    let dry = kinto(&ini, &["migrate", "--dry-run"]);
    assert_eq!(stdout(&dry).trim(), "", "up to date");
    assert_eq!(db.version("storage_schema_version").as_deref(), Some("26"));
    assert_eq!(
        db.text("SELECT id FROM objects WHERE resource_name = 'bucket'")
            .as_deref(),
        Some("b"),
        "data kept"
    );
}

#[test]
fn migrate_upgrades_an_older_kinto_schema_and_dry_run_changes_nothing() {
    let dir = TempDir::new("pg_old");
    let db = ProdDatabase::create();
    apply_schema_files(&db);
    // Back to storage schema 23 and permission schema 1, as an older Kinto left them.
    db.client()
        .batch_execute(
            "DROP INDEX idx_objects_history_userid_and_resourcename; \
             DROP INDEX idx_objects_parent_id_record_last_modified; \
             DELETE FROM metadata WHERE name IN ('storage_schema_version', 'permission_schema_version'); \
             INSERT INTO metadata (name, value) VALUES ('storage_schema_version', '23'), \
               ('permission_schema_version', '1'); \
             INSERT INTO objects (id, parent_id, resource_name, data, last_modified, deleted) \
             VALUES ('old', '', 'bucket', '{}', NULL, FALSE);",
        )
        .unwrap();
    let ini = production_ini(dir.path(), &db);

    let dry = kinto(&ini, &["migrate", "--dry-run"]);
    assert_ok(&dry);
    let printed = stdout(&dry);
    for needle in [
        "idx_objects_history_userid_and_resourcename",
        "'storage_schema_version', '24'",
        "idx_objects_parent_id_record_last_modified",
        "'storage_schema_version', '25'",
        "'storage_schema_version', '26'",
        "'permission_schema_version', '2'",
    ] {
        assert!(
            printed.contains(needle),
            "dry run lacks {needle}: {printed}"
        );
    }
    assert!(
        !printed.contains("CREATE TABLE IF NOT EXISTS objects"),
        "only the migrations, not the schema: {printed}"
    );
    assert_eq!(db.version("storage_schema_version").as_deref(), Some("23"));
    assert!(!db.has_relation("idx_objects_history_userid_and_resourcename"));

    assert_ok(&kinto(&ini, &["migrate"]));
    assert_eq!(db.version("storage_schema_version").as_deref(), Some("26"));
    assert_eq!(
        db.version("permission_schema_version").as_deref(),
        Some("2")
    );
    assert!(db.has_relation("idx_objects_history_userid_and_resourcename"));
    assert!(db.has_relation("idx_objects_parent_id_record_last_modified"));
    assert_eq!(
        db.text("SELECT id FROM objects WHERE id = 'old'")
            .as_deref(),
        Some("old")
    );
    let dry = kinto(&ini, &["migrate", "--dry-run"]);
    assert_eq!(stdout(&dry).trim(), "", "up to date after the upgrade");
}
