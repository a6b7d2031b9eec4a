//! Test support for the API tests: an [`App`] on a real SQLite database in a fresh temporary
//! directory (or a fresh PostgreSQL database, dropped afterwards), and request helpers calling
//! `Handler::handle` directly, without sockets.
#![allow(dead_code)]

use kinto::api::App;
use kinto::settings::{BackendKind, BackendSettings, Settings};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use worker::{Handler, Request, Scheme, Version};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// Kinto's defaults (section 9.2) for every field of [`Settings`], on the given backend.
pub fn default_settings(backend: BackendSettings) -> Settings {
    Settings {
        ini_path: PathBuf::from("/nonexistent/kinto.ini"),
        project_name: "kinto".into(),
        project_version: "26.5.0".into(),
        project_docs: "https://kinto.readthedocs.io/".into(),
        http_api_version: "1.23".into(),
        error_info_link: "https://github.com/Kinto/kinto/issues/".into(),
        version_json_path: "/nonexistent/version.json".into(),
        http_scheme: None,
        http_host: None,
        includes: Vec::new(),
        readonly: false,
        explicit_permissions: true,
        batch_max_requests: 25,
        paginate_by: None,
        storage_max_fetch_size: 10000,
        pagination_token_validity_seconds: 600,
        trailing_slash_redirect_enabled: true,
        trailing_slash_redirect_ttl_seconds: 3600,
        version_prefix_redirect_enabled: true,
        version_prefix_redirect_ttl_seconds: -1,
        heartbeat_timeout_seconds: 10,
        root_cache_expires_seconds: 86400,
        backoff: None,
        backoff_percentage: None,
        retry_after_seconds: 3,
        eos: None,
        eos_message: None,
        eos_url: None,
        cors_origins: vec!["*".into()],
        cors_max_age_seconds: 3600,
        userid_hmac_secret: "test-secret".into(),
        default_bucket_hmac_secret: String::new(),
        multiauth_policies: vec!["basicauth".into()],
        flush_endpoint_enabled: false,
        experimental_permissions_endpoint: false,
        experimental_collection_schema_validation: false,
        storage: backend.clone(),
        permission: backend.clone(),
        cache: backend,
        cache_prefix: String::new(),
        statsd_url: None,
        statsd_prefix: "kinto.core".into(),
        logging_renderer: None,
        raw: BTreeMap::new(),
    }
}

/// Where a test's data lives; removed on drop.
enum Store {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl Drop for Store {
    fn drop(&mut self) {
        match self {
            Store::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Store::Postgres { admin_url, name } => {
                if let Ok(mut client) = postgres::Client::connect(admin_url, postgres::NoTls) {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
                }
            }
        }
    }
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn pg_admin_url() -> String {
    std::env::var("KINTO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".into())
}

fn backend_settings(db: Db) -> (BackendSettings, Store) {
    match db {
        Db::Sqlite => {
            let dir = std::env::temp_dir().join(unique_name("kinto_api_test"));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("kinto.db");
            let settings = BackendSettings {
                kind: BackendKind::Sqlite,
                url: format!("sqlite:///{}", path.display()),
                pool_size: 2,
                pool_timeout: 10,
            };
            (settings, Store::Sqlite(dir))
        }
        Db::Postgres => {
            let admin_url = pg_admin_url();
            let name = unique_name("kinto_api_test");
            let mut client = postgres::Client::connect(&admin_url, postgres::NoTls)
                .expect("PostgreSQL reachable");
            client
                .batch_execute(&format!(
                    "CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0"
                ))
                .unwrap();
            let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
            let settings = BackendSettings {
                kind: BackendKind::PostgreSql,
                url: format!("{base}/{name}"),
                pool_size: 2,
                pool_timeout: 10,
            };
            (settings, Store::Postgres { admin_url, name })
        }
    }
}

/// An application on a fresh database.
pub struct TestApp {
    pub app: App,
    pub settings: Arc<Settings>,
    store: Arc<Store>,
}

impl TestApp {
    pub fn new() -> TestApp {
        Self::with(Db::Sqlite, |_| {})
    }

    pub fn on(db: Db) -> TestApp {
        Self::with(db, |_| {})
    }

    /// Builds an app after `adjust` changed the default settings.
    pub fn with(db: Db, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let (backend, store) = backend_settings(db);
        let mut settings = default_settings(backend);
        adjust(&mut settings);
        let storage = kinto::storage::connect(&settings).expect("storage backend");
        storage.migrate(false).expect("schema created");
        let cache = kinto::cache::connect(&settings).expect("cache backend");
        let settings = Arc::new(settings);
        TestApp {
            app: App::new(settings.clone(), storage, cache),
            settings,
            store: Arc::new(store),
        }
    }

    /// Another application (as another worker or a restart) on the same database, with changed
    /// settings.
    pub fn reopen(&self, adjust: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = (*self.settings).clone();
        adjust(&mut settings);
        let storage = kinto::storage::connect(&settings).expect("storage backend");
        let cache = kinto::cache::connect(&settings).expect("cache backend");
        let settings = Arc::new(settings);
        TestApp {
            app: App::new(settings.clone(), storage, cache),
            settings,
            store: self.store.clone(),
        }
    }

    pub fn request(&mut self, req: Req) -> Resp {
        let mut headers = req.headers;
        headers.push(("Host".into(), "localhost:8888".into()));
        let request = Request {
            method: req.method,
            target: req.target,
            version: Version::Http11,
            headers,
            body: req.body,
            remote_addr: "127.0.0.1".into(),
            scheme: Scheme::Http,
        };
        let response = self.app.handle(&request);
        Resp {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }

    /// Sends a request as `user` (basicauth with password "pw"; `None`: anonymous).
    pub fn call(
        &mut self,
        method: &str,
        target: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = Req::new(method, target);
        if let Some(user) = user {
            req = req.user(user);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.request(req)
    }

    /// The prefixed user id of a basicauth user (password "pw").
    pub fn user_id(&self, user: &str) -> String {
        format!(
            "basicauth:{}",
            kinto::auth::hmac_hex(
                self.settings.userid_hmac_secret.as_bytes(),
                format!("{user}:pw").as_bytes()
            )
        )
    }
}

/// A request being built.
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn user(self, user: &str) -> Req {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        self.header("Authorization", &format!("Basic {token}"))
    }

    pub fn json(mut self, body: &Value) -> Req {
        self.body = serde_json::to_vec(body).unwrap();
        self.header("Content-Type", "application/json")
    }

    pub fn raw(mut self, body: &str) -> Req {
        self.body = body.as_bytes().to_vec();
        self
    }
}

/// A response as seen by a client.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Asserts the status, printing the body otherwise.
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    pub fn etag(&self) -> i64 {
        self.header("ETag")
            .expect("ETag")
            .trim_matches('"')
            .parse()
            .unwrap()
    }
}

/// Runs a test body on SQLite and on PostgreSQL (`<name>_sqlite`, `<name>_pg`).
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn sqlite() {
                let f: fn(Db) = $body;
                f(Db::Sqlite);
            }
            #[test]
            fn pg() {
                let f: fn(Db) = $body;
                f(Db::Postgres);
            }
        }
    };
}
