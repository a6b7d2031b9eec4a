//! The process-wide logger: [`install`] makes a [`Logger`] the `log` crate's backend and the target
//! of the per-request functions; the thread's request id is added to every record; panics are
//! logged at ERROR.

use std::cell::RefCell;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::{Map, Value};

use super::record::Record;
use super::summary::querystring;
use super::{Level, Logger, LoggingConfig, RequestSummary};

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

pub(super) fn current_request_id() -> Option<String> {
    REQUEST_ID.with(|r| r.borrow().clone())
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
