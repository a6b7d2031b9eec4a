//! Settings errors of the real binary: exit 2 and one line naming the file, section and key.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const KINTO: &str = env!("CARGO_BIN_EXE_kinto");

/// A fresh directory holding one `kinto.ini`, removed when dropped.
struct Config {
    dir: PathBuf,
    ini: PathBuf,
}

impl Config {
    fn new(text: &str) -> Config {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("kinto-cli-set-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ini = dir.join("kinto.ini");
        std::fs::write(&ini, text).unwrap();
        Config { dir, ini }
    }

    /// Runs `kinto --ini <ini> <args>` with extra environment variables.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(KINTO)
            .arg("--ini")
            .arg(&self.ini)
            .args(args)
            .current_dir(&self.dir)
            .env_remove("KINTO_INI")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn ini(&self) -> String {
        self.ini.display().to_string()
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Asserts exit 2 and a single stderr line equal to (or starting with) `expected`.
fn assert_settings_error(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(
        stderr.starts_with(expected),
        "expected {expected:?}, got {stderr:?}"
    );
}

const UWSGI: &str = "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nmaster = true\n";

#[test]
fn missing_ini() {
    let config = Config::new("");
    let missing = config.dir.join("nope.ini");
    let out = Command::new(KINTO)
        .args(["--ini", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert_settings_error(
        &out,
        &format!("{}: cannot read the configuration file:", missing.display()),
    );
}

#[test]
fn malformed_ini() {
    let config = Config::new(&format!(
        "{UWSGI}[app:main]\nkinto.paginate_by = 10\nthis line is broken\n"
    ));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: line 7: [app:main] line \"this line is broken\"",
            config.ini()
        ),
    );
    let config = Config::new(UWSGI);
    assert_settings_error(
        &config.run(&[], &[]),
        &format!("{}: no [app:main] section", config.ini()),
    );
    let config = Config::new(&format!("{UWSGI}[app:main]\nkinto.project_name = 50%\n"));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: [app:main] kinto.project_name: '%' must be followed by '%' or '('",
            config.ini()
        ),
    );
}

#[test]
fn bad_values_and_unknown_backend() {
    let config = Config::new(&format!(
        "{UWSGI}[app:main]\nkinto.batch_max_requests = lots\n"
    ));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: [app:main] kinto.batch_max_requests: invalid integer \"lots\"",
            config.ini()
        ),
    );
    let config = Config::new(&format!("{UWSGI}[app:main]\nreadonly = perhaps\n"));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: [app:main] readonly: invalid boolean \"perhaps\"",
            config.ini()
        ),
    );
    let config = Config::new(&format!(
        "{UWSGI}[app:main]\nkinto.storage_backend = kinto.core.storage.redis\n"
    ));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: [app:main] kinto.storage_backend: unknown storage backend \"kinto.core.storage.redis\"",
            config.ini()
        ),
    );
}

#[test]
fn conflicting_prefixes() {
    let config = Config::new(&format!(
        "{UWSGI}[app:main]\npaginate_by = 10\nkinto.paginate_by = 20\n"
    ));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: [app:main] Settings 'paginate_by', 'kinto.paginate_by' are in conflict.",
            config.ini()
        ),
    );
}

#[test]
fn environment_overrides_are_checked_like_the_file() {
    let config = Config::new(&format!("{UWSGI}[app:main]\nkinto.paginate_by = 10\n"));
    assert_settings_error(
        &config.run(&[], &[("KINTO_PAGINATE_BY", "ten")]),
        &format!(
            "{}: [app:main] paginate_by (from environment variable KINTO_PAGINATE_BY): invalid integer \"ten\"",
            config.ini()
        ),
    );
    // KINTO_ wins over the plain name.
    assert_settings_error(
        &config.run(&[], &[("PAGINATE_BY", "ten"), ("KINTO_PAGINATE_BY", "eleven")]),
        &format!(
            "{}: [app:main] paginate_by (from environment variable KINTO_PAGINATE_BY): invalid integer \"eleven\"",
            config.ini()
        ),
    );
    // A setting absent from the file but with a default is looked up too.
    assert_settings_error(
        &config.run(&[], &[("STORAGE_BACKEND", "redis")]),
        &format!(
            "{}: [app:main] storage_backend (from environment variable STORAGE_BACKEND): unknown storage backend \"redis\"",
            config.ini()
        ),
    );
}

/// The settings of Kinto's production docs (the seed), with their `[uwsgi]` and logging sections,
/// load: `migrate --dry-run` gets past validation and prints the schema.
#[test]
fn seed_settings_load() {
    let config = Config::new(
        "[app:main]\n\
         use = egg:kinto\n\
         kinto.flush_endpoint_enabled = false\n\
         kinto.http_scheme = https\n\
         kinto.paginate_by = 100\n\
         kinto.batch_max_requests = 25\n\
         kinto.storage_pool_maxconn = 50\n\
         kinto.cache_pool_maxconn = 50\n\
         kinto.permission_pool_maxconn = 50\n\
         fxa-oauth.cache_ttl_seconds = 3600\n\
         kinto.bucket_read_principals = system.Authenticated\n\
         kinto.statsd_url = udp://carbon.server:8125\n\
         kinto.logging_renderer = cliquet.logs.MozillaHekaRenderer\n\
         \n\
         [uwsgi]\n\
         wsgi-file = app.wsgi\n\
         enable-threads = true\n\
         http-socket = 127.0.0.1:8000\n\
         processes =  3\n\
         master = true\n\
         module = kinto\n\
         harakiri = 120\n\
         lazy = true\n\
         buffer-size = 65535\n\
         \n\
         [loggers]\n\
         keys = root, kinto, cliquet\n\
         \n\
         [formatter_generic]\n\
         format = %(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s\n",
    );
    let out = config.run(&["migrate", "--dry-run"], &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.stdout.is_empty());
}

/// A bad value in the file is fixed by the environment: the override is what gets used.
#[test]
fn environment_override_replaces_the_file_value() {
    let config = Config::new("[app:main]\nkinto.paginate_by = not-a-number\n");
    let out = config.run(&["migrate", "--dry-run"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = config.run(&["migrate", "--dry-run"], &[("KINTO_PAGINATE_BY", "100")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kinto's memory backends live in one process: refused with several workers, also when the
/// process count comes from the command line.
#[test]
fn memory_backend_needs_one_process() {
    let config = Config::new("[app:main]\n[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\n");
    let expected = format!(
        "{}: [app:main] storage_backend: the memory backend keeps its data inside one process and cannot serve processes = 2",
        config.ini()
    );
    assert_settings_error(&config.run(&[], &[]), &expected);
    let config = Config::new("[app:main]\n[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\n");
    let expected = format!(
        "{}: [app:main] storage_backend: the memory backend keeps its data inside one process and cannot serve processes = 3",
        config.ini()
    );
    assert_settings_error(&config.run(&["-p", "3"], &[]), &expected);
}

/// A malformed database URL stops the start, before any worker tries it.
#[test]
fn malformed_postgresql_url() {
    let config = Config::new(&format!(
        "{UWSGI}[app:main]\nkinto.storage_backend = postgresql\nkinto.storage_url = postgresql://u:pw@db:port/kinto\n"
    ));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: [app:main] kinto.storage_url: invalid PostgreSQL URL \"postgresql://u:***@db:port/kinto\"",
            config.ini()
        ),
    );
}

/// The logging sections and the metrics settings are checked before the start too.
#[test]
fn logging_and_metrics_errors() {
    let config = Config::new(&format!(
        "{UWSGI}[app:main]\n[loggers]\nkeys = root, kinto\n[handlers]\nkeys = console\n\
         [formatters]\nkeys = generic\n[logger_root]\nlevel = INFO\nhandlers = console\n\
         [handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nformatter = generic\n\
         [formatter_generic]\nformat = %(message)s\n"
    ));
    assert_settings_error(&config.run(&[], &[]), &format!("{}: ", config.ini()));
    let stderr = String::from_utf8_lossy(&config.run(&[], &[]).stderr).into_owned();
    assert!(stderr.contains("[logger_kinto]"), "{stderr}");
    let config = Config::new(&format!(
        "{UWSGI}[app:main]\nkinto.includes = kinto.plugins.statsd\nkinto.statsd_url = carbon:8125\n"
    ));
    assert_settings_error(
        &config.run(&[], &[]),
        &format!(
            "{}: [app:main] Invalid statsd_url \"carbon:8125\"",
            config.ini()
        ),
    );
}
