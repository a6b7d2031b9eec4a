//! Logging configured like Kinto's from the ini's `[loggers]`/`[handlers]`/`[formatters]`
//! sections and `logging_renderer`: classic text or mozlog ("Heka") JSON lines, to streams, files,
//! syslog and Sentry. It is the `log` crate's backend, and writes the per-request summary records.
//!
//! Layout: `ini` and `pyargs` read the configuration text, `config` turns it into data, `record`,
//! `format` and `render` make the lines, `output` and `sentry` deliver them, `summary` builds the
//! per-request records, `redact` keeps secrets out. A [`Logger`] is one process's opened setup;
//! `installed` holds the process-wide one ([`install`]: call it in each worker after the fork, since
//! files, sockets and the Sentry thread belong to one process).
//!
//! Logger names: the `log` macros' targets, `request.summary`, `subrequest.summary`, and `root` for
//! uncaught errors. Where the ini configures a `cliquet` logger (the production docs do) but none for
//! `request.summary` or `kinto.core`, the `cliquet` one governs them, as it did when cliquet wrote them.
//!
//! Deliberate differences from Python's logging and Kinto:
//! - a record reaches each handler at most once, even when a logger and its ancestors list the same
//!   handler (Python prints it twice with the production docs' configuration);
//! - the Sentry handler sends ERROR and above only, whatever its configured level;
//! - the request summary's DEBUG-level `headers`/`body` fields are not written, so that credentials
//!   never reach the logs;
//! - the Heka renderer names write nested `Fields` (the `querystring` object) as Kinto 26's
//!   JsonLogFormatter does, where cliquet's Heka renderer wrote them as JSON strings.

mod clock;
mod config;
mod format;
mod ini;
mod installed;
mod output;
mod pyargs;
mod record;
mod redact;
mod render;
mod sentry;
mod summary;

pub use config::{HandlerConf, LoggerConf, LoggingConfig};
pub use installed::{
    emit, init_from_settings, install, install_panic_hook, request_summary, set_request_id,
    subrequest_summary, uncaught_error,
};
pub use output::{OutputSpec, SyslogAddress};
pub use record::Level;
pub use redact::redact_url;
pub use render::Renderer;
pub use summary::{request_id, RequestSummary};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Map, Value};

use format::Context;
use installed::current_request_id;
use output::Output;
use record::Record;
use render::Envelope;
use summary::summary_fields;

/// One process's opened logging setup.
pub struct Logger {
    config: LoggingConfig,
    outputs: Vec<Output>,
    envelope: Envelope,
    /// Effective level and handlers per logger name, computed on first use of each name.
    routes: Mutex<HashMap<String, Arc<Route>>>,
}

struct Route {
    level: Level,
    handlers: Vec<usize>,
}

impl Logger {
    /// Opens every handler's file or socket.
    pub fn open(config: &LoggingConfig) -> Result<Logger, String> {
        let outputs = config
            .handlers
            .iter()
            .map(|h| Output::open(&h.output).map_err(|e| format!("[handler_{}]: {e}", h.name)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Logger {
            config: config.clone(),
            outputs,
            envelope: Envelope {
                project_name: config.project_name.clone(),
                hostname: hostname(),
                pid: std::process::id(),
            },
            routes: Mutex::new(HashMap::new()),
        })
    }

    /// Sentry events dropped so far (queue full), over all Sentry handlers.
    pub fn sentry_dropped(&self) -> u64 {
        self.outputs
            .iter()
            .map(|o| match o {
                Output::Sentry(s) => s.dropped(),
                _ => 0,
            })
            .sum()
    }

    /// Whether a record of `level` on `logger` would be handled (its effective level).
    pub fn enabled(&self, logger: &str, level: Level) -> bool {
        level >= self.route(logger).level
    }

    /// Logs `message` with structured `fields` on the dotted `logger` name.
    pub fn log(&self, logger: &str, level: Level, message: &str, fields: &Map<String, Value>) {
        self.dispatch(&Record {
            logger,
            level,
            message,
            fields,
            time: SystemTime::now(),
            module: None,
            file: None,
            line: None,
        });
    }

    /// The `request.summary` record of one top-level request (INFO, no message).
    pub fn request_summary(&self, summary: &RequestSummary<'_>) {
        if self.enabled("request.summary", Level::Info) {
            let fields = summary_fields(summary);
            self.log("request.summary", Level::Info, "", &fields);
        }
    }

    /// The `subrequest.summary` record of one batch sub-request (INFO, `msg` = the logger name).
    pub fn subrequest_summary(&self, summary: &RequestSummary<'_>) {
        if self.enabled("subrequest.summary", Level::Info) {
            let fields = summary_fields(summary);
            self.log(
                "subrequest.summary",
                Level::Info,
                "subrequest.summary",
                &fields,
            );
        }
    }

    fn route(&self, logger: &str) -> Arc<Route> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = routes.get(logger) {
            return route.clone();
        }
        // The logger, then its ancestors up to the root (`""`), as Python's hierarchy walks.
        let mut chain = vec![logger];
        let mut name = logger;
        while let Some((parent, _)) = name.rsplit_once('.') {
            chain.push(parent);
            name = parent;
        }
        // In the production docs' era, cliquet (now `kinto.core`) wrote the request summaries from
        // its own modules: a `cliquet` logger still governs them unless the ini names theirs.
        let cliquet_era = ["kinto.core", "request.summary", "subrequest.summary"]
            .iter()
            .any(|n| logger == *n || logger.starts_with(&format!("{n}.")));
        if cliquet_era && !chain.iter().any(|n| self.config.loggers.contains_key(*n)) {
            chain.push("cliquet");
        }
        if !logger.is_empty() {
            chain.push("");
        }
        let configured: Vec<&LoggerConf> = chain
            .iter()
            .filter_map(|n| self.config.loggers.get(*n))
            .collect();
        let level = configured
            .iter()
            .map(|l| l.level)
            .find(|l| *l != Level::NotSet)
            .unwrap_or(Level::NotSet);
        let mut handlers: Vec<usize> = Vec::new();
        for conf in &configured {
            for h in &conf.handlers {
                if !handlers.contains(h) {
                    handlers.push(*h);
                }
            }
            if !conf.propagate {
                break;
            }
        }
        let route = Arc::new(Route { level, handlers });
        // Names come from code (targets, fixed logger names): the map stays small.
        routes.insert(logger.to_owned(), route.clone());
        route
    }

    fn dispatch(&self, record: &Record<'_>) {
        let route = self.route(record.logger);
        if record.level < route.level {
            return;
        }
        let rid = current_request_id();
        let mut rendered: [Option<String>; 2] = [None, None];
        for &index in &route.handlers {
            let handler = &self.config.handlers[index];
            if record.level < handler.level {
                continue;
            }
            let output = &self.outputs[index];
            if let Output::Sentry(sentry) = output {
                let mut fields = record.fields.clone();
                if let Some(rid) = &rid {
                    fields
                        .entry("rid")
                        .or_insert_with(|| Value::String(rid.clone()));
                }
                sentry.capture(&sentry::Event {
                    logger: record.logger,
                    level: record.level.sentry_name(),
                    message: record.message,
                    fields: &fields,
                    time: record.time,
                    server_name: &self.envelope.hostname,
                });
                continue;
            }
            let style = if handler.formatter.json {
                Renderer::Mozlog
            } else {
                self.config.renderer
            };
            let slot = &mut rendered[style as usize];
            let message = slot.get_or_insert_with(|| match style {
                Renderer::Mozlog => render::mozlog(record, &self.envelope, rid.as_deref()),
                Renderer::Classic => render::classic(record, rid.as_deref()),
            });
            let line = handler.formatter.format(
                record,
                &Context {
                    pid: self.envelope.pid,
                    message,
                },
            );
            output.write_line(&line, record.level);
        }
    }

    /// The most verbose level any logger lets through, for `log::set_max_level`.
    fn max_level(&self) -> log::LevelFilter {
        let root = self
            .config
            .loggers
            .get("")
            .map_or(Level::Warning, |l| l.level);
        let most_verbose = self
            .config
            .loggers
            .values()
            .map(|l| l.level)
            .filter(|l| *l != Level::NotSet)
            .chain(std::iter::once(root))
            .min()
            .unwrap_or(Level::Warning);
        match most_verbose {
            Level::NotSet | Level::Debug => log::LevelFilter::Trace,
            Level::Info => log::LevelFilter::Info,
            Level::Warning => log::LevelFilter::Warn,
            Level::Error | Level::Critical => log::LevelFilter::Error,
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_hierarchy() {
        let config = LoggingConfig::from_ini_str(
            "[loggers]\nkeys = root, kinto, summary\n[handlers]\nkeys = a, b\n\
             [logger_root]\nlevel = WARNING\nhandlers = a\n\
             [logger_kinto]\nlevel = DEBUG\nhandlers = a, b\nqualname = kinto\n\
             [logger_summary]\nlevel = ERROR\nhandlers = b\nqualname = request.summary\npropagate = 0\n\
             [handler_a]\nclass = NullHandler\n[handler_b]\nclass = NullHandler\n",
            std::path::Path::new("k.ini"),
            "kinto",
            None,
        )
        .unwrap();
        let logger = Logger::open(&config).unwrap();
        let r = logger.route("kinto.core.storage");
        assert_eq!(
            (r.level, r.handlers.clone()),
            (Level::Debug, vec![0, 1]),
            "no duplicate handler"
        );
        let r = logger.route("request.summary");
        assert_eq!((r.level, r.handlers.clone()), (Level::Error, vec![1]));
        let r = logger.route("other");
        assert_eq!((r.level, r.handlers.clone()), (Level::Warning, vec![0]));
        assert!(!logger.enabled("request.summary", Level::Info));

        let config = LoggingConfig::from_ini_str(
            "[loggers]\nkeys = root, cliquet\n[handlers]\nkeys = a\n\
             [logger_root]\nlevel = INFO\nhandlers = a\n\
             [logger_cliquet]\nlevel = ERROR\nhandlers = a\nqualname = cliquet\n\
             [handler_a]\nclass = NullHandler\n",
            std::path::Path::new("k.ini"),
            "kinto",
            None,
        )
        .unwrap();
        let cliquet = Logger::open(&config).unwrap();
        assert!(
            !cliquet.enabled("request.summary", Level::Info),
            "cliquet's level applies"
        );
        assert!(!cliquet.enabled("kinto.core.storage", Level::Warning));
        assert!(cliquet.enabled("kinto.api", Level::Info));
        assert_eq!(logger.max_level(), log::LevelFilter::Trace);
    }
}
