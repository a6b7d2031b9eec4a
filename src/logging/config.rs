//! The ini's `[loggers]`, `[handlers]` and `[formatters]` sections, read as
//! `logging.config.fileConfig` reads them, into plain data (nothing opened yet).
//!
//! Handler classes understood: `StreamHandler` (`sys.stdout`/`sys.stderr`, and Kinto's
//! `StreamHandlerWithRequestID`), `FileHandler` (also `WatchedFileHandler` and the rotating ones,
//! without rotation: use logrotate's `copytruncate`), `handlers.SysLogHandler`, `NullHandler`, and
//! `raven.handlers.logging.SentryHandler`, which sends ERROR and CRITICAL records only, whatever
//! its `level` below ERROR (sending every INFO record to Sentry would flood it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::format::Formatter;
use super::ini::{list, Ini};
use super::output::{facility, OutputSpec, SyslogAddress};
use super::pyargs::{parse_args, PyValue};
use super::record::Level;
use super::render::{is_json_formatter_class, Renderer};
use super::sentry::Dsn;

/// A configured logger (`[logger_<key>]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggerConf {
    pub level: Level,
    /// Indexes into [`LoggingConfig::handlers`].
    pub handlers: Vec<usize>,
    pub propagate: bool,
}

/// A configured handler (`[handler_<key>]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerConf {
    pub name: String,
    pub level: Level,
    pub formatter: Formatter,
    pub output: OutputSpec,
}

/// The whole logging setup of a process.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggingConfig {
    /// By qualified name; the root logger is `""`.
    pub loggers: BTreeMap<String, LoggerConf>,
    pub handlers: Vec<HandlerConf>,
    /// From `logging_renderer`.
    pub renderer: Renderer,
    /// The mozlog `Logger` field.
    pub project_name: String,
}

impl LoggingConfig {
    /// From the ini file named by the settings, with their `project_name` and `logging_renderer`.
    pub fn from_settings(settings: &crate::settings::Settings) -> Result<LoggingConfig, String> {
        Self::from_ini_file(
            &settings.ini_path,
            &settings.project_name,
            settings.logging_renderer.as_deref(),
        )
    }

    pub fn from_ini_file(
        path: &Path,
        project_name: &str,
        renderer: Option<&str>,
    ) -> Result<LoggingConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("Cannot read {}: {e}", path.display()))?;
        Self::from_ini_str(&text, path, project_name, renderer)
    }

    /// `ini_path` gives `%(here)s` (its directory) and `%(__file__)s`; relative file handler
    /// paths are taken from the current directory, as Python does.
    pub fn from_ini_str(
        text: &str,
        ini_path: &Path,
        project_name: &str,
        renderer: Option<&str>,
    ) -> Result<LoggingConfig, String> {
        let here = ini_path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let file = ini_path.to_string_lossy();
        let here = here.to_string_lossy();
        let ini = Ini::parse(text, &[("here", &here), ("__file__", &file)])?;
        let renderer = Renderer::parse(renderer)?;
        if !ini.has_section("loggers") {
            return Ok(Self::default_config(renderer, project_name));
        }

        let mut formatters: BTreeMap<String, Formatter> = BTreeMap::new();
        for key in ini.raw("formatters", "keys").map(list).unwrap_or_default() {
            let section = format!("formatter_{key}");
            if !ini.has_section(&section) {
                return Err(format!("Missing section [{section}]"));
            }
            let class = ini.get(&section, "class")?.unwrap_or_default();
            let format = ini.raw(&section, "format").unwrap_or("%(message)s");
            let formatter = Formatter::new(
                format,
                ini.raw(&section, "datefmt"),
                is_json_formatter_class(&class),
            )
            .map_err(|e| format!("[{section}]: {e}"))?;
            formatters.insert(key, formatter);
        }

        let mut handlers = Vec::new();
        let mut handler_index = BTreeMap::new();
        for key in ini.raw("handlers", "keys").map(list).unwrap_or_default() {
            let section = format!("handler_{key}");
            if !ini.has_section(&section) {
                return Err(format!("Missing section [{section}]"));
            }
            let class = ini
                .get(&section, "class")?
                .ok_or_else(|| format!("[{section}]: missing 'class'"))?;
            let args = ini.get(&section, "args")?.unwrap_or_else(|| "()".into());
            let args = parse_args(&args).map_err(|e| format!("[{section}] args: {e}"))?;
            let output = output_spec(&class, &args).map_err(|e| format!("[{section}]: {e}"))?;
            let mut level = match ini.get(&section, "level")? {
                Some(l) => Level::parse(&l).map_err(|e| format!("[{section}]: {e}"))?,
                None => Level::NotSet,
            };
            if matches!(output, OutputSpec::Sentry(_)) {
                level = level.max(Level::Error);
            }
            let formatter = match ini.get(&section, "formatter")?.filter(|f| !f.is_empty()) {
                Some(name) => formatters
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| format!("[{section}]: unknown formatter {name:?}"))?,
                None => Formatter::default(),
            };
            handler_index.insert(key.clone(), handlers.len());
            handlers.push(HandlerConf {
                name: key,
                level,
                formatter,
                output,
            });
        }

        let mut loggers = BTreeMap::new();
        let keys = ini.raw("loggers", "keys").map(list).unwrap_or_default();
        if !keys.iter().any(|k| k == "root") {
            return Err("[loggers] keys must include root".into());
        }
        for key in keys {
            let section = format!("logger_{key}");
            if !ini.has_section(&section) {
                return Err(format!("Missing section [{section}]"));
            }
            let name = if key == "root" {
                String::new()
            } else {
                ini.get(&section, "qualname")?
                    .ok_or_else(|| format!("[{section}]: missing 'qualname'"))?
            };
            let level = match ini.get(&section, "level")? {
                Some(l) => Level::parse(&l).map_err(|e| format!("[{section}]: {e}"))?,
                None if key == "root" => Level::Warning,
                None => Level::NotSet,
            };
            let handlers = list(&ini.get(&section, "handlers")?.unwrap_or_default())
                .into_iter()
                .map(|h| {
                    handler_index
                        .get(&h)
                        .copied()
                        .ok_or_else(|| format!("[{section}]: unknown handler {h:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let propagate = match ini.get(&section, "propagate")? {
                Some(p) => p.trim() != "0",
                None => true,
            };
            loggers.insert(
                name,
                LoggerConf {
                    level,
                    handlers,
                    propagate,
                },
            );
        }
        Ok(LoggingConfig {
            loggers,
            handlers,
            renderer,
            project_name: project_name.to_owned(),
        })
    }

    /// Without logging sections: INFO and above to stderr.
    pub fn default_config(renderer: Renderer, project_name: &str) -> LoggingConfig {
        let format = match renderer {
            Renderer::Classic => "%(asctime)s %(levelname)-5.5s [%(name)s] %(message)s",
            Renderer::Mozlog => "%(message)s",
        };
        let formatter = Formatter::new(format, None, false).expect("valid default format");
        let mut loggers = BTreeMap::new();
        loggers.insert(
            String::new(),
            LoggerConf {
                level: Level::Info,
                handlers: vec![0],
                propagate: true,
            },
        );
        LoggingConfig {
            loggers,
            handlers: vec![HandlerConf {
                name: "console".into(),
                level: Level::NotSet,
                formatter,
                output: OutputSpec::Stream(2),
            }],
            renderer,
            project_name: project_name.to_owned(),
        }
    }
}

fn output_spec(class: &str, args: &[PyValue]) -> Result<OutputSpec, String> {
    let short = class.strip_prefix("logging.").unwrap_or(class);
    let short = short.strip_prefix("handlers.").unwrap_or(short);
    let string = |i: usize| match args.get(i) {
        Some(PyValue::Str(s)) => Some(s.clone()),
        _ => None,
    };
    match short {
        "StreamHandler"
        | "kinto.core.StreamHandlerWithRequestID"
        | "kinto.core.logs.StreamHandlerWithRequestID" => match args.first() {
            None => Ok(OutputSpec::Stream(2)),
            Some(PyValue::Name(n)) | Some(PyValue::Str(n)) => {
                match n.trim_start_matches("ext://") {
                    "sys.stdout" => Ok(OutputSpec::Stream(1)),
                    "sys.stderr" => Ok(OutputSpec::Stream(2)),
                    other => Err(format!(
                        "unsupported stream {other:?} (sys.stdout or sys.stderr)"
                    )),
                }
            }
            Some(other) => Err(format!("unsupported stream {other:?}")),
        },
        "FileHandler"
        | "WatchedFileHandler"
        | "RotatingFileHandler"
        | "TimedRotatingFileHandler" => {
            let path = string(0).ok_or("FileHandler needs a file name as first argument")?;
            // RotatingFileHandler's second argument is also the mode; TimedRotating's is `when`.
            let append = match (short, string(1).as_deref()) {
                ("TimedRotatingFileHandler", _) => true,
                (_, Some(mode)) => !mode.starts_with('w'),
                (_, None) => true,
            };
            Ok(OutputSpec::File {
                path: PathBuf::from(path),
                append,
            })
        }
        "SysLogHandler" => {
            let address = match args.first() {
                None => SyslogAddress::Udp("localhost".into(), 514),
                Some(PyValue::Str(path)) => SyslogAddress::Unix(PathBuf::from(path)),
                Some(PyValue::Tuple(pair)) => match pair.as_slice() {
                    [PyValue::Str(host), PyValue::Int(port)] => SyslogAddress::Udp(
                        host.clone(),
                        u16::try_from(*port).map_err(|_| format!("invalid syslog port {port}"))?,
                    ),
                    _ => return Err("syslog address must be '/path' or ('host', port)".into()),
                },
                Some(other) => return Err(format!("unsupported syslog address {other:?}")),
            };
            let facility = match args.get(1) {
                None => 1,
                Some(PyValue::Int(n)) => u8::try_from(*n)
                    .ok()
                    .filter(|n| *n < 24)
                    .ok_or("invalid facility")?,
                Some(PyValue::Name(n)) | Some(PyValue::Str(n)) => {
                    facility(n).ok_or_else(|| format!("unknown syslog facility {n:?}"))?
                }
                Some(other) => return Err(format!("unsupported facility {other:?}")),
            };
            Ok(OutputSpec::Syslog { address, facility })
        }
        "NullHandler" => Ok(OutputSpec::Null),
        "raven.handlers.logging.SentryHandler" => {
            // raven reads SENTRY_DSN when no DSN is given, and does nothing without one.
            let dsn =
                string(0).or_else(|| std::env::var("SENTRY_DSN").ok().filter(|d| !d.is_empty()));
            match dsn {
                Some(dsn) => Ok(OutputSpec::Sentry(Dsn::parse(&dsn)?)),
                None => Ok(OutputSpec::Null),
            }
        }
        _ => Err(format!("unsupported handler class {class:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The production docs' logging sections (shared with `tests/obs_logging.rs`).
    fn seed() -> String {
        include_str!("../../tests/fixtures/seed_logging.ini")
            .replace("{dsn}", "http://public:secret@example.com/1")
    }

    #[test]
    fn the_production_docs_config() {
        let c = LoggingConfig::from_ini_str(
            &seed(),
            Path::new("/etc/kinto/kinto.ini"),
            "kinto",
            Some("cliquet.logs.MozillaHekaRenderer"),
        )
        .unwrap();
        assert_eq!(c.renderer, Renderer::Mozlog);
        assert_eq!(c.loggers.len(), 3);
        assert_eq!(c.loggers["kinto"].handlers, [0, 1]);
        assert_eq!(c.loggers[""].level, Level::Info);
        assert_eq!(c.handlers[0].output, OutputSpec::Stream(1));
        assert_eq!(c.handlers[1].level, Level::Error, "Sentry gets errors only");
        assert!(matches!(&c.handlers[1].output, OutputSpec::Sentry(d) if d.host == "example.com"));
    }

    #[test]
    fn handler_classes() {
        let syslog = output_spec(
            "logging.handlers.SysLogHandler",
            &parse_args("(('127.0.0.1', 5140), handlers.SysLogHandler.LOG_LOCAL3)").unwrap(),
        )
        .unwrap();
        assert_eq!(
            syslog,
            OutputSpec::Syslog {
                address: SyslogAddress::Udp("127.0.0.1".into(), 5140),
                facility: 19
            }
        );
        assert_eq!(
            output_spec(
                "handlers.SysLogHandler",
                &parse_args("('/dev/log',)").unwrap()
            )
            .unwrap(),
            OutputSpec::Syslog {
                address: SyslogAddress::Unix("/dev/log".into()),
                facility: 1
            }
        );
        assert_eq!(
            output_spec(
                "FileHandler",
                &parse_args("('/var/log/k.log', 'w')").unwrap()
            )
            .unwrap(),
            OutputSpec::File {
                path: "/var/log/k.log".into(),
                append: false
            }
        );
        assert_eq!(
            output_spec("StreamHandler", &[]).unwrap(),
            OutputSpec::Stream(2)
        );
        assert!(output_spec("StreamHandler", &parse_args("(sys.stdin,)").unwrap()).is_err());
        assert!(output_spec("some.CustomHandler", &[]).is_err());
    }

    #[test]
    fn config_errors_are_clear() {
        let e = LoggingConfig::from_ini_str(
            "[loggers]\nkeys = kinto\n",
            Path::new("k.ini"),
            "kinto",
            None,
        )
        .unwrap_err();
        assert!(e.contains("root"), "{e}");
        let e = LoggingConfig::from_ini_str(
            "[loggers]\nkeys = root\n[logger_root]\nhandlers = nope\n",
            Path::new("k.ini"),
            "kinto",
            None,
        )
        .unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let c =
            LoggingConfig::from_ini_str("[app:main]\n", Path::new("k.ini"), "kinto", Some("json"))
                .unwrap();
        assert_eq!(c.handlers[0].output, OutputSpec::Stream(2));
    }

    #[test]
    fn here_interpolation_in_file_args() {
        let c = LoggingConfig::from_ini_str(
            "[loggers]\nkeys = root\n[handlers]\nkeys = f\n[logger_root]\nhandlers = f\n\
             [handler_f]\nclass = FileHandler\nargs = ('%(here)s/kinto.log',)\n",
            Path::new("/srv/app/kinto.ini"),
            "kinto",
            None,
        )
        .unwrap();
        assert_eq!(
            c.handlers[0].output,
            OutputSpec::File {
                path: "/srv/app/kinto.log".into(),
                append: true
            }
        );
        assert_eq!(c.loggers[""].level, Level::Warning, "Python's root default");
    }
}
