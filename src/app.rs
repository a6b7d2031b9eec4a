//! The glue between the process manager and the Kinto application: the master loads and validates
//! the configuration (no resources), each forked worker connects its own backends and serves.

use crate::settings::Settings;
use crate::{api, cache, storage};
use master::{Invocation, ServerConfig, WorkerContext};
use std::path::Path;
use std::sync::Arc;

/// Kinto as a `master::App`: the validated settings, shared by every worker after fork.
pub struct KintoApp {
    settings: Arc<Settings>,
}

impl master::App for KintoApp {
    fn load(ini: &Path, invocation: &Invocation) -> Result<(ServerConfig, Self), String> {
        let config = ServerConfig::load(invocation)?;
        let settings = Settings::load(ini).map_err(|e| e.to_string())?;
        settings
            .check_processes(config.processes)
            .map_err(|e| e.to_string())?;
        let settings = Arc::new(settings);
        Ok((config, KintoApp { settings }))
    }

    fn work(&self, ctx: WorkerContext) -> i32 {
        let id = ctx.id;
        // Connections are made here, after fork: a pool must never be shared across processes.
        let backend = match storage::connect(&self.settings) {
            Ok(backend) => backend,
            Err(e) => return init_failed(id, "storage", &e),
        };
        let cache = match cache::connect(&self.settings) {
            Ok(cache) => cache,
            Err(e) => return init_failed(id, "cache", &e),
        };
        let app = api::App::new(self.settings.clone(), backend, cache);
        // Initialised: the master's READY=1 waits for every slot to get here.
        ctx.slot.set_accepting();
        worker::serve(ctx, app)
    }
}

/// A worker that cannot build its application exits with uWSGI's "app failed" code, which tells
/// the master to stop instead of respawning in a loop.
fn init_failed(id: usize, role: &str, error: &str) -> i32 {
    master::log::line(&format!(
        "worker {id}: cannot initialise the {role} backend: {error}"
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
                    for statement in statements {
                        println!("{}", statement.trim_end());
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
