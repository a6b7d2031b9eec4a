//! Python `logging.Formatter` format strings (`%(asctime)s %(levelname)-5.5s [%(name)s] %(message)s`),
//! compiled once at configuration time into literal and field segments.

use serde_json::Value;

use super::clock;
use super::record::Record;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Field {
        key: String,
        left: bool,
        zero: bool,
        width: Option<usize>,
        precision: Option<usize>,
        conversion: char,
    },
}

/// A compiled `[formatter_*]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Formatter {
    segments: Vec<Segment>,
    datefmt: Option<String>,
    /// `class = kinto.core.JsonLogFormatter` (or dockerflow's): the line is the mozlog JSON
    /// whatever the format string says.
    pub json: bool,
}

/// Per-process values that records do not carry.
pub struct Context<'a> {
    pub pid: u32,
    /// The message as rendered by the configured renderer (classic text or mozlog JSON).
    pub message: &'a str,
}

impl Default for Formatter {
    fn default() -> Self {
        Formatter::new("%(message)s", None, false).expect("valid default")
    }
}

impl Formatter {
    pub fn new(format: &str, datefmt: Option<&str>, json: bool) -> Result<Formatter, String> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(pos) = rest.find('%') {
            literal.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(r) = after.strip_prefix('%') {
                literal.push('%');
                rest = r;
                continue;
            }
            let r = after.strip_prefix('(').ok_or_else(|| {
                format!("Invalid format {format:?}: '%' must be followed by '(' or '%'")
            })?;
            let close = r
                .find(')')
                .ok_or_else(|| format!("Invalid format {format:?}: missing ')'"))?;
            let key = r[..close].to_owned();
            let mut spec = r[close + 1..].char_indices();
            let (mut left, mut zero) = (false, false);
            let mut width = String::new();
            let mut precision: Option<String> = None;
            let conversion;
            loop {
                let Some((i, c)) = spec.next() else {
                    return Err(format!("Invalid format {format:?}: incomplete %({key})"));
                };
                match c {
                    '-' if width.is_empty() && precision.is_none() => left = true,
                    '0' if width.is_empty() && precision.is_none() => zero = true,
                    ' ' | '+' | '#' if width.is_empty() && precision.is_none() => {}
                    '.' if precision.is_none() => precision = Some(String::new()),
                    d if d.is_ascii_digit() => match &mut precision {
                        Some(p) => p.push(d),
                        None => width.push(d),
                    },
                    's' | 'r' | 'd' | 'i' | 'f' | 'F' | 'g' | 'e' | 'x' | 'c' => {
                        conversion = c;
                        rest = &r[close + 1 + i + 1..];
                        break;
                    }
                    other => {
                        return Err(format!(
                            "Invalid format {format:?}: unsupported conversion {other:?}"
                        ))
                    }
                }
            }
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(Segment::Field {
                key,
                left,
                zero,
                width: width.parse().ok(),
                precision: precision.map(|p| p.parse().unwrap_or(0)),
                conversion,
            });
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Formatter {
            segments,
            datefmt: datefmt.map(str::to_owned),
            json,
        })
    }

    /// The formatted line (without the newline).
    pub fn format(&self, record: &Record<'_>, ctx: &Context<'_>) -> String {
        let mut out = String::with_capacity(ctx.message.len() + 64);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Field {
                    key,
                    left,
                    zero,
                    width,
                    precision,
                    conversion,
                } => {
                    let value = self.field(key, record, ctx);
                    let text = match (conversion, &value) {
                        ('d' | 'i', FieldValue::Int(n)) => n.to_string(),
                        ('d' | 'i', FieldValue::Float(f)) => (f.trunc() as i64).to_string(),
                        ('f' | 'F' | 'g' | 'e', FieldValue::Float(f)) => {
                            format!("{:.*}", precision.unwrap_or(6), f)
                        }
                        ('f' | 'F' | 'g' | 'e', FieldValue::Int(n)) => {
                            format!("{:.*}", precision.unwrap_or(6), *n as f64)
                        }
                        ('r', FieldValue::Text(s)) => format!("'{s}'"),
                        (_, v) => {
                            let s = v.to_text();
                            match precision {
                                Some(p) => s.chars().take(*p).collect(),
                                None => s,
                            }
                        }
                    };
                    pad(&mut out, &text, *width, *left, *zero && !left);
                }
            }
        }
        out
    }

    fn field(&self, key: &str, record: &Record<'_>, ctx: &Context<'_>) -> FieldValue {
        let (secs, micros) = clock::split(record.time);
        match key {
            "message" => FieldValue::Text(ctx.message.to_owned()),
            "name" => FieldValue::Text(record.logger.to_owned()),
            "levelname" => FieldValue::Text(record.level.name().to_owned()),
            "levelno" => FieldValue::Int(record.level as i64),
            "asctime" => FieldValue::Text(match &self.datefmt {
                Some(datefmt) => clock::strftime(secs, datefmt),
                None => clock::asctime(record.time),
            }),
            "created" => FieldValue::Float(secs as f64 + micros as f64 / 1e6),
            "msecs" => FieldValue::Int(i64::from(micros / 1000)),
            "process" => FieldValue::Int(i64::from(ctx.pid)),
            "processName" => FieldValue::Text("MainProcess".to_owned()),
            "thread" => FieldValue::Int(thread_ident()),
            "threadName" => FieldValue::Text(thread_name()),
            "module" => FieldValue::Text(
                record
                    .module
                    .map(module_name)
                    .unwrap_or_default()
                    .to_owned(),
            ),
            "funcName" => FieldValue::Text(String::new()),
            "pathname" => FieldValue::Text(record.file.unwrap_or_default().to_owned()),
            "filename" => FieldValue::Text(
                record
                    .file
                    .and_then(|f| f.rsplit('/').next())
                    .unwrap_or_default()
                    .to_owned(),
            ),
            "lineno" => FieldValue::Int(i64::from(record.line.unwrap_or(0))),
            // Anything else is looked up in the record's fields (Python's `extra`).
            other => match record.fields.get(other) {
                Some(Value::String(s)) => FieldValue::Text(s.clone()),
                Some(Value::Number(n)) if n.is_i64() => FieldValue::Int(n.as_i64().unwrap_or(0)),
                Some(Value::Number(n)) => FieldValue::Float(n.as_f64().unwrap_or(0.0)),
                Some(v) => FieldValue::Text(v.to_string()),
                None => FieldValue::Text(String::new()),
            },
        }
    }
}

enum FieldValue {
    Text(String),
    Int(i64),
    Float(f64),
}

impl FieldValue {
    fn to_text(&self) -> String {
        match self {
            FieldValue::Text(s) => s.clone(),
            FieldValue::Int(n) => n.to_string(),
            FieldValue::Float(f) => f.to_string(),
        }
    }
}

fn pad(out: &mut String, text: &str, width: Option<usize>, left: bool, zero: bool) {
    let len = text.chars().count();
    let fill = width.unwrap_or(0).saturating_sub(len);
    if left {
        out.push_str(text);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        out.extend(std::iter::repeat_n(if zero { '0' } else { ' ' }, fill));
        out.push_str(text);
    }
}

/// The last segment of a module path (`kinto::api::records` -> `records`), like Python's `module`.
fn module_name(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

fn thread_ident() -> i64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as i64 }
}

/// `MainThread` for the main thread, as Python names it, else the Rust thread name.
fn thread_name() -> String {
    match std::thread::current().name() {
        Some("main") | None => "MainThread".to_owned(),
        Some(name) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::record::Level;
    use serde_json::Map;
    use std::time::{Duration, UNIX_EPOCH};

    fn record(fields: &Map<String, Value>) -> Record<'_> {
        Record {
            logger: "kinto.core",
            level: Level::Warning,
            message: "",
            fields,
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            module: Some("kinto::api::records"),
            file: Some("src/api/records.rs"),
            line: Some(12),
        }
    }

    #[test]
    fn python_format_strings() {
        let fields = Map::new();
        let ctx = Context {
            pid: 42,
            message: "hello",
        };
        let f = Formatter::new(
            "%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s",
            None,
            false,
        )
        .unwrap();
        let line = f.format(&record(&fields), &ctx);
        // Test threads carry the test's name; the main thread would be `MainThread`.
        assert!(
            line.contains(" WARNI [kinto.core][") && line.ends_with("] hello"),
            "{line}"
        );
        assert!(line[..23].ends_with(",123"), "{line}");

        let f = Formatter::new(
            "%(levelno)03d|%(process)d|%(module)s:%(lineno)d|%(msecs)d|100%%|%(levelname)8s",
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            f.format(&record(&fields), &ctx),
            "030|42|records:12|123|100%| WARNING"
        );

        let f = Formatter::new("%(asctime)s", Some("%Y"), false).unwrap();
        assert_eq!(f.format(&record(&fields), &ctx).len(), 4);
    }

    #[test]
    fn invalid_formats() {
        assert!(Formatter::new("%(message", None, false).is_err());
        assert!(Formatter::new("%(message)", None, false).is_err());
        assert!(Formatter::new("50% off", None, false).is_err());
    }
}
