//! Pagination (section 3.10): the page size, Kinto's `_token` format (base64 of
//! `{"last_object", "offset", "nonce"}`), the rules selecting the objects after the last one, and
//! the `Next-Page` URL.

use crate::api::http::quote_plus;
use crate::error::{ApiError, ApiResult, Location};
use crate::storage::{Filter, FilterOp, Object, Sort};
use base64::Engine;
use serde_json::{json, Map, Value};

/// A decoded continuation token.
#[derive(Debug, Clone)]
pub struct Token {
    pub last_object: Map<String, Value>,
    pub nonce: Option<String>,
}

fn invalid_token() -> ApiError {
    ApiError::invalid(Location::Querystring, None, "_token has invalid content")
}

/// Effective page size: `_limit` (or `paginate_by`), capped by `paginate_by` and
/// `storage_max_fetch_size`.
pub fn page_size(limit: Option<u64>, paginate_by: Option<usize>, max_fetch: usize) -> usize {
    let mut size = limit
        .map(|l| l.min(usize::MAX as u64) as usize)
        .or(paginate_by)
        .unwrap_or(max_fetch);
    if let Some(p) = paginate_by {
        size = size.min(p);
    }
    size.min(max_fetch).max(1)
}

pub fn decode(token: &str) -> ApiResult<Token> {
    decode_with(token, true)
}

/// Decodes a token; `require_timestamp` is false for lists without `last_modified`
/// (`/permissions` entries).
pub fn decode_with(token: &str, require_timestamp: bool) -> ApiResult<Token> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| invalid_token())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid_token())?;
    let Value::Object(map) = value else {
        return Err(invalid_token());
    };
    let Some(Value::Object(last_object)) = map.get("last_object") else {
        return Err(invalid_token());
    };
    if !map
        .get("offset")
        .is_some_and(|o| o.as_u64().is_some() || o.as_i64().is_some_and(|n| n >= 0))
    {
        return Err(invalid_token());
    }
    let valid_timestamp = last_object
        .get("last_modified")
        .and_then(Value::as_i64)
        .is_some_and(|n| n >= 0);
    if require_timestamp && !valid_timestamp {
        return Err(invalid_token());
    }
    for value in last_object.values() {
        match value {
            Value::Object(_) | Value::Array(_) => return Err(invalid_token()),
            Value::String(s) if s.contains('\0') => return Err(invalid_token()),
            _ => {}
        }
    }
    Ok(Token {
        last_object: last_object.clone(),
        nonce: map.get("nonce").and_then(Value::as_str).map(str::to_string),
    })
}

/// Builds a token after `last`, for the given sort keys.
pub fn encode(last: &Object, sorting: &[Sort], offset: usize, nonce: &str) -> String {
    let mut last_object = Map::new();
    for sort in sorting {
        if let Some(value) = dotted_get(last, &sort.field) {
            last_object.insert(sort.field.clone(), value.clone());
        }
    }
    let body = json!({"last_object": last_object, "offset": offset, "nonce": nonce});
    base64::engine::general_purpose::STANDARD.encode(body.to_string())
}

fn dotted_get<'v>(object: &'v Object, field: &str) -> Option<&'v Value> {
    if let Some(v) = object.get(field) {
        return Some(v);
    }
    let mut current = object;
    let mut parts = field.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = current.get(part)?;
        if parts.peek().is_none() {
            return Some(value);
        }
        current = value.as_object()?;
    }
    None
}

fn rule_filter(last_object: &Map<String, Value>, field: &str, op: FilterOp) -> Filter {
    match last_object.get(field) {
        Some(value) => Filter {
            field: field.to_string(),
            op,
            value: value.clone(),
        },
        None => Filter::missing(field, op),
    }
}

/// Kinto's `_build_pagination_rules`: for keys `k1..kn`, the OR over `i` of
/// (`k1 = v1 AND … AND ki >|< vi`); fields the last object lacked use the storage's marker.
pub fn rules(sorting: &[Sort], last_object: &Map<String, Value>) -> Vec<Vec<Filter>> {
    let mut rules = Vec::new();
    for n in (1..=sorting.len()).rev() {
        let mut rule = Vec::new();
        for sort in &sorting[..n - 1] {
            rule.push(rule_filter(last_object, &sort.field, FilterOp::Eq));
        }
        let last = &sorting[n - 1];
        let op = if last.descending {
            FilterOp::Lt
        } else {
            FilterOp::Gt
        };
        rule.push(rule_filter(last_object, &last.field, op));
        rules.push(rule);
    }
    rules
}

/// A fresh nonce (`pagination-token-<uuid4>`), also the cache key of single-use tokens.
pub fn new_nonce() -> String {
    format!("pagination-token-{}", uuid::Uuid::new_v4())
}

/// The `Next-Page` URL: original parameters in order, `_limit` and `_token` replaced in place or
/// appended, form-encoded.
pub fn next_page_url(
    base: &str,
    path: &str,
    pairs: &[(String, String)],
    limit: usize,
    token: &str,
) -> String {
    let mut params: Vec<(String, String)> = pairs.to_vec();
    for (key, value) in [("_limit", limit.to_string()), ("_token", token.to_string())] {
        match params.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => params.push((key.to_string(), value)),
        }
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
        .collect();
    format!("{base}{path}?{}", query.join("&"))
}
