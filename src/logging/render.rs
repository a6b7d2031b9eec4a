//! What `%(message)s` becomes: the mozlog v2 JSON object of Kinto's JsonLogFormatter and cliquet's
//! MozillaHekaRenderer (API.md 10.2), or cliquet's ClassicLogRenderer text.

use std::time::UNIX_EPOCH;

use serde_json::{Map, Value};

use super::record::Record;

/// The renderers `logging_renderer` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renderer {
    /// `cliquet.logs.ClassicLogRenderer` and the default: `GET    /v1/ 200 (3 ms) ...`.
    Classic,
    /// `cliquet.logs.MozillaHekaRenderer`, `kinto.core.logs.MozillaHekaRenderer`, or a JSON formatter.
    Mozlog,
}

impl Renderer {
    /// From the `logging_renderer` setting (unset: classic).
    pub fn parse(name: Option<&str>) -> Result<Renderer, String> {
        match name.map(str::trim).unwrap_or("") {
            "" | "text" | "classic" | "cliquet.logs.ClassicLogRenderer"
            | "kinto.core.logs.ClassicLogRenderer" => Ok(Renderer::Classic),
            "json" | "heka" | "mozlog" | "cliquet.logs.MozillaHekaRenderer"
            | "kinto.core.logs.MozillaHekaRenderer" => Ok(Renderer::Mozlog),
            other if is_json_formatter_class(other) => Ok(Renderer::Mozlog),
            other => Err(format!(
                "Unknown logging_renderer {other:?} (expected cliquet.logs.MozillaHekaRenderer, \
                 kinto.core.logs.MozillaHekaRenderer, cliquet.logs.ClassicLogRenderer, json or text)"
            )),
        }
    }
}

/// Formatter classes that write mozlog JSON lines.
pub fn is_json_formatter_class(class: &str) -> bool {
    matches!(
        class,
        "kinto.core.JsonLogFormatter"
            | "kinto.core.logs.JsonLogFormatter"
            | "dockerflow.logging.JsonLogFormatter"
            | "mozilla_cloud_services_logger.formatters.JsonLogFormatter"
    )
}

/// The envelope values that come from the process, not the record.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// `Logger`: the `project_name` setting.
    pub project_name: String,
    pub hostname: String,
    pub pid: u32,
}

/// One mozlog JSON object (no newline).
pub fn mozlog(record: &Record<'_>, envelope: &Envelope, rid: Option<&str>) -> String {
    let nanos = record
        .time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut fields = Map::with_capacity(record.fields.len() + 2);
    if !record.message.is_empty() {
        fields.insert("msg".into(), Value::String(record.message.to_owned()));
    }
    for (k, v) in record.fields {
        fields.insert(k.clone(), v.clone());
    }
    if let Some(rid) = rid {
        if !fields.contains_key("rid") {
            fields.insert("rid".into(), Value::String(rid.to_owned()));
        }
    }
    let mut object = Map::with_capacity(8);
    object.insert("Timestamp".into(), Value::from(nanos));
    object.insert("Type".into(), Value::String(record.logger.to_owned()));
    object.insert(
        "Logger".into(),
        Value::String(envelope.project_name.clone()),
    );
    object.insert("Hostname".into(), Value::String(envelope.hostname.clone()));
    object.insert("EnvVersion".into(), Value::String("2.0".into()));
    object.insert(
        "Severity".into(),
        Value::from(record.level.syslog_severity()),
    );
    object.insert("Pid".into(), Value::from(envelope.pid));
    object.insert("Fields".into(), Value::Object(fields));
    Value::Object(object).to_string()
}

/// cliquet's classic text: `{method: <6} {path}{querystring} {code} ({t} ms) {event} {context}` for
/// request summaries, `{event} {context}` otherwise; context is `key=value` pairs.
pub fn classic(record: &Record<'_>, rid: Option<&str>) -> String {
    let event = if record.message.is_empty() {
        record.logger
    } else {
        record.message
    };
    let mut context: Vec<(&str, &Value)> = Vec::new();
    let rid_value = rid.map(|r| Value::String(r.to_owned()));
    let mut out = String::new();
    if record.fields.contains_key("path") {
        let get = |k: &str| match record.fields.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "?".to_owned(),
        };
        let query = match record.fields.get("querystring") {
            Some(Value::Object(params)) if !params.is_empty() => {
                let pairs: Vec<String> = params
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => format!("{k}={s}"),
                        other => format!("{k}={other}"),
                    })
                    .collect();
                format!("?{}", pairs.join("&"))
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<6} {}{} {} ({} ms) {}",
            get("method"),
            get("path"),
            query,
            get("code"),
            get("t"),
            event
        ));
        for (k, v) in record.fields {
            if !matches!(k.as_str(), "method" | "path" | "querystring" | "code" | "t") {
                context.push((k, v));
            }
        }
    } else {
        out.push_str(event);
        context.extend(record.fields.iter().map(|(k, v)| (k.as_str(), v)));
    }
    if let Some(rid) = &rid_value {
        if !record.fields.contains_key("rid") {
            context.push(("rid", rid));
        }
    }
    for (k, v) in context {
        out.push(' ');
        out.push_str(k);
        out.push('=');
        match v {
            Value::String(s) => {
                out.push('\'');
                out.push_str(s);
                out.push('\'');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::record::Level;
    use serde_json::json;
    use std::time::{Duration, SystemTime};

    fn summary_fields() -> Map<String, Value> {
        json!({"agent": "curl/8", "path": "/v1/buckets", "method": "GET",
               "querystring": {"_limit": "1"}, "code": 200, "t": 29})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn mozlog_envelope() {
        let fields = summary_fields();
        let record = Record {
            logger: "request.summary",
            level: Level::Info,
            message: "",
            fields: &fields,
            time: UNIX_EPOCH + Duration::from_nanos(1_795_883_779_854_076_000),
            module: None,
            file: None,
            line: None,
        };
        let env = Envelope {
            project_name: "kinto".into(),
            hostname: "web-1".into(),
            pid: 7,
        };
        let line: Value = serde_json::from_str(&mozlog(&record, &env, Some("rid-1"))).unwrap();
        assert_eq!(line["Timestamp"], 1_795_883_779_854_076_000u64);
        assert_eq!(line["Type"], "request.summary");
        assert_eq!(line["Logger"], "kinto");
        assert_eq!(line["Hostname"], "web-1");
        assert_eq!(line["EnvVersion"], "2.0");
        assert_eq!(line["Severity"], 6);
        assert_eq!(line["Pid"], 7);
        assert_eq!(line["Fields"]["rid"], "rid-1");
        assert_eq!(line["Fields"]["querystring"]["_limit"], "1");
        assert!(line["Fields"].get("msg").is_none());
    }

    #[test]
    fn classic_summary() {
        let fields = summary_fields();
        let record = Record {
            logger: "request.summary",
            level: Level::Info,
            message: "",
            fields: &fields,
            time: SystemTime::now(),
            module: None,
            file: None,
            line: None,
        };
        assert_eq!(
            classic(&record, None),
            "GET    /v1/buckets?_limit=1 200 (29 ms) request.summary agent='curl/8'"
        );
    }

    #[test]
    fn renderer_names() {
        assert_eq!(Renderer::parse(None).unwrap(), Renderer::Classic);
        for name in [
            "cliquet.logs.MozillaHekaRenderer",
            "kinto.core.logs.MozillaHekaRenderer",
            "kinto.core.JsonLogFormatter",
        ] {
            assert_eq!(Renderer::parse(Some(name)).unwrap(), Renderer::Mozlog);
        }
        assert!(Renderer::parse(Some("structlog.Fancy")).is_err());
    }
}
