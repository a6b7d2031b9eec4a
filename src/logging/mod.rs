//! Logging configured like Kinto's from the ini's `[loggers]`/`[handlers]`/`[formatters]`
//! sections and `logging_renderer`: classic text or mozlog ("Heka") JSON lines, to streams, files,
//! syslog and Sentry. It is the `log` crate's backend, and writes the per-request summary records.
//!
//! Layout: `ini` and `pyargs` read the configuration text, `config` turns it into data, `record`,
//! `format` and `render` make the lines, `output` and `sentry` deliver them. A [`Logger`] is one
//! process's opened setup; [`install`] makes it the process-wide one (call it in each worker after
//! the fork: files, sockets and the Sentry thread belong to one process).
//!
//! Logger names: the `log` macros' targets, `request.summary`, `subrequest.summary`, and `root` for
//! uncaught errors. Where the ini configures a `cliquet` logger (the production docs do) but none for
//! `request.summary` or `kinto.core`, the `cliquet` one governs them, as it did when cliquet wrote them.
//!
//! Deliberate differences from Python's logging: a record reaches each handler at most once even when
//! a logger and its ancestors list the same handler (Python would print it twice with the production
//! docs' configuration); the Sentry handler sends ERROR and above only; the request summary's DEBUG-level `headers`/`body` fields are not written, so that credentials never
//! reach the logs.

mod clock;
mod config;
mod format;
mod ini;
mod output;
mod pyargs;
mod record;
mod render;
mod sentry;

pub use config::{HandlerConf, LoggerConf, LoggingConfig};
pub use output::{OutputSpec, SyslogAddress};
pub use record::Level;
pub use render::Renderer;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use format::Context;
use output::Output;
use record::Record;
use render::Envelope;

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

/// What Kinto's `request.summary` line says about one request (API.md 10.2).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSummary<'a> {
    pub method: &'a str,
    /// URL path including `/v1`.
    pub path: &'a str,
    /// Raw query string without `?` (decoded into the `querystring` object).
    pub query: Option<&'a str>,
    pub code: u16,
    /// 0 on success, the error's errno otherwise.
    pub errno: u32,
    pub duration: Duration,
    /// `User-Agent`.
    pub agent: Option<&'a str>,
    /// `Accept-Language`.
    pub lang: Option<&'a str>,
    /// Request id (`X-Request-Id` or generated, see [`request_id`]); the thread's current one if `None`.
    pub rid: Option<&'a str>,
    /// User id without the policy prefix, authenticated requests only.
    pub uid: Option<&'a str>,
    /// Authentication policy name, authenticated requests only.
    pub authn_type: Option<&'a str>,
    /// Number of sub-requests, batch requests only.
    pub batch_size: Option<usize>,
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

fn summary_fields(s: &RequestSummary<'_>) -> Map<String, Value> {
    let mut fields = Map::with_capacity(14);
    if let Some(agent) = s.agent {
        fields.insert("agent".into(), agent.into());
    }
    fields.insert("path".into(), s.path.into());
    fields.insert("method".into(), s.method.into());
    if let Some(lang) = s.lang {
        fields.insert("lang".into(), lang.into());
    }
    if let Some(rid) = s.rid.map(str::to_owned).or_else(current_request_id) {
        fields.insert("rid".into(), rid.into());
    }
    fields.insert("errno".into(), s.errno.into());
    let query = querystring(s.query.unwrap_or(""));
    if !query.is_empty() {
        fields.insert("querystring".into(), Value::Object(query));
    }
    if let Some(uid) = s.uid {
        fields.insert("uid".into(), uid.into());
    }
    if let Some(authn_type) = s.authn_type {
        fields.insert("authn_type".into(), authn_type.into());
    }
    fields.insert("time".into(), clock::isoformat(SystemTime::now()).into());
    fields.insert("code".into(), s.code.into());
    fields.insert("t".into(), (s.duration.as_millis() as u64).into());
    if let Some(size) = s.batch_size {
        fields.insert("batch_size".into(), size.into());
    }
    fields
}

/// The query string as Kinto logs it: decoded parameters, the last of repeated names winning.
fn querystring(query: &str) -> Map<String, Value> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut map = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(decode(k), Value::String(decode(v)));
    }
    map
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

// ---------------------------------------------------------------------------------------------
// The process-wide logger.

static CURRENT: RwLock<Option<Arc<Logger>>> = RwLock::new(None);
static FACADE: Facade = Facade;

thread_local! {
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Makes `logger` the process-wide logger: the `log` macros and the functions below use it.
/// Calling it again (after a reload) replaces the previous one.
pub fn install(logger: Logger) {
    let max = logger.max_level();
    *CURRENT.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(logger));
    // Only our facade is ever set; a second call finds it already in place.
    let _ = log::set_logger(&FACADE);
    log::set_max_level(max);
}

/// Parses, opens and installs the logging of the settings' ini file in one call. Under the master,
/// parse with [`LoggingConfig::from_settings`] in the master (where the ini is read and errors stop
/// the start) and call `install(Logger::open(&config)?)` in each worker instead.
pub fn init_from_settings(settings: &crate::settings::Settings) -> Result<(), String> {
    let config = LoggingConfig::from_settings(settings)?;
    install(Logger::open(&config)?);
    Ok(())
}

fn current() -> Option<Arc<Logger>> {
    CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Sets (or clears with `None`) the request id added as `rid` to every record of this thread.
pub fn set_request_id(rid: Option<&str>) {
    REQUEST_ID.with(|r| *r.borrow_mut() = rid.map(str::to_owned));
}

fn current_request_id() -> Option<String> {
    REQUEST_ID.with(|r| r.borrow().clone())
}

/// The request id of a request: its `X-Request-Id` header when present and sane, else a UUID4.
pub fn request_id(header: Option<&str>) -> String {
    match header.map(str::trim) {
        Some(h) if !h.is_empty() && h.len() <= 128 && h.bytes().all(|b| b.is_ascii_graphic()) => {
            h.to_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Logs the `request.summary` record through the installed logger.
pub fn request_summary(summary: &RequestSummary<'_>) {
    if let Some(logger) = current() {
        logger.request_summary(summary);
    }
}

/// Logs a `subrequest.summary` record through the installed logger.
pub fn subrequest_summary(summary: &RequestSummary<'_>) {
    if let Some(logger) = current() {
        logger.subrequest_summary(summary);
    }
}

/// Logs through the installed logger, with any level (CRITICAL included) and structured fields.
pub fn emit(logger: &str, level: Level, message: &str, fields: &Map<String, Value>) {
    if let Some(current) = current() {
        current.log(logger, level, message, fields);
    }
}

/// An uncaught error of a request (500): logged on the root logger at ERROR with `path`,
/// `method`, `errno`, `querystring`, `error` and `traceback` (API.md 10.2); Sentry gets it.
pub fn uncaught_error(summary: &RequestSummary<'_>, error: &str, traceback: &str) {
    let Some(logger) = current() else {
        return;
    };
    let mut fields = Map::new();
    fields.insert("path".into(), summary.path.into());
    fields.insert("method".into(), summary.method.into());
    fields.insert("errno".into(), summary.errno.into());
    let query = querystring(summary.query.unwrap_or(""));
    if !query.is_empty() {
        fields.insert("querystring".into(), Value::Object(query));
    }
    if let Some(rid) = summary.rid {
        fields.insert("rid".into(), rid.into());
    }
    fields.insert("error".into(), error.into());
    fields.insert("traceback".into(), traceback.into());
    logger.log("root", Level::Error, error, &fields);
}

/// Logs panics on the root logger at ERROR (so the Sentry handler reports them), with the panic
/// message as `error`, its location, the thread's request id and a backtrace as `traceback`.
/// Before a logger is installed, the previous hook (Rust's default message on stderr) runs instead.
/// Call it once per process, after [`install`].
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let Some(logger) = current() else {
            previous(info);
            return;
        };
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let error = format!("panicked at {location}: {message}");
        let mut fields = Map::new();
        fields.insert("error".into(), error.clone().into());
        fields.insert(
            "traceback".into(),
            std::backtrace::Backtrace::force_capture()
                .to_string()
                .into(),
        );
        logger.log("root", Level::Error, &error, &fields);
    }));
}

/// A URL with its password replaced by `***`, for startup lines (`postgresql://u:***@h/db`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The `log` crate's backend: targets are logger names (`::` read as `.`, so the module
/// `kinto::api` logs under `kinto.api`, a child of `kinto`); key-values become fields.
struct Facade;

impl log::Log for Facade {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        current().is_some_and(|l| {
            l.enabled(
                &logger_name(metadata.target()),
                Level::from_log(metadata.level()),
            )
        })
    }

    fn log(&self, record: &log::Record<'_>) {
        let Some(logger) = current() else {
            return;
        };
        let name = logger_name(record.target());
        let level = Level::from_log(record.level());
        if !logger.enabled(&name, level) {
            return;
        }
        let mut fields = FieldVisitor(Map::new());
        let _ = record.key_values().visit(&mut fields);
        let message = record.args().to_string();
        logger.dispatch(&Record {
            logger: &name,
            level,
            message: &message,
            fields: &fields.0,
            time: SystemTime::now(),
            module: record.module_path(),
            file: record.file(),
            line: record.line(),
        });
    }

    fn flush(&self) {}
}

fn logger_name(target: &str) -> String {
    target.replace("::", ".")
}

struct FieldVisitor(Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for FieldVisitor {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(b) = value.to_bool() {
            Value::Bool(b)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(f) = value.to_f64() {
            Value::from(f)
        } else {
            Value::String(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn querystrings_and_ids() {
        let q = querystring("_limit=1&x=a%20b+c&x=2&flag");
        assert_eq!(
            Value::Object(q),
            serde_json::json!({"_limit": "1", "x": "2", "flag": ""})
        );
        assert_eq!(request_id(Some("my-req-id-1")), "my-req-id-1");
        assert_eq!(request_id(Some("bad id\n")).len(), 36);
        assert_eq!(request_id(None).len(), 36);
    }

    #[test]
    fn redacted_urls() {
        assert_eq!(
            redact_url("postgresql://postgres:pw@localhost:5432/db"),
            "postgresql://postgres:***@localhost:5432/db"
        );
        assert_eq!(redact_url("sqlite:///kinto.db"), "sqlite:///kinto.db");
        assert_eq!(redact_url("udp://h:8125"), "udp://h:8125");
    }

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
