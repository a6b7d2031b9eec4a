//! One log record as the handlers see it: Python's levels (with CRITICAL, which the `log` crate
//! lacks), the logger name, the message and the structured fields.

use std::time::SystemTime;

use serde_json::{Map, Value};

/// Python's logging levels; the numbers are Python's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    NotSet = 0,
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
    Critical = 50,
}

impl Level {
    /// `DEBUG`, `INFO`, `WARNING`/`WARN`, `ERROR`, `CRITICAL`/`FATAL`, `NOTSET` or a number.
    pub fn parse(text: &str) -> Result<Level, String> {
        Ok(match text.trim().to_ascii_uppercase().as_str() {
            "NOTSET" => Level::NotSet,
            "DEBUG" => Level::Debug,
            "INFO" => Level::Info,
            "WARNING" | "WARN" => Level::Warning,
            "ERROR" => Level::Error,
            "CRITICAL" | "FATAL" => Level::Critical,
            other => match other.parse::<u32>() {
                Ok(0) => Level::NotSet,
                Ok(n) if n <= 10 => Level::Debug,
                Ok(n) if n <= 20 => Level::Info,
                Ok(n) if n <= 30 => Level::Warning,
                Ok(n) if n <= 40 => Level::Error,
                Ok(_) => Level::Critical,
                Err(_) => return Err(format!("Unknown level: {text:?}")),
            },
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::NotSet => "NOTSET",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }

    /// Sentry's level names (raven sends CRITICAL as `fatal`).
    pub fn sentry_name(self) -> &'static str {
        match self {
            Level::NotSet | Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Critical => "fatal",
        }
    }

    /// Syslog severity, as mozlog's `Severity` and the syslog priority use it.
    pub fn syslog_severity(self) -> u8 {
        match self {
            Level::Critical => 2,
            Level::Error => 3,
            Level::Warning => 4,
            Level::Info => 6,
            Level::Debug | Level::NotSet => 7,
        }
    }

    pub fn from_log(level: log::Level) -> Level {
        match level {
            log::Level::Error => Level::Error,
            log::Level::Warn => Level::Warning,
            log::Level::Info => Level::Info,
            log::Level::Debug | log::Level::Trace => Level::Debug,
        }
    }
}

/// A record on its way to the handlers.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// Dotted logger name (`request.summary`, `kinto.core`, `root`).
    pub logger: &'a str,
    pub level: Level,
    /// May be empty (the request summary has no message).
    pub message: &'a str,
    /// Structured fields in order (the mozlog `Fields`, minus `msg` and `rid`).
    pub fields: &'a Map<String, Value>,
    pub time: SystemTime,
    /// Source location, when the record came through the `log` macros.
    pub module: Option<&'a str>,
    pub file: Option<&'a str>,
    pub line: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(Level::parse("info").unwrap(), Level::Info);
        assert_eq!(Level::parse("WARN").unwrap(), Level::Warning);
        assert_eq!(Level::parse("35").unwrap(), Level::Error);
        assert!(Level::parse("LOUD").is_err());
        assert!(Level::Debug < Level::Info && Level::Error < Level::Critical);
        assert_eq!(Level::Critical.syslog_severity(), 2);
    }
}
