//! The querystring of plural endpoints (section 3.7-3.11): filters with Kinto's value coercion,
//! `_since`/`_before`/`_to`, `_sort`, `_limit`, `_token` and `_fields`, validated with Kinto's
//! messages.

use crate::api::http::now_ms;
use crate::error::{ApiError, ApiResult, Location};
use crate::storage::{Filter, FilterOp, Sort};
use serde_json::Value;

/// A parsed plural querystring.
#[derive(Debug, Clone, Default)]
pub struct PluralQuery {
    pub filters: Vec<Filter>,
    /// Sort keys, `-last_modified` appended as tie-breaker unless present.
    pub sorting: Vec<Sort>,
    /// `_limit` (0 counts as absent).
    pub limit: Option<u64>,
    pub token: Option<String>,
    pub fields: Option<Vec<String>>,
    /// `_since=null` / `_before=null`: the PostgreSQL reference returns an empty list.
    pub always_empty: bool,
    /// `_to` was used: a deprecation `Alert` is sent.
    pub deprecated_to: bool,
}

impl PluralQuery {
    /// Tombstones are listed only when a filter is on `last_modified`.
    pub fn includes_deleted(&self) -> bool {
        self.filters.iter().any(|f| f.field == "last_modified")
    }
}

const MAX_TIMESTAMP_SKEW_MS: i64 = 24 * 3600 * 1000;

fn invalid(name: &str, description: impl Into<String>) -> ApiError {
    ApiError::invalid(Location::Querystring, Some(name), description)
}

/// Kinto's `native_value`: JSON when the text parses as JSON, otherwise the raw string.
pub fn native_value(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// The colander integer schema of `_since`, `_limit`, ...: non-negative integer below 2^63.
fn schema_integer(name: &str, raw: &str, quoted_allowed: bool) -> ApiResult<i64> {
    let text = if quoted_allowed {
        raw.trim_matches('"')
    } else {
        raw
    };
    match text.trim().parse::<i128>() {
        Ok(n) if n < 0 => Err(invalid(name, format!("{n} is less than minimum value 0"))),
        Ok(n) if n >= i64::MAX as i128 => Err(invalid(
            name,
            format!("{n} is greater than maximum value {}", i64::MAX),
        )),
        Ok(n) => Ok(n as i64),
        Err(_) => Err(invalid(name, format!("\"{raw}\" is not a number"))),
    }
}

fn check_timestamp(name: &str, value: i64) -> ApiResult<()> {
    if value >= now_ms() + MAX_TIMESTAMP_SKEW_MS {
        return Err(invalid(name, format!("Invalid value for {name}")));
    }
    Ok(())
}

const OPERATORS: &[(&str, FilterOp)] = &[
    ("contains_any_", FilterOp::ContainsAny),
    ("contains_", FilterOp::Contains),
    ("lt_", FilterOp::Lt),
    ("min_", FilterOp::Min),
    ("max_", FilterOp::Max),
    ("not_", FilterOp::NotEq),
    ("eq_", FilterOp::Eq),
    ("gt_", FilterOp::Gt),
    ("in_", FilterOp::In),
    ("exclude_", FilterOp::NotIn),
    ("like_", FilterOp::Like),
    ("has_", FilterOp::Has),
];

fn is_field_name(field: &str) -> bool {
    !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
}

fn split_operator(param: &str) -> (FilterOp, &str) {
    for (prefix, op) in OPERATORS {
        if let Some(field) = param.strip_prefix(prefix) {
            if is_field_name(field) {
                return (*op, field);
            }
        }
    }
    (FilterOp::Eq, param)
}

/// The `_fields` parameter alone (object URLs).
pub fn fields(pairs: &[(String, String)]) -> Option<Vec<String>> {
    pairs
        .iter()
        .rev()
        .find(|(name, _)| name.trim() == "_fields")
        .map(|(_, value)| split_fields(value))
}

fn split_fields(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect()
}

/// Parses the querystring of a plural request.
pub fn parse(pairs: &[(String, String)]) -> ApiResult<PluralQuery> {
    let mut query = PluralQuery::default();
    let mut sort_spec: Option<String> = None;
    for (raw_name, raw_value) in pairs {
        let name = raw_name.trim();
        match name {
            "_since" | "_before" | "_to" => {
                if raw_value.trim() == "null" {
                    query.always_empty = true;
                    continue;
                }
                let value = schema_integer(name, raw_value, true)?;
                check_timestamp(name, value)?;
                let op = if name == "_since" {
                    FilterOp::Gt
                } else {
                    FilterOp::Lt
                };
                query.deprecated_to |= name == "_to";
                query.filters.push(Filter {
                    field: "last_modified".into(),
                    op,
                    value: Value::from(value),
                });
                continue;
            }
            "_limit" => {
                let limit = schema_integer(name, raw_value, false)?;
                query.limit = (limit > 0).then_some(limit as u64);
                continue;
            }
            "_sort" => {
                sort_spec = Some(raw_value.clone());
                continue;
            }
            "_token" => {
                query.token = Some(raw_value.clone());
                continue;
            }
            "_fields" => {
                query.fields = Some(split_fields(raw_value));
                continue;
            }
            _ if name.starts_with('_') => continue,
            "last_modified" => {
                schema_integer(name, raw_value, false)?;
            }
            _ => {}
        }
        query.filters.push(parse_filter(name, raw_value)?);
    }
    query.sorting = parse_sort(sort_spec.as_deref());
    Ok(query)
}

fn parse_filter(param: &str, raw_value: &str) -> ApiResult<Filter> {
    let (op, field) = split_operator(param);
    let invalid_value = || invalid(param, format!("Invalid value for {param}"));
    if field.contains('\0') || raw_value.contains('\0') {
        return Err(invalid(param, "Invalid character 0x00"));
    }
    let value = match op {
        FilterOp::In | FilterOp::NotIn => {
            let items: Vec<Value> = raw_value.split(',').map(native_value).collect();
            if field == "last_modified" && !items.iter().all(|v| v.is_i64() || v.is_u64()) {
                return Err(invalid_value());
            }
            if field == "id" && !items.iter().all(Value::is_string) {
                return Err(invalid_value());
            }
            Value::Array(items)
        }
        FilterOp::Contains | FilterOp::ContainsAny => {
            if field == "id" || field == "last_modified" {
                return Err(invalid(param, format!("Field '{field}' is not an array")));
            }
            match native_value(raw_value) {
                Value::Array(items) => Value::Array(items),
                other => Value::Array(vec![other]),
            }
        }
        FilterOp::Like => match native_value(raw_value) {
            Value::String(s) => Value::String(s),
            _ => return Err(invalid_value()),
        },
        _ => native_value(raw_value),
    };
    if field == "last_modified" && !matches!(op, FilterOp::In | FilterOp::NotIn | FilterOp::Has) {
        match value.as_i64() {
            Some(ts) => check_timestamp(param, ts)?,
            None => return Err(invalid_value()),
        }
    }
    if field == "last_modified" {
        if let Value::Array(items) = &value {
            for item in items {
                check_timestamp(param, item.as_i64().unwrap_or(0))?;
            }
        }
    }
    if field == "id" && matches!(op, FilterOp::Eq | FilterOp::NotEq) && !value.is_string() {
        return Err(invalid(
            "id",
            format!("{} is not a string: {{'id': ''}}", python_repr(&value)),
        ));
    }
    Ok(Filter {
        field: field.to_string(),
        op,
        value,
    })
}

/// A short Python-like rendering of a JSON value, for messages quoting values.
fn python_repr(value: &Value) -> String {
    match value {
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// `_sort=f1,-f2`: items not of the shape `[+-]field` are ignored; `-last_modified` is the
/// final tie-breaker unless `last_modified` is already a key.
pub fn parse_sort(spec: Option<&str>) -> Vec<Sort> {
    let mut sorting = Vec::new();
    for item in spec.unwrap_or("").split(',') {
        let item = item.trim();
        let (descending, field) = match item.strip_prefix('-') {
            Some(f) => (true, f),
            None => (false, item.strip_prefix('+').unwrap_or(item)),
        };
        if is_field_name(field) {
            sorting.push(Sort {
                field: field.to_string(),
                descending,
            });
        }
    }
    if !sorting.iter().any(|s| s.field == "last_modified") {
        sorting.push(Sort {
            field: "last_modified".into(),
            descending: true,
        });
    }
    sorting
}

/// `_fields` projection: keeps `id`, `last_modified` and the (dotted) requested fields.
pub fn project(object: &serde_json::Map<String, Value>, fields: &[String]) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["id", "last_modified"] {
        if let Some(v) = object.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    for field in fields {
        let path: Vec<&str> = field.split('.').collect();
        if let Some(value) = lookup(object, &path) {
            insert_path(&mut out, &path, value.clone());
        }
    }
    Value::Object(out)
}

fn lookup<'v>(object: &'v serde_json::Map<String, Value>, path: &[&str]) -> Option<&'v Value> {
    let (first, rest) = path.split_first()?;
    let value = object.get(*first)?;
    if rest.is_empty() {
        return Some(value);
    }
    lookup(value.as_object()?, rest)
}

fn insert_path(out: &mut serde_json::Map<String, Value>, path: &[&str], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        out.insert(first.to_string(), value);
        return;
    }
    let entry = out
        .entry(first.to_string())
        .or_insert_with(|| Value::Object(Default::default()));
    if let Value::Object(inner) = entry {
        insert_path(inner, rest, value);
    }
}
