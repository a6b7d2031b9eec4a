//! The glue between the process manager and the Kinto application: the master loads and validates
//! the configuration (no resources), each forked worker opens its own logging outputs, connects its
//! own backends and serves.

use crate::logging::{self, Logger, LoggingConfig};
use crate::metrics::{Aggregates, Metrics, MetricsConfig};
use crate::settings::Settings;
use crate::{api, cache, storage};
use master::{Invocation, ServerConfig, WorkerContext};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

/// Kinto as a `master::App`: the validated configuration, shared by every worker after fork.
pub struct KintoApp {
    settings: Arc<Settings>,
    logging: LoggingConfig,
    metrics: MetricsConfig,
    /// The Prometheus aggregates every worker adds to (`kinto.plugins.prometheus` only): mapped
    /// here, before the fork, so that a scrape sums all the workers.
    aggregates: Option<Aggregates>,
    /// The accounts epoch every worker reads before trusting a remembered account verification,
    /// mapped in the master before the first fork, so a password change in one worker reaches
    /// all of them: the master's one counter, which the workers of every lazy reload share too.
    accounts_epoch: api::verified::Epoch,
}

impl KintoApp {
    /// Checks what the settings alone do not: the logging sections of the ini and the metrics
    /// settings. Nothing is opened (files, sockets and pools belong to the workers).
    pub fn new(settings: Settings) -> Result<KintoApp, String> {
        let file = settings.ini_path.display();
        let logging =
            LoggingConfig::from_settings(&settings).map_err(|e| format!("{file}: {e}"))?;
        let metrics = MetricsConfig::from_settings(&settings)
            .map_err(|e| format!("{file}: [{}] {e}", crate::settings::SECTION))?;
        // The accounts plugin's own startup checks, as Kinto's `includeme` makes them.
        crate::accounts::check_settings(&settings)
            .map_err(|e| format!("{file}: [{}] {e}", crate::settings::SECTION))?;
        let aggregates = metrics.prometheus.then(Aggregates::new);
        Ok(KintoApp {
            settings: Arc::new(settings),
            logging,
            metrics,
            aggregates,
            accounts_epoch: api::verified::Epoch::process(),
        })
    }
}

impl master::App for KintoApp {
    fn load(ini: &Path, invocation: &Invocation) -> Result<(ServerConfig, Self), String> {
        let config = ServerConfig::load(invocation)?;
        let settings = Settings::load(ini).map_err(|e| e.to_string())?;
        settings
            .check_processes(config.processes)
            .map_err(|e| e.to_string())?;
        Ok((config, KintoApp::new(settings)?))
    }

    fn work(&self, ctx: WorkerContext) -> i32 {
        let id = ctx.id;
        match Logger::open(&self.logging) {
            Ok(logger) => logging::install(logger),
            Err(e) => return init_failed(id, "logging", &e),
        }
        // Connections are made here, after fork: a pool must never be shared across processes.
        let backend = match storage::connect(&self.settings) {
            Ok(backend) => backend,
            Err(e) => return init_failed(id, "storage backend", &e),
        };
        let cache = match cache::connect(&self.settings) {
            Ok(cache) => cache,
            Err(e) => return init_failed(id, "cache backend", &e),
        };
        // The StatsD socket is the worker's own.
        let metrics = Metrics::with_aggregates(&self.metrics, self.aggregates.as_ref());
        let app = api::App::new(self.settings.clone(), backend, cache)
            .with_metrics(metrics)
            .with_accounts_epoch(self.accounts_epoch.clone());
        // Kinto's startup line, once per process as under uWSGI with lazy-apps.
        log::info!(
            target: "kinto.core",
            "Running {} {}.",
            self.settings.project_name,
            self.settings.project_version
        );
        // Initialised: the master's READY=1 waits for every slot to get here.
        ctx.slot.set_accepting();
        worker::serve(ctx, app)
    }
}

/// A worker that cannot build its application exits with uWSGI's "app failed" code (with
/// `need-app`, the master then stops instead of respawning in a loop).
fn init_failed(id: usize, what: &str, error: &str) -> i32 {
    master::log::line(&format!(
        "worker {id}: cannot initialise the {what}: {error}"
    ));
    master::EXIT_INIT_FAILED
}

/// `kinto migrate`: creates or upgrades the schemas of the cache, then of the storage and
/// permission database (Kinto's order); with `dry_run`, prints the SQL instead of running it.
pub fn migrate(settings: &Settings, dry_run: bool) -> i32 {
    let cache = cache::connect(settings).map(|c| c.migrate(dry_run));
    let storage = storage::connect(settings).map(|b| b.migrate(dry_run));
    for (role, result) in [("cache", cache), ("storage", storage)] {
        match result {
            Ok(Ok(statements)) => {
                if dry_run {
                    // A closed pipe (`kinto migrate --dry-run | head`) ends the listing quietly.
                    let mut out = std::io::stdout().lock();
                    for statement in statements {
                        if writeln!(out, "{}", statement.trim_end()).is_err() {
                            break;
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                eprintln!("kinto migrate: {role} schema: {e:?}");
                return 1;
            }
            Err(e) => {
                eprintln!("kinto migrate: cannot connect to the {role} backend: {e}");
                return 1;
            }
        }
    }
    0
}

/// `kinto flush-cache`: removes every cache entry (pagination tokens, verified account passwords).
pub fn flush_cache(settings: &Settings) -> i32 {
    let flushed = cache::connect(settings).and_then(|c| c.flush().map_err(|e| format!("{e:?}")));
    match flushed {
        Ok(()) => {
            println!("Cache has been cleared.");
            0
        }
        Err(e) => {
            eprintln!("kinto flush-cache: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_the_accounts_epoch() {
        // A lazy reload builds a new application in the same master: the workers still draining
        // and the new ones must see each other's password changes.
        let ini = std::env::temp_dir().join(format!("kinto-app-{}.ini", std::process::id()));
        std::fs::write(&ini, "[app:main]\n").unwrap();
        let before = KintoApp::new(Settings::load(&ini).unwrap()).unwrap();
        let after = KintoApp::new(Settings::load(&ini).unwrap()).unwrap();
        let _ = std::fs::remove_file(&ini);
        let seen = after.accounts_epoch.current();
        before.accounts_epoch.bump();
        assert_ne!(after.accounts_epoch.current(), seen);
    }
}
