//! End to end: the real binary started on an ini in a temporary directory (`127.0.0.1:0`, readiness
//! from `NOTIFY_SOCKET`, port from the `(port auto-assigned)` line), talked to over HTTP, on SQLite
//! and on PostgreSQL.

mod support_chaos;

use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support_chaos::{auto_assigned_port, spawn, wait_notify, Lines, PgDb, Started, TempDir};

const KINTO: &str = env!("CARGO_BIN_EXE_kinto");
const STARTUP: Duration = Duration::from_secs(15);

/// The running binary; stopped with SIGTERM (then SIGKILL) when dropped.
struct Server {
    child: Child,
    port: u16,
    lines: Lines,
    notify: UnixDatagram,
    ini: PathBuf,
}

impl Server {
    /// Starts `kinto --ini <dir>/kinto.ini` with `processes` workers and waits until it is ready.
    fn start(dir: &TempDir, app_main: &str, processes: usize, env: &[(&str, &str)]) -> Server {
        let text = format!(
            "[app:main]\n{app_main}\n\n[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = {processes}\nmaster = true\nharakiri = 10\n"
        );
        Server::start_ini(dir, &text, env)
    }

    /// Starts the binary on a whole ini text written to `<dir>/kinto.ini`.
    fn start_ini(dir: &TempDir, text: &str, env: &[(&str, &str)]) -> Server {
        let ini = dir.0.join("kinto.ini");
        std::fs::write(&ini, text).unwrap();
        let Started {
            child,
            lines,
            notify,
        } = spawn(&dir.0, &ini, env);
        let mut server = Server {
            child,
            port: 0,
            lines,
            notify,
            ini,
        };
        server.wait_notify("READY=1");
        server.port = server.auto_assigned_port();
        server
    }

    /// Waits for a datagram from the master with a line starting with `line`; returns that line.
    fn wait_notify(&mut self, line: &str) -> String {
        wait_notify(&mut self.child, &self.notify, &self.lines, line)
    }

    /// Rewrites the `[app:main]` section (the `[uwsgi]` one is kept) and sends SIGHUP.
    fn reload_with(&mut self, app_main: &str) {
        let text = std::fs::read_to_string(&self.ini).unwrap();
        let uwsgi = &text[text.find("[uwsgi]").unwrap()..];
        std::fs::write(&self.ini, format!("[app:main]\n{app_main}\n\n{uwsgi}")).unwrap();
        // SAFETY: signalling the child this test spawned, by its pid.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) },
            0
        );
    }

    fn auto_assigned_port(&self) -> u16 {
        auto_assigned_port(&self.lines)
    }

    /// One request on a fresh connection as `user` with the password `secret`; returns the
    /// status and the JSON body (Null when empty).
    fn request(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.request_basic(method, path, auth.map(|user| (user, "secret")), body)
    }

    /// [`Server::request`] with `Basic` credentials `(user, password)`.
    fn request_basic(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some((user, password)) = auth {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
        };
        (status, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling the child this test spawned, by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const AUTH: &str = "multiauth.policies = basicauth\nkinto.userid_hmac_secret = e2e-secret\n";

/// The root view and a bucket → collection → record round trip, as one authenticated user.
fn round_trip(server: &Server) {
    let (status, root) = server.request("GET", "/v1/", None, None);
    assert_eq!(status, 200, "{root}");
    assert_eq!(root["project_name"], "e2e-from-env");
    assert_eq!(root["http_api_version"], "1.23");
    assert_eq!(root["url"], format!("http://127.0.0.1:{}/v1/", server.port));

    let (status, body) = server.request("PUT", "/v1/buckets/shop", Some("alice"), Some(&json!({})));
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.request(
        "PUT",
        "/v1/buckets/shop/collections/items",
        Some("alice"),
        Some(&json!({})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, created) = server.request(
        "POST",
        "/v1/buckets/shop/collections/items/records",
        Some("alice"),
        Some(&json!({"data": {"title": "hello", "n": 1}})),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["data"]["title"], "hello");

    let path = format!("/v1/buckets/shop/collections/items/records/{id}");
    let (status, got) = server.request("GET", &path, Some("alice"), None);
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["data"]["n"], 1);
    assert_eq!(
        got["data"]["last_modified"],
        created["data"]["last_modified"]
    );

    // Another user sees nothing: the bucket is alice's.
    let (status, _) = server.request("GET", &path, Some("bob"), None);
    assert_eq!(status, 403);

    let (status, list) = server.request(
        "GET",
        "/v1/buckets/shop/collections/items/records",
        Some("alice"),
        None,
    );
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);

    let (status, deleted) = server.request("DELETE", &path, Some("alice"), None);
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["data"]["deleted"], true);
    let (status, _) = server.request("GET", &path, Some("alice"), None);
    assert_eq!(status, 404);
}

#[test]
fn sqlite_round_trip() {
    let dir = TempDir::new("sqlite");
    let app_main = format!(
        "kinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///kinto.db\n\
         kinto.permission_backend = sqlite\nkinto.permission_url = sqlite:///kinto.db\n\
         kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///kinto.db\n{AUTH}"
    );
    let server = Server::start(
        &dir,
        &app_main,
        2,
        &[("KINTO_PROJECT_NAME", "e2e-from-env")],
    );
    round_trip(&server);
    assert!(
        dir.0.join("kinto.db").exists(),
        "the database is next to the ini"
    );
}

/// Kinto's default (memory) backends: an in-memory SQLite database in the one worker.
#[test]
fn memory_round_trip() {
    let dir = TempDir::new("memory");
    let server = Server::start(&dir, AUTH, 1, &[("KINTO_PROJECT_NAME", "e2e-from-env")]);
    round_trip(&server);
}

/// The repository's `kinto.ini` runs as it is (here on port 0): accounts, personal bucket.
#[test]
fn repository_kinto_ini_serves_accounts() {
    let dir = TempDir::new("repo");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/kinto.ini")).unwrap();
    assert!(shipped.contains("http-socket = 127.0.0.1:8888"));
    let text = shipped.replace("http-socket = 127.0.0.1:8888", "http-socket = 127.0.0.1:0");
    let server = Server::start_ini(&dir, &text, &[]);
    let (status, body) = server.request(
        "PUT",
        "/v1/accounts/alice",
        None,
        Some(&json!({"data": {"password": "secret"}})),
    );
    assert_eq!(status, 201, "{body}");
    let (status, root) = server.request("GET", "/v1/", Some("alice"), None);
    assert_eq!(status, 200);
    assert_eq!(root["user"]["id"], "account:alice");
    for capability in ["accounts", "default_bucket"] {
        assert!(root["capabilities"][capability].is_object(), "{root}");
    }
    let (status, record) = server.request(
        "PUT",
        "/v1/buckets/default/collections/tasks/records/r1",
        Some("alice"),
        Some(&json!({"data": {"done": false}})),
    );
    assert_eq!(status, 201, "{record}");
    let (status, _) = server.request(
        "GET",
        "/v1/buckets/default/collections/tasks/records/r1",
        Some("bob"),
        None,
    );
    // With basicauth also listed, bob is a basicauth user whose `default` is his own bucket.
    assert_eq!(status, 404);
    assert!(dir.0.join("kinto.db").exists());
}

/// A reload (SIGHUP) re-reads the settings; an invalid file is refused and the old workers go on.
#[test]
fn reload_reads_the_settings_again() {
    let dir = TempDir::new("reload");
    let sqlite = "kinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///kinto.db\n\
                  kinto.permission_backend = sqlite\nkinto.cache_backend = sqlite\n";
    let mut server = Server::start(&dir, &format!("{sqlite}project_name = before\n"), 2, &[]);
    assert_eq!(
        server.request("GET", "/v1/", None, None).1["project_name"],
        "before"
    );

    server.reload_with(&format!("{sqlite}project_name = after\n"));
    server.wait_notify("RELOADING=1");
    server.wait_notify("READY=1");
    assert_eq!(
        server.request("GET", "/v1/", None, None).1["project_name"],
        "after"
    );

    server.reload_with(&format!(
        "{sqlite}project_name = broken\nkinto.paginate_by = many\n"
    ));
    let status = server.wait_notify("STATUS=reload failed");
    assert!(
        status.contains("kinto.paginate_by: invalid integer"),
        "{status}"
    );
    assert_eq!(
        server.request("GET", "/v1/", None, None).1["project_name"],
        "after"
    );
}

/// Runs `kinto --ini <ini> <args>`, which must succeed.
fn kinto_ok(ini: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(KINTO)
        .arg("--ini")
        .arg(ini)
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "kinto {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn postgresql_migrate_and_round_trip() {
    let db = PgDb::create();
    let dir = TempDir::new("pg");
    let url = db.url();
    let app_main = format!(
        "kinto.storage_backend = kinto.core.storage.postgresql\nkinto.storage_url = {url}\n\
         kinto.permission_backend = kinto.core.permission.postgresql\nkinto.permission_url = {url}\n\
         kinto.cache_backend = kinto.core.cache.postgresql\nkinto.cache_url = {url}\n\
         kinto.storage_pool_maxconn = 3\n{AUTH}"
    );
    // `migrate` first, as Kinto's production docs say; its dry run only prints SQL.
    let ini = dir.0.join("kinto.ini");
    std::fs::write(&ini, format!("[app:main]\n{app_main}\n")).unwrap();
    let out = kinto_ok(&ini, &["migrate", "--dry-run"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .to_uppercase()
        .contains("CREATE TABLE"));
    kinto_ok(&ini, &["migrate"]);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'objects'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "migrate created Kinto's objects table");
    drop(client);

    let server = Server::start(&dir, &app_main, 2, &[("PROJECT_NAME", "e2e-from-env")]);
    round_trip(&server);
}

/// Account verifications remembered by the workers (here trusted for a minute, so that only
/// the shared accounts epoch can explain a refusal): a password change or an account deletion
/// served by one worker is seen by the next request, whichever of the two workers serves it.
#[test]
fn postgresql_account_changes_reach_every_worker_at_once() {
    let db = PgDb::create();
    let dir = TempDir::new("pgaccounts");
    let url = db.url();
    let app_main = format!(
        "kinto.storage_backend = kinto.core.storage.postgresql\nkinto.storage_url = {url}\n\
         kinto.permission_backend = kinto.core.permission.postgresql\nkinto.permission_url = {url}\n\
         kinto.cache_backend = kinto.core.cache.postgresql\nkinto.cache_url = {url}\n\
         kinto.storage_pool_maxconn = 3\nkinto.userid_hmac_secret = e2e-secret\n\
         kinto.includes = kinto.plugins.accounts\nmultiauth.policies = account basicauth\n\
         multiauth.policy.account.use = kinto.plugins.accounts.AccountsPolicy\n\
         kinto.account_create_principals = system.Everyone\n\
         kinto.account_write_principals = account:admin\n\
         kinto.account_bcrypt_cost = 4\nkinto.account_local_cache_seconds = 60\n"
    );
    let ini = dir.0.join("kinto.ini");
    std::fs::write(&ini, format!("[app:main]\n{app_main}\n")).unwrap();
    kinto_ok(&ini, &["migrate"]);
    let server = Server::start(&dir, &app_main, 2, &[]);
    // Fresh connections land on either worker; enough of them reach both.
    let logins = |password: &str| -> Vec<Value> {
        (0..16)
            .map(|_| {
                let (status, root) =
                    server.request_basic("GET", "/v1/", Some(("alice", password)), None);
                assert_eq!(status, 200, "{root}");
                root["user"]["id"].clone()
            })
            .collect()
    };
    let account = json!("account:alice");
    let (status, body) = server.request(
        "PUT",
        "/v1/accounts/alice",
        None,
        Some(&json!({"data": {"password": "old"}})),
    );
    assert_eq!(status, 201, "{body}");
    assert!(logins("old").iter().all(|id| *id == account));

    let (status, body) = server.request_basic(
        "PATCH",
        "/v1/accounts/alice",
        Some(("alice", "old")),
        Some(&json!({"data": {"password": "new"}})),
    );
    assert_eq!(status, 200, "{body}");
    // Refused: the old password makes a `basicauth` user, not the account.
    assert!(logins("old").iter().all(|id| *id != account));
    assert!(logins("new").iter().all(|id| *id == account));

    let (status, body) =
        server.request_basic("DELETE", "/v1/accounts/alice", Some(("alice", "new")), None);
    assert_eq!(status, 200, "{body}");
    assert!(logins("new").iter().all(|id| *id != account));
}

/// A worker that cannot initialise (here: its log file cannot be opened) exits 22, and with
/// `need-app` the master stops with that code instead of respawning in a loop.
#[test]
fn worker_init_failure_exits_22() {
    let dir = TempDir::new("initfail");
    let ini = dir.0.join("kinto.ini");
    let log = dir.0.join("missing-dir/kinto.log");
    std::fs::write(
        &ini,
        format!(
            "[app:main]\nkinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///kinto.db\n\
             kinto.permission_backend = sqlite\nkinto.cache_backend = sqlite\n\
             [uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nneed-app = true\n\
             [loggers]\nkeys = root\n[handlers]\nkeys = file\n[formatters]\nkeys = generic\n\
             [logger_root]\nlevel = INFO\nhandlers = file\n\
             [handler_file]\nclass = FileHandler\nargs = ('{}', 'a')\nformatter = generic\n\
             [formatter_generic]\nformat = %(message)s\n",
            log.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(KINTO)
        .arg("--ini")
        .arg(&ini)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + STARTUP;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kinto still running after {STARTUP:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().unwrap();
    assert_eq!(status.code(), Some(22), "{text}");
    assert!(
        text.contains("cannot initialise the logging") && text.contains("missing-dir/kinto.log"),
        "{text}"
    );
}
