//! `POST /v1/batch` (section 7.3): the payload validated with Kinto's (colander) messages,
//! `defaults` merged into each request, then every sub-request routed and answered in order
//! through the same handlers as plain requests, without HTTP, all in ONE storage transaction.
//! Callers are authenticated once per distinct `Authorization` value and their principals looked
//! up once per batch. A 5xx sub-request fails the whole batch (nothing committed); a 409 aborts
//! the work done so far, as the reference does.

use super::cors::Exposed;
use super::http::{self, decode_segment, parse_query};
use super::resource::body;
use super::route::{self, Route};
use super::{plugins, App, Ctx};
use crate::auth::User;
use crate::error::{ApiError, ApiResult, Detail, Location};
use crate::storage::Transaction;
use serde_json::{Map, Value};
use std::collections::{BTreeSet, HashMap};
use worker::{Request, Response};

const METHODS: &[&str] = &["GET", "HEAD", "DELETE", "TRACE", "POST", "PUT", "PATCH"];

/// One validated sub-request.
#[derive(Debug, Clone, PartialEq)]
pub struct SubRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Map<String, Value>>,
}

/// The text of a value inside `"…"` in colander messages (strings without quotes).
fn colander_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => body::python_repr(other),
    }
}

fn not_a_mapping(value: &Value) -> String {
    format!(
        "\"{}\" is not a mapping type: Does not implement dict-like functionality.",
        colander_str(value)
    )
}

/// Kinto's `merge_dicts(request, defaults)`: values of the request win, nested objects merge.
fn merge_defaults(request: &mut Map<String, Value>, defaults: &Map<String, Value>) {
    for (key, value) in defaults {
        match value {
            Value::Object(nested) => {
                let slot = request
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(target) = slot {
                    merge_defaults(target, nested);
                }
            }
            other => {
                request.entry(key.clone()).or_insert_with(|| other.clone());
            }
        }
    }
}

/// Validates one request (or `defaults`, where `path` is optional) as `BatchRequestSchema`.
fn check_request(
    name: &str,
    value: &Value,
    path_required: bool,
    details: &mut Vec<Detail>,
) -> Option<SubRequest> {
    let Value::Object(map) = value else {
        details.push(Detail::new(
            Location::Body,
            Some(name),
            not_a_mapping(value),
        ));
        return None;
    };
    let unknown: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "method" | "path" | "headers" | "body"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let before = details.len();
    let field = |f: &str| format!("{name}.{f}");
    let method = match map.get("method") {
        None => "GET".to_string(),
        Some(Value::String(m)) if METHODS.contains(&m.as_str()) => m.clone(),
        Some(Value::String(m)) => {
            details.push(Detail::new(
                Location::Body,
                Some(&field("method")),
                format!("\"{m}\" is not one of {}", METHODS.join(", ")),
            ));
            String::new()
        }
        Some(other) => {
            details.push(Detail::new(
                Location::Body,
                Some(&field("method")),
                format!("{} is not a string: {{'method': ''}}", colander_str(other)),
            ));
            String::new()
        }
    };
    let path = match map.get("path") {
        None if path_required => {
            details.push(Detail::new(
                Location::Body,
                Some(&field("path")),
                "Required",
            ));
            String::new()
        }
        None => String::new(),
        Some(Value::String(p)) if p.starts_with('/') => p.clone(),
        Some(Value::String(_)) => {
            details.push(Detail::new(
                Location::Body,
                Some(&field("path")),
                "String does not match expected pattern",
            ));
            String::new()
        }
        Some(other) => {
            details.push(Detail::new(
                Location::Body,
                Some(&field("path")),
                format!("{} is not a string: {{'path': ''}}", colander_str(other)),
            ));
            String::new()
        }
    };
    let mut headers = Vec::new();
    match map.get("headers") {
        None => {}
        Some(Value::Object(h)) => {
            if h.values().all(Value::is_string) {
                headers = h
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
            } else {
                details.push(Detail::new(
                    Location::Body,
                    Some(&field("headers")),
                    format!(
                        "{} contains non string value",
                        body::python_repr(&Value::Object(h.clone()))
                    ),
                ));
            }
        }
        Some(other) => details.push(Detail::new(
            Location::Body,
            Some(&field("headers")),
            not_a_mapping(other),
        )),
    }
    let body = match map.get("body") {
        None => None,
        Some(Value::Object(b)) => Some(b.clone()),
        Some(other) => {
            details.push(Detail::new(
                Location::Body,
                Some(&field("body")),
                not_a_mapping(other),
            ));
            None
        }
    };
    if !unknown.is_empty() {
        details.push(Detail::new(
            Location::Body,
            Some(name),
            format!(
                "Unrecognized keys in mapping: \"{}\"",
                body::python_repr(&Value::Object(unknown))
            ),
        ));
    }
    (details.len() == before).then_some(SubRequest {
        method,
        path,
        headers,
        body,
    })
}

/// Validates the payload and merges the defaults; applies `batch_max_requests` and the
/// recursion rule.
pub fn parse_payload(raw: Value, max_requests: usize) -> ApiResult<Vec<SubRequest>> {
    let Value::Object(mut root) = raw else {
        return Err(ApiError::invalid(
            Location::Body,
            None,
            format!(
                "\"{}\" is not a mapping type: Does not implement dict-like functionality.",
                colander_str(&raw)
            ),
        ));
    };
    let mut details = Vec::new();
    let defaults = root.remove("defaults");
    let requests = root.remove("requests");
    if !root.is_empty() {
        details.push(Detail::new(
            Location::Body,
            Some(""),
            format!(
                "Unrecognized keys in mapping: \"{}\"",
                body::python_repr(&Value::Object(root))
            ),
        ));
    }
    let defaults = match defaults {
        None => None,
        Some(value) => {
            check_request("defaults", &value, false, &mut details);
            value.as_object().cloned()
        }
    };
    let mut parsed = Vec::new();
    match requests {
        None => details.push(Detail::new(Location::Body, Some("requests"), "Required")),
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let mut item = item;
                if let (Some(defaults), Value::Object(map)) = (&defaults, &mut item) {
                    merge_defaults(map, defaults);
                }
                if let Some(request) =
                    check_request(&format!("requests.{i}"), &item, true, &mut details)
                {
                    parsed.push(request);
                }
            }
        }
        Some(other) => details.push(Detail::new(
            Location::Body,
            Some("requests"),
            format!("\"{}\" is not iterable", colander_str(&other)),
        )),
    }
    if !details.is_empty() {
        return Err(ApiError::Invalid {
            status: 400,
            details,
        });
    }
    if max_requests > 0 && parsed.len() > max_requests {
        return Err(ApiError::invalid(
            Location::Body,
            Some("requests"),
            format!("Number of requests is limited to {max_requests}"),
        ));
    }
    if parsed.iter().any(|r| r.path.contains("/batch")) {
        return Err(ApiError::invalid(
            Location::Body,
            Some("requests"),
            "Recursive call on /batch endpoint is forbidden.",
        ));
    }
    Ok(parsed)
}

/// Kinto's `build_request`: the batch's headers overridden by the sub-request's, without
/// `Content-Length`; a body is sent as JSON.
fn build_request(parent: &Request, sub: &SubRequest) -> Request {
    let path = if sub.path.starts_with("/v1") {
        sub.path.clone()
    } else {
        format!("/v1{}", sub.path)
    };
    let mut headers: Vec<(String, String)> = parent
        .headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("Content-Length")
                && !sub.headers.iter().any(|(s, _)| s.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect();
    headers.extend(sub.headers.iter().cloned());
    let body = match &sub.body {
        Some(body) if !body.is_empty() => {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Type"));
            headers.push((
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            ));
            serde_json::to_vec(body).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"));
    Request {
        method: sub.method.clone(),
        target: path,
        version: parent.version,
        headers,
        body,
        remote_addr: parent.remote_addr.clone(),
        scheme: parent.scheme,
    }
}

/// What is resolved once per batch: users per `Authorization` value, principals per user.
#[derive(Default)]
struct Shared {
    users: HashMap<Option<String>, Option<User>>,
    principals: HashMap<String, BTreeSet<String>>,
}

/// `POST /v1/batch`.
pub fn handle(app: &App, request: &Request) -> ApiResult<Response> {
    if !http::accepts_json(request.header("Accept")) {
        return Err(http::not_acceptable());
    }
    body::mode(request.header("Content-Type"), false)?;
    let raw = body::parse_json(&request.body)?;
    let subs = parse_payload(raw, app.cfg.settings.batch_max_requests)?;
    let mut out = Vec::with_capacity(64 + subs.len() * 512);
    out.extend_from_slice(b"{\"responses\":[");
    if subs.is_empty() {
        out.extend_from_slice(b"]}");
        return Ok(json_bytes(out));
    }
    let mut shared = Shared::default();
    let mut tx = app.backend.begin()?;
    for (i, sub) in subs.iter().enumerate() {
        let sub_request = build_request(request, sub);
        let (response, final_request) = match run(app, &sub_request, &mut *tx, &mut shared) {
            Ok(answer) => answer,
            Err(e) => {
                if let Err(rollback) = tx.rollback() {
                    log::error!("batch rollback failed: {rollback:?}");
                }
                return Err(e);
            }
        };
        if response.status == 409 {
            // The reference aborts the transaction so far, and goes on in a new one.
            if let Err(rollback) = tx.rollback() {
                log::error!("batch rollback failed: {rollback:?}");
            }
            tx = app.backend.begin()?;
        }
        if i > 0 {
            out.push(b',');
        }
        let final_request = final_request.as_ref().unwrap_or(&sub_request);
        write_response(&mut out, final_request, &response);
    }
    tx.commit()?;
    out.extend_from_slice(b"]}");
    Ok(json_bytes(out))
}

fn json_bytes(body: Vec<u8>) -> Response {
    let mut response = Response::new(200);
    response
        .headers
        .push(("Content-Type".into(), "application/json".into()));
    response.body = body;
    response
}

/// Kinto's `build_response`: `{"path", "status", "headers", "body"}`; the body is embedded
/// as JSON (not re-parsed: our JSON bodies are valid), `""` for HEAD, text otherwise.
fn write_response(out: &mut Vec<u8>, request: &Request, response: &Response) {
    let path = decode_segment(request.path()).unwrap_or_else(|| request.path().to_string());
    out.extend_from_slice(b"{\"path\":");
    out.extend_from_slice(&serde_json::to_vec(&path).unwrap_or_default());
    out.extend_from_slice(format!(",\"status\":{},\"headers\":", response.status).as_bytes());
    let mut headers = Map::new();
    for (name, value) in &response.headers {
        headers.insert(name.clone(), Value::String(value.clone()));
    }
    headers.insert(
        "Content-Length".into(),
        Value::String(response.body.len().to_string()),
    );
    out.extend_from_slice(&serde_json::to_vec(&headers).unwrap_or_default());
    out.extend_from_slice(b",\"body\":");
    let is_json = response
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Content-Type") && v.starts_with("application/json"));
    if request.method.eq_ignore_ascii_case("HEAD") || response.body.is_empty() {
        out.extend_from_slice(b"\"\"");
    } else if is_json {
        out.extend_from_slice(&response.body);
    } else {
        let text = String::from_utf8_lossy(&response.body);
        out.extend_from_slice(&serde_json::to_vec(&text).unwrap_or_default());
    }
    out.push(b'}');
}

/// Answers one sub-request inside the batch's transaction, following one redirect. Returns the
/// response and the followed request, if any. Errors are returned only when they must fail the
/// whole batch (5xx).
fn run(
    app: &App,
    request: &Request,
    tx: &mut dyn Transaction,
    shared: &mut Shared,
) -> ApiResult<(Response, Option<Request>)> {
    let routing = app.cfg.routing;
    let first = route::route(request.path(), request.query(), routing);
    if let Ok(Route::Redirect { location, .. }) = &first {
        let mut followed = request.clone();
        followed.target = location.clone();
        let response = answer(app, &followed, tx, shared)?;
        return Ok((response, Some(followed)));
    }
    Ok((answer(app, request, tx, shared)?, None))
}

/// One sub-request's response, with the headers of every response; 5xx errors propagate.
fn answer(
    app: &App,
    request: &Request,
    tx: &mut dyn Transaction,
    shared: &mut Shared,
) -> ApiResult<Response> {
    let mut exposed = Exposed::Base;
    let mut alert = None;
    let result = dispatch(app, request, tx, shared, &mut exposed, &mut alert);
    let mut response = match result {
        Ok(response) => response,
        Err(e) if e.status() >= 500 => return Err(e),
        Err(e) => e.into_response(&app.cfg.errors),
    };
    app.finish(request, &mut response, exposed, alert);
    Ok(response)
}

fn dispatch(
    app: &App,
    request: &Request,
    tx: &mut dyn Transaction,
    shared: &mut Shared,
    exposed: &mut Exposed,
    alert: &mut Option<String>,
) -> ApiResult<Response> {
    let route = route::route(request.path(), request.query(), app.cfg.routing)?;
    let method = request.method.to_ascii_uppercase();
    *exposed = match (&route, method.as_str()) {
        (Route::Plural(_), "GET") => Exposed::PluralGet,
        (Route::Plural(_), "HEAD") => Exposed::PluralHead,
        (Route::Object(_), "GET" | "HEAD") => Exposed::Object,
        (Route::Plugin(p), "GET" | "HEAD") => plugins::exposed(p, &method),
        _ => Exposed::Base,
    };
    if !plugins::is_transactional(&route) {
        if route == Route::Flush {
            return Err(ApiError::BadRequest(
                "__flush__ cannot run inside a batch.".into(),
            ));
        }
        let mut inner = Exposed::Base;
        let (response, sub_alert) = app.dispatch(request, &mut inner)?;
        *alert = sub_alert;
        return Ok(response);
    }
    if app.cfg.settings.readonly && !matches!(method.as_str(), "GET" | "HEAD") {
        return Err(ApiError::MethodNotAllowed { allow: None });
    }
    let authorization = request.header("Authorization").map(str::to_string);
    let user = shared
        .users
        .entry(authorization)
        .or_insert_with_key(|a| app.authenticate(a.as_deref()))
        .clone();
    let principals = user
        .as_ref()
        .and_then(|u| shared.principals.get(&u.id).cloned());
    let mut ctx = Ctx {
        cfg: &app.cfg,
        request,
        query: parse_query(request.query())?,
        user,
        cache: &*app.cache,
        principals,
        alert: None,
    };
    let result = app.in_tx(&mut ctx, tx, &route);
    if let (Some(user), Some(principals)) = (&ctx.user, ctx.principals.take()) {
        shared
            .principals
            .entry(user.id.clone())
            .or_insert(principals);
    }
    *alert = ctx.alert.take();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_merged_key_by_key() {
        let subs = parse_payload(
            json!({"defaults": {"method": "PUT", "headers": {"A": "1", "B": "2"}, "body": {"data": {"x": 1}}},
                   "requests": [{"path": "/a", "headers": {"B": "3"}, "body": {"data": {"y": 2}}},
                                {"method": "GET", "path": "/b"}]}),
            25,
        )
        .unwrap();
        assert_eq!(subs[0].method, "PUT");
        assert_eq!(subs[1].method, "GET");
        let mut headers = subs[0].headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            vec![("A".into(), "1".into()), ("B".into(), "3".into())]
        );
        assert_eq!(
            Value::Object(subs[0].body.clone().unwrap()),
            json!({"data": {"y": 2, "x": 1}})
        );
    }

    #[test]
    fn validation_messages() {
        let err = |v: Value| match parse_payload(v, 25) {
            Err(ApiError::Invalid { details, .. }) => {
                let d = &details[0];
                (d.name.clone().unwrap_or_default(), d.description.clone())
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(err(json!({})), ("requests".into(), "Required".into()));
        assert_eq!(
            err(json!({"requests": [{"path": "buckets"}]})),
            (
                "requests.0.path".into(),
                "String does not match expected pattern".into()
            )
        );
        assert_eq!(
            err(json!({"requests": [{"path": "/a", "foo": 1}]})),
            (
                "requests.0".into(),
                "Unrecognized keys in mapping: \"{'foo': 1}\"".into()
            )
        );
        assert_eq!(
            err(json!({"requests": [{"path": "/a", "method": "get"}]})).1,
            "\"get\" is not one of GET, HEAD, DELETE, TRACE, POST, PUT, PATCH"
        );
        assert_eq!(
            err(json!({"requests": [{"path": "/a", "headers": {"X": 1}}]})).1,
            "{'X': 1} contains non string value"
        );
        let many: Vec<Value> = (0..26).map(|_| json!({"path": "/a"})).collect();
        assert_eq!(
            err(json!({ "requests": many })).1,
            "Number of requests is limited to 25"
        );
        assert_eq!(
            err(json!({"requests": [{"path": "/buckets/batchy"}]})).1,
            "Recursive call on /batch endpoint is forbidden."
        );
    }
}
