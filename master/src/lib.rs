//! Pre-fork process manager driven by a uWSGI `[uwsgi]` ini section.
//!
//! It reads the section with uWSGI's own dialect, binds (or inherits) the listening sockets, drops
//! privileges, forks the workers and supervises them through a shared scoreboard (harakiri, respawn,
//! reload, shutdown, systemd notifications). It knows nothing of Kinto: the application plugs in
//! through [`App`], whose worker entry point runs in each forked child.
//!
//! Layout: `dialect` (uWSGI's ini reader and substitutions), `logic` (includes and `if-*`/`for`
//! blocks), `registry` (the option table, its notices and docs), `config` (`ServerConfig`),
//! `listener` (socket forms, bind, inherit), `privileges`, `procname` (process titles),
//! `scoreboard` (shared slots), `signals` (self-pipe), `notify` (sd_notify), `stats` (the stats
//! server), `context` (what a worker receives), `spawn` (the child side of fork), `run` (the
//! master loop), `log` (line writing). `README.md` lists where we depart from uWSGI on purpose.

pub mod config;
pub mod context;
pub mod dialect;
pub mod listener;
pub mod log;
mod logic;
mod notify;
mod privileges;
mod procname;
pub mod registry;
mod run;
pub mod scoreboard;
mod signals;
mod spawn;
mod stats;

pub use config::{ServerConfig, SocketKind, SocketSpec};
pub use context::WorkerContext;
pub use listener::{ListenSocket, Listener};
pub use registry::docs_markdown;
pub use scoreboard::SlotHandle;

use std::path::Path;

/// Exit code of a worker whose application failed to initialise (uWSGI's "app failed").
pub const EXIT_INIT_FAILED: i32 = 22;
/// Exit code of a worker that stopped gracefully (SIGHUP, recycling).
pub const EXIT_GRACEFUL: i32 = 17;
/// Exit code of a worker stopped by SIGINT/SIGTERM or after the master died.
pub const EXIT_END: i32 = 30;

/// The application the master serves. Loaded in the master (validation only, no resources), then
/// handed to every worker after fork, where `work` builds its resources and serves.
pub trait App: Sized {
    /// Product name in the startup banner (`*** Starting <NAME> <VERSION> ...`).
    const NAME: &'static str = "kinto";
    /// Version in the startup banner.
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    /// Loads and validates the whole configuration from the ini file (the `[uwsgi]` section and the
    /// application's own sections). Called at startup and on every reload, in the master.
    fn load(ini: &Path, invocation: &Invocation) -> Result<(ServerConfig, Self), String>;
    /// Runs in the forked worker; returns the worker's exit code. The slot must be marked
    /// accepting once initialised (the master's `READY=1` waits for it): `worker::serve` does it
    /// after installing the worker's signal handlers, so `work` need not.
    fn work(&self, ctx: WorkerContext) -> i32;
}

/// How the binary was started: the ini path and `[uwsgi]` options given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// The ini path as given (`%o`); resolved to an absolute path once at startup.
    pub ini: std::path::PathBuf,
    /// The section to read (`--ini PATH:SECTION`), `uwsgi` by default.
    pub section: String,
    /// `(option, value)` pairs from the command line, applied after the file.
    pub overrides: Vec<(String, String)>,
}

impl Invocation {
    /// Parses `--ini PATH[:SECTION]` (else `KINTO_INI`, else `config/kinto.ini`) and any other
    /// `--option VALUE` / `--option=VALUE` as a `[uwsgi]` override (a boolean option not followed
    /// by a boolean literal gets an empty value, which reads as true). Arguments not
    /// starting with `--` are returned for the caller (subcommands).
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> (Invocation, Vec<String>) {
        let mut inv = Invocation::default();
        let mut rest = Vec::new();
        let mut ini: Option<String> = None;
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                rest.push(arg);
                continue;
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    // A boolean flag only takes the next argument when it reads as a boolean,
                    // so that `--lazy start` leaves `start` to the caller.
                    let is_bool = registry::lookup(name)
                        .is_some_and(|spec| spec.kind == registry::Kind::Bool);
                    let value = match args.peek() {
                        Some(next)
                            if !next.starts_with("--") && (!is_bool || is_bool_literal(next)) =>
                        {
                            args.next().unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    (name.to_string(), value)
                }
            };
            if name == "ini" {
                ini = Some(value);
            } else {
                inv.overrides.push((name, value));
            }
        }
        let ini = ini
            .or_else(|| std::env::var("KINTO_INI").ok())
            .unwrap_or_else(|| "config/kinto.ini".to_string());
        // uWSGI splits PATH:SECTION at the last colon.
        match ini.rsplit_once(':') {
            Some((path, section)) if !section.is_empty() && !section.contains('/') => {
                inv.ini = path.into();
                inv.section = section.to_string();
            }
            _ => inv.ini = ini.into(),
        }
        (inv, rest)
    }
}

fn is_bool_literal(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "1" | "0"
    )
}

/// `--stop PIDFILE` / `--reload PIDFILE` (uWSGI's convenience commands): sends SIGINT or SIGHUP to
/// the pid read from the file. The caller exits 0 on success, 1 with the message otherwise.
pub fn signal_pidfile(pidfile: &Path, reload: bool) -> Result<(), String> {
    let text = std::fs::read_to_string(pidfile)
        .map_err(|e| format!("unable to read pidfile {}: {e}", pidfile.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("invalid pidfile {}: {:?}", pidfile.display(), text.trim()))?;
    let signal = if reload {
        nix::sys::signal::Signal::SIGHUP
    } else {
        nix::sys::signal::Signal::SIGINT
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .map_err(|e| format!("unable to signal pid {pid}: {e}"))
}

/// Runs the master until shutdown and returns the process exit code.
pub fn run<A: App>(invocation: Invocation) -> i32 {
    run::run::<A>(invocation)
}
