//! The command line of the real binary: help, version, init, usage errors, the `cliquet` name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const KINTO: &str = env!("CARGO_BIN_EXE_kinto");

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kinto-cli-cmd-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env_remove("KINTO_INI")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version() {
    let dir = TempDir::new();
    let out = run(Path::new(KINTO), &dir.0, &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for word in [
        "--ini",
        "init",
        "migrate",
        "--dry-run",
        "version",
        "--http-socket",
    ] {
        assert!(help.contains(word), "help lacks {word}: {help}");
    }
    for args in [&["version"][..], &["--version"][..]] {
        let out = run(Path::new(KINTO), &dir.0, args);
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(text(&out.stdout).trim(), env!("CARGO_PKG_VERSION"));
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new();
    for args in [
        &["frobnicate"][..],
        &["--processes"][..],
        &["init", "--backend", "redis"][..],
    ] {
        let out = run(Path::new(KINTO), &dir.0, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).starts_with("kinto: "),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn init_writes_a_loadable_config_and_refuses_to_overwrite() {
    let dir = TempDir::new();
    // Default path: config/kinto.ini under the working directory, created with its directory.
    let out = run(Path::new(KINTO), &dir.0, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let path = dir.0.join("config/kinto.ini");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.contains("kinto.storage_backend = sqlite"),
        "{written}"
    );
    assert!(written.contains("[uwsgi]"));
    let secret_line = written
        .lines()
        .find(|l| l.starts_with("kinto.userid_hmac_secret = "))
        .unwrap();
    assert_eq!(secret_line.len(), "kinto.userid_hmac_secret = ".len() + 64);

    let out = run(Path::new(KINTO), &dir.0, &["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("config/kinto.ini already exists."),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        written,
        "the file was overwritten"
    );

    let out = run(
        Path::new(KINTO),
        &dir.0,
        &["--ini", "pg.ini", "init", "--backend", "postgresql"],
    );
    assert_eq!(out.status.code(), Some(0));
    let pg = std::fs::read_to_string(dir.0.join("pg.ini")).unwrap();
    assert!(pg.contains("kinto.storage_backend = kinto.core.storage.postgresql"));
    // Two secrets drawn separately differ.
    assert!(!pg.contains(secret_line));
}

#[test]
fn kinto_ini_names_the_file_and_ini_wins() {
    let dir = TempDir::new();
    let out = Command::new(KINTO)
        .args(["init"])
        .current_dir(&dir.0)
        .env("KINTO_INI", "from-env.ini")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.0.join("from-env.ini").exists());
    let out = Command::new(KINTO)
        .args(["--ini", "from-flag.ini", "init"])
        .current_dir(&dir.0)
        .env("KINTO_INI", "from-env2.ini")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.0.join("from-flag.ini").exists());
    assert!(!dir.0.join("from-env2.ini").exists());
}

#[test]
fn cliquet_is_kinto() {
    let dir = TempDir::new();
    let cliquet = dir.0.join("cliquet");
    std::os::unix::fs::symlink(KINTO, &cliquet).unwrap();
    let out = run(&cliquet, &dir.0, &["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), env!("CARGO_PKG_VERSION"));
    let out = run(&cliquet, &dir.0, &["--ini", "c.ini", "init"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.0.join("c.ini").exists());
    // The production docs' `cliquet --ini production.ini migrate`.
    let out = run(
        &cliquet,
        &dir.0,
        &["--ini", "c.ini", "migrate", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).to_uppercase().contains("CREATE TABLE"));
}

/// `migrate` creates the SQLite schemas next to the ini; `flush-cache` empties the cache table.
#[test]
fn migrate_then_flush_cache_on_sqlite() {
    let dir = TempDir::new();
    std::fs::write(
        dir.0.join("kinto.ini"),
        "[app:main]\nkinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///data.db\n\
         kinto.permission_backend = sqlite\n\
         kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///cache.db\n",
    )
    .unwrap();
    let out = run(Path::new(KINTO), &dir.0, &["--ini", "kinto.ini", "migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(dir.0.join("data.db").exists());
    let db = rusqlite::Connection::open(dir.0.join("cache.db")).unwrap();
    db.execute(
        "INSERT INTO cache (key, value, ttl) VALUES ('some-key', '\"v\"', NULL)",
        [],
    )
    .unwrap();
    let count = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT count(*) FROM cache", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&db), 1);
    let out = run(
        Path::new(KINTO),
        &dir.0,
        &["--ini", "kinto.ini", "flush-cache"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(count(&db), 0);
}

/// `--stop PIDFILE` sends SIGINT to the pid in the file (uWSGI's convenience command).
#[test]
fn stop_signals_the_pid_in_the_pidfile() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new();
    use std::os::unix::process::CommandExt;
    let mut sleeper = Command::new("sleep");
    sleeper.arg("30");
    // A shell running us in the background leaves SIGINT ignored, and children inherit that.
    unsafe {
        sleeper.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut sleeper = sleeper.spawn().unwrap();
    let pidfile = dir.0.join("kinto.pid");
    std::fs::write(&pidfile, format!("{}\n", sleeper.id())).unwrap();
    let out = run(Path::new(KINTO), &dir.0, &["--stop", "kinto.pid"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = sleeper.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGINT));

    let out = run(Path::new(KINTO), &dir.0, &["--reload", "missing.pid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.pid"),
        "{}",
        text(&out.stderr)
    );
}

/// `kinto create-user` writes an account that then logs in over the API; `-p` is the password
/// there, and Kinto's exit code 52 answers a configuration without the accounts plugin.
#[test]
fn create_user_makes_an_account_that_logs_in() {
    use worker::Handler;
    let dir = TempDir::new();
    let ini = dir.0.join("kinto.ini");
    let body = "[app:main]\n\
        kinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///kinto.db\n\
        kinto.permission_backend = sqlite\nkinto.permission_url = sqlite:///kinto.db\n\
        kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///kinto.db\n\
        kinto.includes = kinto.plugins.accounts\n\
        multiauth.policies = account\n\
        multiauth.policy.account.use = kinto.plugins.accounts.AccountsPolicy\n\
        kinto.account_bcrypt_cost = 4\n\
        kinto.userid_hmac_secret = cli-test\n";
    std::fs::write(&ini, body).unwrap();
    let ini_arg = ini.to_str().unwrap();
    let out = run(Path::new(KINTO), &dir.0, &["--ini", ini_arg, "migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(
        Path::new(KINTO),
        &dir.0,
        &[
            "--ini",
            ini_arg,
            "create-user",
            "-u",
            "alice",
            "-p",
            "s3cret",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let settings = std::sync::Arc::new(kinto::settings::Settings::load(&ini).unwrap());
    let backend = kinto::storage::connect(&settings).unwrap();
    let cache = kinto::cache::connect(&settings).unwrap();
    let mut app = kinto::api::App::new(settings, backend, cache);
    let hello = |app: &mut kinto::api::App, password: &str| {
        let mut request = worker::Request::empty();
        request.method = "GET".into();
        request.target = "/v1/".into();
        let token = base64_basic("alice", password);
        request.headers = vec![("Authorization".into(), format!("Basic {token}"))];
        let response = app.handle(&request);
        serde_json::from_slice::<serde_json::Value>(&response.body).unwrap()
    };
    assert_eq!(hello(&mut app, "s3cret")["user"]["id"], "account:alice");
    assert!(hello(&mut app, "wrong").get("user").is_none());

    std::fs::write(
        &ini,
        body.replace("kinto.includes = kinto.plugins.accounts\n", ""),
    )
    .unwrap();
    let out = run(
        Path::new(KINTO),
        &dir.0,
        &["--ini", ini_arg, "create-user", "-u", "bob", "-p", "x"],
    );
    assert_eq!(out.status.code(), Some(52), "{}", text(&out.stderr));
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// `kinto purge-deleted RESOURCE... MAX_RETAINED` keeps that many tombstones per list.
#[test]
fn purge_deleted_keeps_the_most_recent_tombstones() {
    use kinto::storage::ListRef;
    let dir = TempDir::new();
    let ini = dir.0.join("kinto.ini");
    std::fs::write(
        &ini,
        "[app:main]\nkinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///kinto.db\n\
         kinto.permission_backend = sqlite\nkinto.permission_url = sqlite:///kinto.db\n\
         kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///kinto.db\n",
    )
    .unwrap();
    let ini_arg = ini.to_str().unwrap();
    let out = run(Path::new(KINTO), &dir.0, &["--ini", ini_arg, "migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let settings = kinto::settings::Settings::load(&ini).unwrap();
    let backend = kinto::storage::connect(&settings).unwrap();
    let list = ListRef {
        resource_name: "record",
        parent_id: "/buckets/b/collections/c",
    };
    let mut tx = backend.begin().unwrap();
    for id in ["r1", "r2", "r3"] {
        let obj = serde_json::json!({"id": id}).as_object().unwrap().clone();
        tx.create(list, obj).unwrap().unwrap();
        tx.delete(list, id, true, None).unwrap().unwrap();
    }
    tx.commit().unwrap();

    let purge = |args: &[&str]| run(Path::new(KINTO), &dir.0, args);
    let out = purge(&["--ini", ini_arg, "purge-deleted", "record", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "2 tombstone(s) deleted.");
    let out = purge(&["--ini", ini_arg, "purge-deleted", "record", "0"]);
    assert_eq!(text(&out.stdout).trim(), "1 tombstone(s) deleted.");
    let out = purge(&["--ini", ini_arg, "purge-deleted", "record"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
