//! The one error enum of the API, mapped to Kinto's JSON error body in exactly one place
//! ([`ApiError::into_response`]): status, errno, `error`, `message`, `details`, `info` and the
//! `Retry-After` / `Allow` / `WWW-Authenticate` headers that go with each kind of error.

use crate::storage::{BackendError, Object};
use serde_json::{json, Map, Value};

/// Where a validation problem was found (`details[].location`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Body,
    Querystring,
    Header,
    Path,
}

impl Location {
    fn as_str(self) -> &'static str {
        match self {
            Location::Body => "body",
            Location::Querystring => "querystring",
            Location::Header => "header",
            Location::Path => "path",
        }
    }
}

/// One validation problem: `{"location", "name", "description"}` (`name` may be JSON null).
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub location: Location,
    pub name: Option<String>,
    pub description: String,
}

impl Detail {
    pub fn new(location: Location, name: Option<&str>, description: impl Into<String>) -> Self {
        Detail {
            location,
            name: name.map(str::to_string),
            description: description.into(),
        }
    }
}

/// Every error the API answers with. Status codes and errnos are decided here only.
#[derive(Debug)]
pub enum ApiError {
    /// 400 (or 406/415 for content negotiation) errno 107, "Invalid parameters".
    Invalid { status: u16, details: Vec<Detail> },
    /// 400 errno 107 with error "Bad Request" and a free message (bad encodings).
    BadRequest(String),
    /// 401 errno 104; carries the `WWW-Authenticate` challenges of the enabled policies.
    Unauthorized { challenges: Vec<String> },
    /// 403 errno 121.
    Forbidden,
    /// 401 errno 999 "Cannot read accounts." (anonymous `GET /accounts`, a Kinto quirk).
    AccountsUnreadable,
    /// 404 errno 110: the object does not exist (or is a tombstone).
    ObjectNotFound { id: String, resource_name: String },
    /// 404 errno 111 with details: a parent (collection of records, invalid parent id) is missing.
    ParentNotFound { id: String, resource_name: String },
    /// 404 errno 111: no route for this URL.
    UnknownUrl,
    /// 404 errno 116: path outside `/v1`.
    VersionNotAvailable,
    /// 405 errno 115; `allow` is `None` in readonly mode (no `Allow` header).
    MethodNotAllowed { allow: Option<String> },
    /// 409 errno 122 (storage integrity conflict), with `Retry-After`.
    Conflict,
    /// 410 errno 202: end of service reached.
    Gone,
    /// 412 errno 114; `existing` is the current object (without permissions), if any;
    /// `timestamp` the current object or list timestamp (sent as `ETag`/`Last-Modified`).
    PreconditionFailed {
        existing: Option<Object>,
        timestamp: Option<i64>,
    },
    /// 503 errno 201, with `Retry-After`.
    Backend(BackendError),
    /// 500 errno 999.
    Internal(String),
    /// Errors detected by the HTTP worker itself (malformed requests, limits, timeouts).
    Transport(u16),
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Conflict(_) => ApiError::Conflict,
            other => ApiError::Backend(other),
        }
    }
}

/// Settings the error body and headers depend on (computed once).
#[derive(Debug, Clone)]
pub struct ErrorSettings {
    pub info_link: String,
    pub retry_after_seconds: u64,
}

impl ApiError {
    /// A single validation problem, status 400.
    pub fn invalid(location: Location, name: Option<&str>, description: impl Into<String>) -> Self {
        ApiError::Invalid {
            status: 400,
            details: vec![Detail::new(location, name, description)],
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Invalid { status, .. } => *status,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized { .. } | ApiError::AccountsUnreadable => 401,
            ApiError::Forbidden => 403,
            ApiError::ObjectNotFound { .. }
            | ApiError::ParentNotFound { .. }
            | ApiError::UnknownUrl
            | ApiError::VersionNotAvailable => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict => 409,
            ApiError::Gone => 410,
            ApiError::PreconditionFailed { .. } => 412,
            ApiError::Backend(_) => 503,
            ApiError::Internal(_) => 500,
            ApiError::Transport(status) => *status,
        }
    }

    pub fn errno(&self) -> u16 {
        match self {
            ApiError::Invalid { .. } | ApiError::BadRequest(_) => 107,
            ApiError::Unauthorized { .. } => 104,
            ApiError::Forbidden => 121,
            ApiError::ObjectNotFound { .. } => 110,
            ApiError::ParentNotFound { .. } | ApiError::UnknownUrl => 111,
            ApiError::VersionNotAvailable => 116,
            ApiError::MethodNotAllowed { .. } => 115,
            ApiError::Conflict => 122,
            ApiError::Gone => 202,
            ApiError::PreconditionFailed { .. } => 114,
            ApiError::Backend(_) => 201,
            ApiError::Internal(_) | ApiError::AccountsUnreadable => 999,
            ApiError::Transport(status) => match status {
                400 | 414 | 431 => 107,
                411 => 112,
                413 => 113,
                429 => 117,
                503 => 201,
                _ => 999,
            },
        }
    }

    /// `Retry-After` applies to backend failures and integrity conflicts only (not to 500s).
    pub fn retry_after(&self, settings: &ErrorSettings) -> Option<u64> {
        match self {
            ApiError::Backend(_) | ApiError::Conflict => Some(settings.retry_after_seconds),
            ApiError::Transport(503) => Some(settings.retry_after_seconds),
            _ => None,
        }
    }

    fn message(&self) -> Option<String> {
        Some(match self {
            ApiError::Invalid { details, .. } => {
                let first = details.first()?;
                match &first.name {
                    None => format!("{}: {}", first.location.as_str(), first.description),
                    Some(name) if first.description.contains(name.as_str()) => {
                        first.description.clone()
                    }
                    Some(name) => format!(
                        "{} in {}: {}",
                        name,
                        first.location.as_str(),
                        first.description
                    ),
                }
            }
            ApiError::BadRequest(message) => message.clone(),
            ApiError::Unauthorized { .. } => {
                "Please authenticate yourself to use this endpoint.".into()
            }
            ApiError::Forbidden => "This user cannot access this resource.".into(),
            ApiError::ObjectNotFound { .. }
            | ApiError::ParentNotFound { .. }
            | ApiError::AccountsUnreadable => return None,
            ApiError::UnknownUrl => "The resource you are looking for could not be found.".into(),
            ApiError::VersionNotAvailable => {
                "The requested API version is not available on this server.".into()
            }
            ApiError::MethodNotAllowed { .. } => "Method not allowed on this endpoint.".into(),
            ApiError::Conflict => "Integrity constraint violated, please retry.".into(),
            ApiError::Gone => {
                "The service you are trying to connect no longer exists at this location.".into()
            }
            ApiError::PreconditionFailed { .. } => "Resource was modified meanwhile".into(),
            ApiError::Backend(BackendError::ReadOnly) => "Resource timestamp cannot be written. \
                 Plural endpoint must be hit at least once from a writable instance."
                .into(),
            ApiError::Backend(_) => "Service temporary unavailable due to overloading or \
                 maintenance, please retry later."
                .into(),
            ApiError::Internal(_) | ApiError::Transport(500) => {
                "A programmatic error occurred, developers have been informed.".into()
            }
            ApiError::Transport(_) => return None,
        })
    }

    fn error_title(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "Invalid parameters",
            ApiError::AccountsUnreadable => "Cannot read accounts.",
            _ => worker::response::reason_phrase(self.status()),
        }
    }

    /// The JSON error body (section 4.1).
    pub fn body(&self, settings: &ErrorSettings) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.status()));
        body.insert("errno".into(), json!(self.errno()));
        body.insert("error".into(), json!(self.error_title()));
        if let Some(message) = self.message() {
            body.insert("message".into(), json!(message));
        }
        if self.status() == 500 {
            body.insert("info".into(), json!(settings.info_link));
        }
        match self {
            ApiError::Invalid { details, .. } => {
                let list: Vec<Value> = details
                    .iter()
                    .map(|d| {
                        json!({"location": d.location.as_str(), "name": d.name, "description": d.description})
                    })
                    .collect();
                body.insert("details".into(), Value::Array(list));
            }
            ApiError::ObjectNotFound { id, resource_name }
            | ApiError::ParentNotFound { id, resource_name } => {
                body.insert(
                    "details".into(),
                    json!({"id": id, "resource_name": resource_name}),
                );
            }
            ApiError::PreconditionFailed {
                existing: Some(existing),
                ..
            } => {
                body.insert("details".into(), json!({ "existing": existing }));
            }
            _ => {}
        }
        Value::Object(body)
    }

    /// The complete error response: status, JSON body and the headers tied to the error kind.
    pub fn into_response(self, settings: &ErrorSettings) -> worker::Response {
        // Internal errors are logged with their request by `api::observe`; backend failures are
        // CRITICAL, as Kinto's error view logs them.
        if let ApiError::Backend(reason) = &self {
            crate::logging::emit(
                "kinto.core.views.errors",
                crate::logging::Level::Critical,
                &format!("backend failure: {reason:?}"),
                &serde_json::Map::new(),
            );
        }
        let mut response = worker::Response::new(self.status());
        response
            .headers
            .push(("Content-Type".into(), "application/json".into()));
        if let Some(seconds) = self.retry_after(settings) {
            response
                .headers
                .push(("Retry-After".into(), seconds.to_string()));
        }
        match &self {
            ApiError::MethodNotAllowed { allow: Some(allow) } => {
                response.headers.push(("Allow".into(), allow.clone()));
            }
            ApiError::PreconditionFailed {
                timestamp: Some(timestamp),
                ..
            } => {
                response
                    .headers
                    .extend(crate::api::http::timestamp_headers(*timestamp));
            }
            ApiError::Unauthorized { challenges } => {
                for challenge in challenges {
                    response
                        .headers
                        .push(("WWW-Authenticate".into(), challenge.clone()));
                }
            }
            _ => {}
        }
        response.body = serde_json::to_vec(&self.body(settings)).unwrap_or_default();
        response
    }
}

/// Sorts validation details by name, as the reference does, before building an error.
pub fn invalid_sorted(status: u16, mut details: Vec<Detail>) -> ApiError {
    details.sort_by(|a, b| {
        a.name
            .as_deref()
            .unwrap_or("")
            .cmp(b.name.as_deref().unwrap_or(""))
    });
    ApiError::Invalid { status, details }
}

pub type ApiResult<T> = Result<T, ApiError>;
