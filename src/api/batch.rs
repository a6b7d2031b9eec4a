//! `POST /v1/batch` (section 7.3): validation of `{defaults, requests}`, sub-requests run in
//! order inside the batch's single transaction, and the `{"responses": […]}` envelope. A 5xx
//! sub-response aborts the whole batch (nothing is committed); 4xx ones do not.

use super::http::{decode_segment, json};
use super::resource::body::{parse_json, python_repr};
use super::{App, Carry};
use crate::error::{invalid_sorted, ApiError, ApiResult, Detail, Location};
use crate::storage::Transaction;
use serde_json::{json, Map, Value};
use worker::{Request, Response};

const METHODS: &[&str] = &["GET", "HEAD", "DELETE", "TRACE", "POST", "PUT", "PATCH"];

/// One validated sub-request.
#[derive(Debug, Clone)]
struct SubRequest {
    method: String,
    path: String,
    headers: Map<String, Value>,
    body: Option<Value>,
}

fn detail(name: &str, description: impl Into<String>) -> Detail {
    Detail::new(Location::Body, Some(name), description)
}

/// Deep merge of `defaults` under `request` (request values win, objects merged key by key).
fn merge_defaults(request: &mut Map<String, Value>, defaults: &Map<String, Value>) {
    for (key, value) in defaults {
        match (request.get_mut(key), value) {
            (Some(Value::Object(mine)), Value::Object(theirs)) => merge_defaults(mine, theirs),
            (Some(_), _) => {}
            (None, v) => {
                request.insert(key.clone(), v.clone());
            }
        }
    }
}

/// Checks the keys and value types of a request (or of `defaults`), collecting problems.
fn check_shape(name: &str, map: &Map<String, Value>, details: &mut Vec<Detail>) {
    let unknown: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "method" | "path" | "headers" | "body"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !unknown.is_empty() {
        details.push(detail(
            name,
            format!(
                "Unrecognized keys in mapping: \"{}\"",
                python_repr(&Value::Object(unknown))
            ),
        ));
    }
    if let Some(method) = map.get("method") {
        let ok = method
            .as_str()
            .is_some_and(|m| METHODS.contains(&m.to_ascii_uppercase().as_str()));
        if !ok {
            let shown = method
                .as_str()
                .map(str::to_string)
                .unwrap_or(method.to_string());
            details.push(detail(
                &format!("{name}.method"),
                format!("\"{shown}\" is not one of {}", METHODS.join(", ")),
            ));
        }
    }
    if let Some(path) = map.get("path") {
        if !path.as_str().is_some_and(|p| p.starts_with('/')) {
            details.push(detail(
                &format!("{name}.path"),
                "String does not match expected pattern",
            ));
        }
    }
    match map.get("headers") {
        None => {}
        Some(Value::Object(headers)) if headers.values().any(|v| !v.is_string()) => {
            details.push(detail(
                &format!("{name}.headers"),
                format!(
                    "{} contains non string value",
                    python_repr(&Value::Object(headers.clone()))
                ),
            ));
        }
        Some(Value::Object(_)) => {}
        Some(other) => details.push(detail(
            &format!("{name}.headers"),
            format!(
                "\"{}\" is not a mapping type: Does not implement dict-like functionality.",
                other
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(other.to_string())
            ),
        )),
    }
    match map.get("body") {
        None | Some(Value::Object(_)) => {}
        Some(other) => details.push(detail(
            &format!("{name}.body"),
            format!(
                "\"{}\" is not a mapping type: Does not implement dict-like functionality.",
                other
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(other.to_string())
            ),
        )),
    }
}

fn validate(body: Value, max_requests: usize) -> ApiResult<Vec<SubRequest>> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid(
            Location::Body,
            Some("requests"),
            "Required",
        ));
    };
    let mut details = Vec::new();
    let defaults = match body.remove("defaults") {
        None => Map::new(),
        Some(Value::Object(d)) => d,
        Some(_) => {
            details.push(detail("defaults", "Invalid defaults"));
            Map::new()
        }
    };
    check_shape("defaults", &defaults, &mut details);
    let requests = match body.remove("requests") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::invalid(
                Location::Body,
                Some("requests"),
                "Invalid requests",
            ))
        }
        None => {
            return Err(ApiError::invalid(
                Location::Body,
                Some("requests"),
                "Required",
            ))
        }
    };
    if requests.len() > max_requests {
        return Err(ApiError::invalid(
            Location::Body,
            Some("requests"),
            format!("Number of requests is limited to {max_requests}"),
        ));
    }
    let mut subs = Vec::new();
    for (i, item) in requests.into_iter().enumerate() {
        let name = format!("requests.{i}");
        let Value::Object(mut map) = item else {
            details.push(detail(&name, "Does not implement dict-like functionality."));
            continue;
        };
        check_shape(&name, &map, &mut details);
        merge_defaults(&mut map, &defaults);
        let Some(path) = map.get("path").and_then(Value::as_str).map(str::to_string) else {
            details.push(detail(&format!("{name}.path"), "Required"));
            continue;
        };
        if path.contains("/batch") {
            details.push(detail(
                "requests",
                "Recursive call on /batch endpoint is forbidden.",
            ));
            continue;
        }
        subs.push(SubRequest {
            method: map
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("GET")
                .to_ascii_uppercase(),
            path,
            headers: match map.get("headers") {
                Some(Value::Object(h)) => h.clone(),
                _ => Map::new(),
            },
            body: map.get("body").cloned(),
        });
    }
    if !details.is_empty() {
        return Err(invalid_sorted(400, details));
    }
    Ok(subs)
}

/// The request a sub-request becomes: the batch's headers overridden by its own.
fn build(batch: &Request, sub: &SubRequest) -> Request {
    let mut headers: Vec<(String, String)> = batch
        .headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("Content-Length") && !n.eq_ignore_ascii_case("Content-Type")
        })
        .filter(|(n, _)| !sub.headers.keys().any(|k| k.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    for (name, value) in &sub.headers {
        if !name.eq_ignore_ascii_case("Content-Length") {
            headers.push((name.clone(), value.as_str().unwrap_or_default().to_string()));
        }
    }
    let body = match &sub.body {
        Some(body) => {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
            {
                headers.push((
                    "Content-Type".into(),
                    "application/json; charset=utf-8".into(),
                ));
            }
            serde_json::to_vec(body).unwrap_or_default()
        }
        None => Vec::new(),
    };
    let target =
        if sub.path == "/v1" || sub.path.starts_with("/v1/") || sub.path.starts_with("/v1?") {
            sub.path.clone()
        } else {
            format!("/v1{}", sub.path)
        };
    Request {
        method: sub.method.clone(),
        target,
        version: batch.version,
        headers,
        body,
        remote_addr: batch.remote_addr.clone(),
        scheme: batch.scheme,
    }
}

/// The `path` reported for a sub-response: decoded, without query string.
fn reported_path(request: &Request) -> String {
    let path = request.path();
    decode_segment(path).unwrap_or_else(|| path.to_string())
}

/// The path and query of a 307's `Location`, if the response is a redirect.
fn local_redirect(response: &Response) -> Option<String> {
    if response.status != 307 {
        return None;
    }
    let location = response
        .headers
        .iter()
        .find(|(n, _)| n == "Location")
        .map(|(_, v)| v.as_str())?;
    let (_, rest) = location.split_once("://")?;
    rest.find('/').map(|i| rest[i..].to_string())
}

/// Runs the batch in `tx`.
pub fn run(
    app: &App,
    request: &Request,
    tx: &mut dyn Transaction,
    carry: &mut Carry,
) -> ApiResult<Response> {
    let subs = validate(
        parse_json(&request.body)?,
        app.cfg.settings.batch_max_requests,
    )?;
    let mut responses = Vec::with_capacity(subs.len());
    for sub in &subs {
        let mut sub_request = build(request, sub);
        let mut response = app.serve_sub(&sub_request, tx, carry)?;
        // Trailing-slash redirects are followed once.
        if let Some(target) = local_redirect(&response) {
            if target != sub_request.target {
                sub_request.target = target;
                response = app.serve_sub(&sub_request, tx, carry)?;
            }
        }
        let headers: Map<String, Value> = response
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        let body = if sub_request.method == "HEAD" {
            Value::String(String::new())
        } else {
            serde_json::from_slice(&response.body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&response.body).into_owned())
            })
        };
        responses.push(json!({
            "status": response.status,
            "path": reported_path(&sub_request),
            "headers": headers,
            "body": body,
        }));
    }
    Ok(json(200, &json!({ "responses": responses })))
}
