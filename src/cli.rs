//! The command line: `kinto [--ini PATH] [start|init|migrate|version]`, Kinto's commands, plus
//! uWSGI-style `--<option> value` arguments handed to the process manager as `[uwsgi]` overrides.
//! Exit codes: 0 done, 1 failure at run time, 2 usage or settings error.

use crate::app::KintoApp;
use crate::settings::Settings;
use std::path::{Path, PathBuf};

/// Usage and settings errors (argparse and Kinto's settings loader both use 2).
pub const EXIT_USAGE: i32 = 2;

/// The ini file used when neither `--ini` nor `KINTO_INI` names one (Kinto's CLI default).
pub const DEFAULT_INI: &str = "config/kinto.ini";

const USAGE: &str = "\
Usage: kinto [--ini PATH[:SECTION]] [COMMAND] [OPTIONS] [--<uwsgi-option> VALUE ...]

Commands:
  start               serve HTTP as configured by [uwsgi] and [app:main] (the default)
  init                write a commented default configuration to the ini path
                        --backend sqlite|postgresql|memory (default sqlite)
  migrate             create or upgrade the database schema
                        --dry-run: print the SQL instead of running it
  flush-cache         remove every entry of the cache backend
  purge-deleted RESOURCE... MAX_RETAINED
                      remove tombstones of those resource types (record, collection, ...),
                        keeping the MAX_RETAINED most recent of each list
  create-user         create or replace an account of the accounts plugin
                        -u/--username NAME, -p/--password PASSWORD (read from stdin
                        when not given)
  version             print the version

Options:
  --ini PATH          configuration file (default: $KINTO_INI, else config/kinto.ini);
                      PATH:SECTION reads the process options from [SECTION] instead of [uwsgi]
  --<option> VALUE    any [uwsgi] option, applied after the file (--http-socket 127.0.0.1:8888,
                      --processes 4 or -p 4, --harakiri 30, --master or -M, ...)
  --stop PIDFILE      send SIGINT to the master whose pid is in PIDFILE (uWSGI's --stop)
  --reload PIDFILE    send SIGHUP to that master (graceful reload)
  -h, --help          print this help
  --version           print the version

A binary named `cliquet` behaves the same.";

/// `[uwsgi]` options that take no value on uWSGI's command line.
const FLAGS: &[&str] = &[
    "master",
    "lazy",
    "lazy-apps",
    "enable-threads",
    "single-interpreter",
    "die-on-term",
    "vacuum",
    "strict",
    "no-orphans",
    "disable-logging",
    "log-5xx",
    "log-4xx",
    "log-x-forwarded-for",
    "log-date",
    "logdate",
    "thunder-lock",
    "need-app",
    "memory-report",
    "http-keepalive",
    "honour-stdin",
    "auto-procname",
    "exit-on-reload",
    "so-keepalive",
    "reuse-port",
    "catch-exceptions",
    "harakiri-verbose",
    "close-on-exec",
    "close-on-exec2",
    "tcp-nodelay",
    "drop-after-init",
    "drop-after-apps",
    "master-as-root",
    "never-swap",
    "cheap",
    "py-autoreload",
];

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Init {
        backend: InitBackend,
    },
    Migrate {
        dry_run: bool,
    },
    FlushCache,
    /// `kinto purge-deleted RESOURCE... MAX_RETAINED`.
    PurgeDeleted {
        resources: Vec<String>,
        max_retained: usize,
    },
    /// `kinto create-user`: an account with a bcrypt password (accounts plugin).
    CreateUser {
        username: Option<String>,
        password: Option<String>,
    },
    Version,
    Help,
    /// `--stop` / `--reload`: signal the master named by a pidfile (SIGHUP when `reload`).
    Signal {
        pidfile: PathBuf,
        reload: bool,
    },
}

/// The backends `kinto init` can write a configuration for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitBackend {
    Sqlite,
    PostgreSql,
    Memory,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    pub command: Command,
    /// `--ini` as given (`PATH` or `PATH:SECTION`), if given.
    pub ini: Option<String>,
    /// `[uwsgi]` options from the command line, in order.
    pub overrides: Vec<(String, String)>,
}

/// Parses the arguments (without the program name). Errors are usage messages.
pub fn parse(args: &[String]) -> Result<Cli, String> {
    let mut ini = None;
    let mut overrides = Vec::new();
    let mut positional: Vec<&str> = Vec::new();
    let mut backend: Option<InitBackend> = None;
    let mut dry_run = false;
    let mut help = false;
    let mut version = false;
    let mut signal = None;
    let mut username = None;
    let mut password = None;
    // Kinto's `create-user -u NAME -p PASSWORD`: there `-p` is the password, not `--processes`.
    let creating = args.iter().any(|a| a == "create-user");
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        let (name, inline) = match arg.strip_prefix("--") {
            Some(rest) => match rest.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (rest, None),
            },
            None if creating && arg == "-u" => ("username", None),
            None if creating && arg == "-p" => ("password", None),
            None if arg == "-p" => ("processes", None),
            // uWSGI's getopt also takes the value glued to the letter (`-p4`).
            None if arg.len() > 2
                && arg.starts_with("-p")
                && arg[2..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                ("processes", Some(arg[2..].to_string()))
            }
            None if arg == "-M" => ("master", None),
            None if arg == "-h" => ("help", None),
            None if arg.starts_with('-') && arg.len() > 1 => {
                return Err(format!("unknown option {arg}"));
            }
            None => {
                positional.push(arg);
                continue;
            }
        };
        // Takes the option's value: `--name=value` or the next argument.
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args
                .get(i)
                .ok_or_else(|| format!("option --{what} needs a value"))?;
            i += 1;
            Ok(v.clone())
        };
        match name {
            "" => return Err("unexpected \"--\"".to_string()),
            "help" => help = true,
            "version" => version = true,
            "ini" => ini = Some(value("ini")?),
            "dry-run" => dry_run = true,
            "username" => username = Some(value("username")?),
            "password" => password = Some(value("password")?),
            "backend" => {
                backend = Some(match value("backend")?.as_str() {
                    "sqlite" => InitBackend::Sqlite,
                    "postgresql" => InitBackend::PostgreSql,
                    "memory" => InitBackend::Memory,
                    other => {
                        return Err(format!(
                            "--backend {other:?}: expected sqlite, postgresql or memory"
                        ))
                    }
                })
            }
            "stop" | "reload" => signal = Some((PathBuf::from(value(name)?), name == "reload")),
            _ if FLAGS.contains(&name) => overrides.push((
                name.to_string(),
                inline.clone().unwrap_or_else(|| "true".to_string()),
            )),
            _ => {
                let v = value(name)?;
                overrides.push((name.to_string(), v));
            }
        }
    }
    let purge = if positional.first() == Some(&"purge-deleted") {
        let rest: Vec<String> = positional.drain(1..).map(str::to_string).collect();
        let usage = "purge-deleted needs RESOURCE... MAX_RETAINED (e.g. `purge-deleted record 0`)";
        let (last, resources) = rest.split_last().ok_or(usage)?;
        let max_retained = last
            .parse::<usize>()
            .map_err(|_| format!("{usage}: {last:?} is not a number"))?;
        if resources.is_empty() {
            return Err(usage.to_string());
        }
        Some((resources.to_vec(), max_retained))
    } else {
        None
    };
    if positional.len() > 1 {
        return Err(format!("unexpected argument {:?}", positional[1]));
    }
    let command = match (help, version, signal, positional.first().copied()) {
        (true, ..) | (_, _, _, Some("help")) => Command::Help,
        (_, true, ..) | (_, _, _, Some("version")) => Command::Version,
        (_, _, Some((pidfile, reload)), None) => Command::Signal { pidfile, reload },
        (_, _, Some(_), Some(cmd)) => {
            return Err(format!("--stop/--reload cannot be combined with {cmd:?}"))
        }
        (_, _, None, None | Some("start")) => Command::Start,
        (_, _, None, Some("init")) => Command::Init {
            backend: backend.unwrap_or(InitBackend::Sqlite),
        },
        (_, _, None, Some("migrate")) => Command::Migrate { dry_run },
        (_, _, None, Some("flush-cache")) => Command::FlushCache,
        (_, _, None, Some("purge-deleted")) => {
            let (resources, max_retained) = purge.unwrap_or_default();
            Command::PurgeDeleted {
                resources,
                max_retained,
            }
        }
        (_, _, None, Some("create-user")) => Command::CreateUser {
            username: username.take(),
            password: password.take(),
        },
        (_, _, None, Some(other)) => {
            return Err(format!(
                "unknown command {other:?} (expected start, init, migrate, flush-cache, \
                 create-user or version)"
            ))
        }
    };
    if backend.is_some() && !matches!(command, Command::Init { .. } | Command::Help) {
        return Err("--backend only applies to the init command".to_string());
    }
    if (username.is_some() || password.is_some())
        && !matches!(command, Command::CreateUser { .. } | Command::Help)
    {
        return Err("--username/--password only apply to the create-user command".to_string());
    }
    if dry_run && !matches!(command, Command::Migrate { .. } | Command::Help) {
        return Err("--dry-run only applies to the migrate command".to_string());
    }
    if !overrides.is_empty() && !matches!(command, Command::Start | Command::Help) {
        return Err(format!(
            "--{} is a server option: it only applies to the start command",
            overrides[0].0
        ));
    }
    Ok(Cli {
        command,
        ini,
        overrides,
    })
}

/// The ini path and the `[uwsgi]` section name: `--ini` wins over `KINTO_INI`, else the default.
/// uWSGI splits `PATH:SECTION` at the last colon.
pub fn ini_location(ini: Option<&str>, kinto_ini: Option<String>) -> (PathBuf, String) {
    let given = ini
        .map(str::to_string)
        .or(kinto_ini.filter(|v| !v.is_empty()))
        .unwrap_or_else(|| DEFAULT_INI.to_string());
    match given.rsplit_once(':') {
        Some((path, section))
            if !path.is_empty() && !section.is_empty() && !section.contains('/') =>
        {
            (PathBuf::from(path), section.to_string())
        }
        _ => (PathBuf::from(given), "uwsgi".to_string()),
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("kinto: {message}\n(run `kinto --help` for the usage)");
            return EXIT_USAGE;
        }
    };
    let (ini, section) = ini_location(cli.ini.as_deref(), std::env::var("KINTO_INI").ok());
    match cli.command {
        Command::Help => {
            println!("{USAGE}");
            0
        }
        Command::Version => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::Signal { pidfile, reload } => match master::signal_pidfile(&pidfile, reload) {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("{message}");
                1
            }
        },
        Command::Init { backend } => init(&ini, backend),
        Command::FlushCache => match load_settings(&ini) {
            Ok(settings) => crate::app::flush_cache(&settings),
            Err(code) => code,
        },
        Command::PurgeDeleted {
            resources,
            max_retained,
        } => match load_settings(&ini) {
            Ok(settings) => purge_deleted(&settings, &resources, max_retained),
            Err(code) => code,
        },
        Command::CreateUser { username, password } => match load_settings(&ini) {
            Ok(settings) => create_user(&settings, username, password),
            Err(code) => code,
        },
        Command::Migrate { dry_run } => match load_settings(&ini) {
            Ok(settings) => crate::app::migrate(&settings, dry_run),
            Err(code) => code,
        },
        Command::Start => {
            // Validated here too (not only in the master) so that a settings error exits 2.
            let settings = match load_settings(&ini) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            let invocation = master::Invocation {
                ini,
                section,
                overrides: cli.overrides,
            };
            // An invalid [uwsgi] section is reported by the master itself (exit 1).
            if let Ok(config) = master::ServerConfig::load(&invocation) {
                if let Err(e) = settings.check_processes(config.processes) {
                    eprintln!("{e}");
                    return EXIT_USAGE;
                }
            }
            // The logging sections and metrics settings are application settings too.
            if let Err(e) = KintoApp::new(settings) {
                eprintln!("{e}");
                return EXIT_USAGE;
            }
            master::run::<KintoApp>(invocation)
        }
    }
}

/// `kinto purge-deleted`: tombstones of every list of those resource types, but the
/// `max_retained` most recent of each, in one transaction.
fn purge_deleted(settings: &Settings, resources: &[String], max_retained: usize) -> i32 {
    let purged = crate::storage::connect(settings).and_then(|backend| {
        let fail = |e: crate::storage::BackendError| format!("storage error: {e:?}");
        let mut tx = backend.begin().map_err(fail)?;
        let mut count = 0;
        for resource in resources {
            match tx.purge_deleted_retaining(resource, "*", max_retained) {
                Ok(n) => count += n,
                Err(e) => {
                    let _ = tx.rollback();
                    return Err(fail(e));
                }
            }
        }
        tx.commit().map_err(fail)?;
        Ok(count)
    });
    match purged {
        Ok(count) => {
            println!("{count} tombstone(s) deleted.");
            0
        }
        Err(e) => {
            eprintln!("kinto purge-deleted: {e}");
            1
        }
    }
}

/// `kinto create-user`: Kinto's exit codes, 51 for a readonly server and 52 without the
/// accounts plugin; a missing username or password is read from a line of standard input.
fn create_user(settings: &Settings, username: Option<String>, password: Option<String>) -> i32 {
    if settings.readonly {
        eprintln!("Cannot create a user with a readonly server.");
        return 51;
    }
    if !settings.has_plugin("kinto.plugins.accounts") {
        eprintln!("Cannot create a user when the accounts plugin is not installed.");
        return 52;
    }
    let read = |what: &str, given: Option<String>| -> Option<String> {
        given.or_else(|| {
            eprint!("{what}: ");
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(n) if n > 0 => Some(line.trim_end_matches(['\r', '\n']).to_string()),
                _ => None,
            }
        })
    };
    let (Some(username), Some(password)) = (
        read("Username", username),
        read("Password", password).filter(|p| !p.is_empty()),
    ) else {
        eprintln!("kinto create-user: a username and a non-empty password are required");
        return EXIT_USAGE;
    };
    let backend = match crate::storage::connect(settings) {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("kinto create-user: cannot connect to the storage backend: {e}");
            return 1;
        }
    };
    match crate::accounts::create_user(settings, &*backend, &username, &password) {
        Ok(()) => {
            println!("User {username} created.");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn load_settings(ini: &Path) -> Result<Settings, i32> {
    Settings::load(ini).map_err(|e| {
        eprintln!("{e}");
        EXIT_USAGE
    })
}

/// `kinto init`: writes a commented configuration, never over an existing file.
fn init(ini: &Path, backend: InitBackend) -> i32 {
    if ini.exists() {
        eprintln!("{} already exists.", ini.display());
        return 1;
    }
    if let Some(dir) = ini.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("{}: cannot create the directory: {e}", dir.display());
            return 1;
        }
    }
    let secret: [u8; 32] = rand::random();
    let text = init_template(backend, &hex::encode(secret));
    // create_new: never overwrite, even if the file appeared since the check above.
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(ini)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = written {
        eprintln!("{}: cannot write the configuration: {e}", ini.display());
        return 1;
    }
    println!("Configuration written to {}.", ini.display());
    if backend == InitBackend::PostgreSql {
        println!(
            "Set the database URLs, then create the schema: kinto --ini {} migrate",
            ini.display()
        );
    }
    0
}

/// The configuration `kinto init` writes.
pub fn init_template(backend: InitBackend, secret: &str) -> String {
    let (backends, processes) = match backend {
        InitBackend::Sqlite => (
            "# Embedded SQLite database, in a file next to this ini (shared by the worker processes).\n\
             kinto.storage_backend = sqlite\n\
             kinto.storage_url = sqlite:///kinto.db\n\
             kinto.permission_backend = sqlite\n\
             kinto.permission_url = sqlite:///kinto.db\n\
             kinto.cache_backend = sqlite\n\
             kinto.cache_url = sqlite:///kinto.db\n",
            2,
        ),
        InitBackend::PostgreSql => (
            "# PostgreSQL (Kinto's own schema: `kinto --ini <this file> migrate` creates it).\n\
             kinto.storage_backend = kinto.core.storage.postgresql\n\
             kinto.storage_url = postgresql://postgres:postgres@localhost/postgres\n\
             kinto.permission_backend = kinto.core.permission.postgresql\n\
             kinto.permission_url = postgresql://postgres:postgres@localhost/postgres\n\
             kinto.cache_backend = kinto.core.cache.postgresql\n\
             kinto.cache_url = postgresql://postgres:postgres@localhost/postgres\n\
             # Connections per worker process.\n\
             # kinto.storage_pool_size = 25\n",
            4,
        ),
        InitBackend::Memory => (
            "# In-memory backends: data is lost on restart, and only one worker process can serve.\n\
             kinto.storage_backend = kinto.core.storage.memory\n\
             kinto.permission_backend = kinto.core.permission.memory\n\
             kinto.cache_backend = kinto.core.cache.memory\n",
            1,
        ),
    };
    format!(
        "# Kinto configuration written by `kinto init`.\n\
         # Every setting is listed in docs/settings.md; the [uwsgi] options in the README.\n\
         \n\
         [app:main]\n\
         use = egg:kinto\n\
         \n\
         {backends}\n\
         # Plugins and authentication.\n\
         kinto.includes = kinto.plugins.default_bucket\n\
         \x20                kinto.plugins.accounts\n\
         multiauth.policies = account\n\
         multiauth.policy.account.use = kinto.plugins.accounts.AccountsPolicy\n\
         # Accounts that may create accounts (here: anyone; an admin in production).\n\
         kinto.account_create_principals = system.Everyone\n\
         kinto.bucket_create_principals = system.Authenticated\n\
         \n\
         # Secret of the user ids and account cache keys: keep it private, never change it.\n\
         kinto.userid_hmac_secret = {secret}\n\
         \n\
         # kinto.http_scheme = https\n\
         # kinto.http_host = kinto.example.com\n\
         # kinto.paginate_by = 100\n\
         # kinto.readonly = false\n\
         \n\
         [uwsgi]\n\
         http-socket = 127.0.0.1:8888\n\
         processes = {processes}\n\
         master = true\n\
         harakiri = 120\n\
         buffer-size = 65535\n\
         post-buffering = 65535\n\
         \n\
         [loggers]\n\
         keys = root, kinto\n\
         \n\
         [handlers]\n\
         keys = console\n\
         \n\
         [formatters]\n\
         keys = color\n\
         \n\
         [logger_root]\n\
         level = INFO\n\
         handlers = console\n\
         \n\
         [logger_kinto]\n\
         level = INFO\n\
         handlers = console\n\
         qualname = kinto\n\
         \n\
         [handler_console]\n\
         class = StreamHandler\n\
         args = (sys.stderr,)\n\
         level = NOTSET\n\
         formatter = color\n\
         \n\
         [formatter_color]\n\
         format = %(asctime)s %(levelname)-5.5s [%(name)s] %(message)s\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_and_ini() {
        assert_eq!(parse(&args("")).unwrap().command, Command::Start);
        let cli = parse(&args("--ini k.ini migrate --dry-run")).unwrap();
        assert_eq!(cli.command, Command::Migrate { dry_run: true });
        assert_eq!(cli.ini.as_deref(), Some("k.ini"));
        assert_eq!(
            parse(&args("init --backend postgresql")).unwrap().command,
            Command::Init {
                backend: InitBackend::PostgreSql
            }
        );
        assert_eq!(parse(&args("--help")).unwrap().command, Command::Help);
        assert_eq!(parse(&args("-h start")).unwrap().command, Command::Help);
        assert_eq!(parse(&args("--version")).unwrap().command, Command::Version);
        assert_eq!(parse(&args("version")).unwrap().command, Command::Version);
        assert_eq!(
            parse(&args("flush-cache")).unwrap().command,
            Command::FlushCache
        );
    }

    #[test]
    fn uwsgi_overrides() {
        let cli = parse(&args(
            "--ini=x.ini --http-socket 127.0.0.1:0 -p 3 --master --harakiri=5 start --lazy-apps -p4 -M",
        ))
        .unwrap();
        assert_eq!(cli.command, Command::Start);
        let expected = [
            ("http-socket", "127.0.0.1:0"),
            ("processes", "3"),
            ("master", "true"),
            ("harakiri", "5"),
            ("lazy-apps", "true"),
            ("processes", "4"),
            ("master", "true"),
        ];
        let got: Vec<(&str, &str)> = cli
            .overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn usage_errors() {
        for line in [
            "frobnicate",
            "start migrate",
            "--processes",
            "init --backend redis",
            "start --dry-run",
            "migrate --backend sqlite",
            "migrate --processes 2",
            "-x",
            "-pfour",
            "--stop pid start",
        ] {
            assert!(parse(&args(line)).is_err(), "{line}");
        }
    }

    #[test]
    fn ini_resolution() {
        assert_eq!(
            ini_location(None, None),
            (PathBuf::from("config/kinto.ini"), "uwsgi".to_string())
        );
        assert_eq!(
            ini_location(None, Some("/etc/k.ini".into())).0,
            PathBuf::from("/etc/k.ini")
        );
        assert_eq!(
            ini_location(Some("a.ini"), Some("/etc/k.ini".into())).0,
            PathBuf::from("a.ini")
        );
        assert_eq!(
            ini_location(Some("/etc/k.ini:server"), None),
            (PathBuf::from("/etc/k.ini"), "server".to_string())
        );
        assert_eq!(
            ini_location(Some("c:/x/k.ini"), None).1,
            "uwsgi".to_string()
        );
    }

    #[test]
    fn init_templates_load() {
        for backend in [
            InitBackend::Sqlite,
            InitBackend::PostgreSql,
            InitBackend::Memory,
        ] {
            let text = init_template(backend, "s3cr3t");
            let s = Settings::from_text(Path::new("/tmp/x/kinto.ini"), &text, &|_| None)
                .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
            assert_eq!(s.userid_hmac_secret, "s3cr3t");
            assert!(s.has_plugin("kinto.plugins.accounts"));
            let processes = if backend == InitBackend::Memory { 1 } else { 2 };
            assert!(s.check_processes(processes).is_ok());
            let expected = match backend {
                InitBackend::Sqlite => "/tmp/x/kinto.db",
                InitBackend::PostgreSql => "postgresql://postgres:postgres@localhost/postgres",
                InitBackend::Memory => crate::settings::MEMORY,
            };
            assert_eq!(s.storage.url, expected);
        }
    }
}
