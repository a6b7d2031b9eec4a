//! Request bodies of writes (section 3.2): content types, JSON parsing, the `{data, permissions}`
//! envelope and the resource-specific field rules (group members, collection schema and
//! `cache_expires`), with Kinto's validation messages.

use crate::api::http::media_type;
use crate::authz::{Kind, EVERYONE};
use crate::error::{invalid_sorted, ApiError, ApiResult, Detail, Location};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// How a write body is to be interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `application/json` (or no Content-Type): replace (PUT/POST) or shallow merge (PATCH).
    Json,
    /// `application/merge-patch+json` (RFC 7396), PATCH only.
    MergePatch,
    /// `application/json-patch+json` (RFC 6902), PATCH only.
    JsonPatch,
}

/// The content type check: 415 for anything not accepted by the method.
pub fn mode(content_type: Option<&str>, patch: bool) -> ApiResult<Mode> {
    let media = media_type(content_type);
    let mode = match media.as_deref() {
        None | Some("application/json") => Some(Mode::Json),
        Some("application/merge-patch+json") if patch => Some(Mode::MergePatch),
        Some("application/json-patch+json") if patch => Some(Mode::JsonPatch),
        _ => None,
    };
    mode.ok_or_else(|| {
        let allowed = if patch {
            "['application/json', 'application/json-patch+json', 'application/merge-patch+json']"
        } else {
            "['application/json']"
        };
        ApiError::Invalid {
            status: 415,
            details: vec![Detail::new(
                Location::Header,
                Some("Content-Type"),
                format!("Content-Type header should be one of {allowed}"),
            )],
        }
    })
}

/// Parses the raw body; an empty body is `{}`.
pub fn parse_json(raw: &[u8]) -> ApiResult<Value> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(raw).map_err(|e| {
        ApiError::invalid(
            Location::Body,
            None,
            format!(
                "Invalid JSON: Parse error at line {} column {}: {}",
                e.line(),
                e.column(),
                e
            ),
        )
    })
}

/// Permissions of a body: permission name → principals (`None` for a JSON null value).
pub type BodyPermissions = BTreeMap<String, Option<BTreeSet<String>>>;

/// A validated `{data, permissions}` envelope.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub data: Option<Map<String, Value>>,
    pub permissions: Option<BodyPermissions>,
}

/// Python's `repr` of a JSON value, as quoted in Kinto's (colander) messages.
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The text of a value inside `"…"` in colander messages (strings without quotes).
fn colander_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

fn not_a_mapping(value: &Value) -> String {
    format!(
        "\"{}\" is not a mapping type: Does not implement dict-like functionality.",
        colander_str(value)
    )
}

/// Validates the envelope of a JSON or merge-patch body.
pub fn envelope(kind: Kind, body: Value) -> ApiResult<Envelope> {
    let Value::Object(mut map) = body else {
        return Err(ApiError::invalid(
            Location::Body,
            Some(""),
            not_a_mapping(&body),
        ));
    };
    let mut details = Vec::new();
    let data = match map.remove("data") {
        None => None,
        Some(Value::Object(data)) => Some(data),
        Some(other) => {
            details.push(Detail::new(
                Location::Body,
                Some("data"),
                not_a_mapping(&other),
            ));
            None
        }
    };
    let permissions = match map.remove("permissions") {
        None => None,
        Some(value) => match permissions(kind, value) {
            Ok(p) => Some(p),
            Err(mut problems) => {
                details.append(&mut problems);
                None
            }
        },
    };
    if !map.is_empty() {
        details.push(Detail::new(
            Location::Body,
            Some(""),
            format!(
                "Unrecognized keys in mapping: \"{}\"",
                python_repr(&Value::Object(map))
            ),
        ));
    }
    if !details.is_empty() {
        return Err(invalid_sorted(400, details));
    }
    Ok(Envelope { data, permissions })
}

fn permissions(kind: Kind, value: Value) -> Result<BodyPermissions, Vec<Detail>> {
    let Value::Object(map) = value else {
        return Err(vec![Detail::new(
            Location::Body,
            Some("permissions"),
            not_a_mapping(&value),
        )]);
    };
    let mut out = BodyPermissions::new();
    let mut details = Vec::new();
    for (perm, principals) in map {
        if !kind.permissions().contains(&perm.as_str()) {
            details.push(Detail::new(
                Location::Body,
                Some("permissions"),
                format!("\"{perm}\" is not one of {}", kind.permissions().join(", ")),
            ));
            continue;
        }
        match principals {
            Value::Null => {
                out.insert(perm, None);
            }
            Value::Array(items) => {
                let mut set = BTreeSet::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => {
                            set.insert(s.clone());
                        }
                        other => details.push(Detail::new(
                            Location::Body,
                            Some(&format!("permissions.{perm}.{i}")),
                            format!("{} is not a string: {{'': ''}}", python_repr(other)),
                        )),
                    }
                }
                out.insert(perm, Some(set));
            }
            other => details.push(Detail::new(
                Location::Body,
                Some(&format!("permissions.{perm}")),
                format!("\"{}\" is not iterable", colander_str(&other)),
            )),
        }
    }
    if details.is_empty() {
        Ok(out)
    } else {
        Err(details)
    }
}

/// Resource-specific rules on the final `data` of a write (after merges and patches).
/// Drops a non-integer `last_modified`, as Kinto silently does.
pub fn check_data(kind: Kind, data: &mut Map<String, Value>) -> ApiResult<()> {
    if data.get("last_modified").is_some_and(|v| !is_integer(v)) {
        data.remove("last_modified");
    }
    let mut details = Vec::new();
    match kind {
        Kind::Group => {
            let members = data
                .entry("members")
                .or_insert_with(|| Value::Array(Vec::new()));
            match members {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let name = format!("data.members.{i}");
                        match item {
                            Value::String(m) if m == EVERYONE || m.starts_with("/buckets/") => {
                                details.push(Detail::new(
                                    Location::Body,
                                    Some(&name),
                                    format!("'{m}' is not a valid user ID."),
                                ))
                            }
                            Value::String(_) => {}
                            other => details.push(Detail::new(
                                Location::Body,
                                Some(&name),
                                format!("{} is not a string: {{'': ''}}", python_repr(other)),
                            )),
                        }
                    }
                }
                other => details.push(Detail::new(
                    Location::Body,
                    Some("data.members"),
                    format!("\"{}\" is not iterable", colander_str(other)),
                )),
            }
        }
        Kind::Collection => {
            if let Some(value) = data.get("cache_expires") {
                if !is_integer(value) {
                    details.push(Detail::new(
                        Location::Body,
                        Some("cache_expires"),
                        format!("\"{}\" is not a number", colander_str(value)),
                    ));
                }
            }
            if let Some(schema) = data.get("schema") {
                if let Err(problem) = check_schema(schema) {
                    details.push(Detail::new(Location::Body, Some("data.schema"), problem));
                }
            }
        }
        Kind::Bucket => {
            for field in ["collection:schema", "group:schema", "record:schema"] {
                if let Some(schema) = data.get(field) {
                    if let Err(problem) = check_schema(schema) {
                        details.push(Detail::new(
                            Location::Body,
                            Some(&format!("data.{field}")),
                            problem,
                        ));
                    }
                }
            }
        }
        Kind::Record | Kind::Account | Kind::History => {}
    }
    if details.is_empty() {
        Ok(())
    } else {
        Err(invalid_sorted(400, details))
    }
}

fn is_integer(value: &Value) -> bool {
    value.is_i64() || value.is_u64()
}

const SCHEMA_TYPES: &[&str] = &[
    "array", "boolean", "integer", "null", "number", "object", "string",
];

/// The structural part of the JSON Schema meta-schema that catches malformed schemas (`type`,
/// `properties`, `required`, nested subschemas).
fn check_schema(schema: &Value) -> Result<(), String> {
    let Value::Object(map) = schema else {
        if schema.is_boolean() {
            return Ok(());
        }
        return Err(not_a_mapping(schema));
    };
    if let Some(t) = map.get("type") {
        let valid = match t {
            Value::String(s) => SCHEMA_TYPES.contains(&s.as_str()),
            Value::Array(items) => items
                .iter()
                .all(|i| i.as_str().is_some_and(|s| SCHEMA_TYPES.contains(&s))),
            _ => false,
        };
        if !valid {
            return Err(format!(
                "{} is not valid under any of the given schemas",
                python_repr(t)
            ));
        }
    }
    if let Some(required) = map.get("required") {
        let valid = required
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string));
        if !valid {
            return Err(format!("{} is not of type 'array'", python_repr(required)));
        }
    }
    for key in ["properties", "patternProperties", "definitions", "$defs"] {
        if let Some(props) = map.get(key) {
            let Value::Object(props) = props else {
                return Err(format!("{} is not of type 'object'", python_repr(props)));
            };
            for sub in props.values() {
                check_schema(sub)?;
            }
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = map.get(key) {
            if !sub.is_array() {
                check_schema(sub)?;
            }
        }
    }
    Ok(())
}
