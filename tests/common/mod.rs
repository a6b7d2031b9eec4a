//! Backends for the conformance suite: a fresh SQLite file or a fresh PostgreSQL database per
//! test, removed (dropped) when the test ends. PostgreSQL comes from `KINTO_TEST_PG_URL` or
//! `postgresql://postgres@127.0.0.1:5432/postgres`; an unreachable server fails the test.

#![allow(dead_code)]

use kinto::cache::Cache;
use kinto::settings::{BackendKind, BackendSettings};
use kinto::storage::Backend;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_suffix() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn admin_url() -> String {
    std::env::var("KINTO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

enum Place {
    SqliteDir(PathBuf),
    PgDatabase(String),
}

/// One test's database and the settings that reach it.
pub struct TestDb {
    pub settings: BackendSettings,
    place: Place,
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        let dir = std::env::temp_dir().join(format!("kinto_test_{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite:///{}", dir.join("kinto.db").display());
        TestDb {
            settings: BackendSettings {
                kind: BackendKind::Sqlite,
                url,
                pool_size: 4,
                pool_timeout: 10,
            },
            place: Place::SqliteDir(dir),
        }
    }

    pub fn postgresql() -> TestDb {
        let db = TestDb::postgresql_empty();
        db.backend()
            .migrate(false)
            .expect("migrate a fresh database");
        db
    }

    /// A fresh PostgreSQL database without any schema.
    pub fn postgresql_empty() -> TestDb {
        let name = format!("kinto_test_{}", unique_suffix());
        let admin = admin_url();
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL unreachable at {admin}: {e}"));
        client
            .batch_execute(&format!(
                "CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
            ))
            .expect("create test database");
        let settings = BackendSettings {
            kind: BackendKind::PostgreSql,
            url: with_database(&admin, &name),
            pool_size: 4,
            pool_timeout: 10,
        };
        TestDb {
            settings,
            place: Place::PgDatabase(name),
        }
    }

    pub fn kind(&self) -> BackendKind {
        self.settings.kind
    }

    pub fn backend(&self) -> Box<dyn Backend> {
        self.backend_with(false)
    }

    pub fn backend_with(&self, readonly: bool) -> Box<dyn Backend> {
        match self.settings.kind {
            BackendKind::Sqlite => Box::new(
                kinto::storage::sqlite::SqliteBackend::open(&self.settings, readonly).unwrap(),
            ),
            BackendKind::PostgreSql => Box::new(
                kinto::storage::postgresql::PgBackend::open(&self.settings, readonly).unwrap(),
            ),
        }
    }

    pub fn cache(&self) -> Box<dyn Cache> {
        match self.settings.kind {
            BackendKind::Sqlite => Box::new(kinto::cache::sqlite::SqliteCache::open(
                &self.settings,
                "test_".into(),
            )),
            BackendKind::PostgreSql => Box::new(
                kinto::cache::postgresql::PgCache::open(&self.settings, "test_".into()).unwrap(),
            ),
        }
    }

    /// Settings pointing at a database that cannot be reached.
    pub fn unreachable(&self) -> BackendSettings {
        let url = match self.settings.kind {
            BackendKind::Sqlite => "sqlite:////nonexistent-kinto-dir/sub/kinto.db".to_string(),
            // Port 1 on loopback: connection refused.
            BackendKind::PostgreSql => "postgresql://postgres@127.0.0.1:1/postgres".to_string(),
        };
        // A long pool timeout: refused connections must fail without waiting for it.
        BackendSettings {
            url,
            pool_timeout: 30,
            ..self.settings.clone()
        }
    }

    /// A backend on the test database with a pool of `size` connections and a 1 s timeout.
    pub fn backend_with_pool(&self, size: u32) -> Box<dyn Backend> {
        let settings = BackendSettings {
            pool_size: size,
            pool_timeout: 1,
            ..self.settings.clone()
        };
        match self.settings.kind {
            BackendKind::Sqlite => {
                Box::new(kinto::storage::sqlite::SqliteBackend::open(&settings, false).unwrap())
            }
            BackendKind::PostgreSql => {
                Box::new(kinto::storage::postgresql::PgBackend::open(&settings, false).unwrap())
            }
        }
    }

    /// A value of the first column of the first row of a query on the test database.
    pub fn query_text(&self, sql: &str) -> Option<String> {
        match &self.place {
            Place::SqliteDir(dir) => {
                let conn = rusqlite::Connection::open(dir.join("kinto.db")).unwrap();
                rusqlite::OptionalExtension::optional(conn.query_row(sql, [], |r| r.get(0)))
                    .unwrap()
                    .flatten()
            }
            Place::PgDatabase(_) => {
                let mut client =
                    postgres::Client::connect(&self.settings.url, postgres::NoTls).unwrap();
                client.query_opt(sql, &[]).unwrap().and_then(|r| r.get(0))
            }
        }
    }

    /// Runs raw SQL on the test database (schema tampering in migration tests).
    pub fn execute_raw(&self, sql: &str) {
        match &self.place {
            Place::SqliteDir(dir) => {
                let conn = rusqlite::Connection::open(dir.join("kinto.db")).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Place::PgDatabase(_) => {
                let mut client =
                    postgres::Client::connect(&self.settings.url, postgres::NoTls).unwrap();
                client.batch_execute(sql).unwrap();
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.place {
            Place::SqliteDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Place::PgDatabase(name) => {
                if let Ok(mut client) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
        }
    }
}
