//! Pre-fork process manager driven by a uWSGI `[uwsgi]` ini section.
//!
//! It reads the section with uWSGI's own dialect, binds (or inherits) the listening sockets, drops
//! privileges, forks the workers and supervises them through a shared scoreboard (harakiri, respawn,
//! reload, shutdown, systemd notifications). It knows nothing of Kinto: the application plugs in
//! through [`App`], whose worker entry point runs in each forked child.
//!
//! Layout: `config` (dialect, option registry, `ServerConfig`), `listener` (socket forms),
//! `scoreboard` (shared slots), `context` (what a worker receives), `run` (the master loop).

pub mod config;
pub mod context;
pub mod listener;
pub mod scoreboard;

pub use config::ServerConfig;
pub use context::WorkerContext;
pub use listener::{ListenSocket, Listener};
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
    /// Loads and validates the whole configuration from the ini file (the `[uwsgi]` section and the
    /// application's own sections). Called at startup and on every reload, in the master.
    fn load(ini: &Path, invocation: &Invocation) -> Result<(ServerConfig, Self), String>;
    /// Runs in the forked worker; returns the worker's exit code.
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

/// Runs the master until shutdown and returns the process exit code.
pub fn run<A: App>(invocation: Invocation) -> i32 {
    let _ = invocation;
    unimplemented!("master loop")
}
