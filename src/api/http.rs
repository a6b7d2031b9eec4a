//! Small HTTP building blocks shared by the endpoints: JSON responses, `ETag`/`Last-Modified`,
//! querystring decoding and form-encoding, content negotiation.

use crate::error::{ApiError, ApiResult, Location};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use worker::Response;

/// A JSON response (`Content-Type: application/json`, no charset, as Kinto sends).
pub fn json(status: u16, body: &Value) -> Response {
    json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A JSON response of a body already serialized.
pub fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    let mut response = Response::new(status);
    response
        .headers
        .push(("Content-Type".into(), "application/json".into()));
    response.body = body;
    response
}

/// `ETag: "<ts>"` and `Last-Modified` (HTTP date, seconds precision) of a ms timestamp.
pub fn timestamp_headers(timestamp: i64) -> [(String, String); 2] {
    [
        ("ETag".into(), format!("\"{timestamp}\"")),
        ("Last-Modified".into(), http_date_ms(timestamp)),
    ]
}

pub fn http_date_ms(timestamp_ms: i64) -> String {
    let secs = (timestamp_ms.max(0) / 1000) as u64;
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `Cache-Control`/`Expires` (and `Pragma` for 0) for a cache duration in seconds, as Kinto's
/// `Response.cache_expires`; negative values give no headers.
pub fn cache_headers(seconds: i64) -> Vec<(String, String)> {
    let now = SystemTime::now();
    match seconds {
        s if s < 0 => Vec::new(),
        0 => vec![
            (
                "Cache-Control".into(),
                "max-age=0, must-revalidate, no-cache, no-store".into(),
            ),
            ("Expires".into(), httpdate::fmt_http_date(now)),
            ("Last-Modified".into(), httpdate::fmt_http_date(now)),
            ("Pragma".into(), "no-cache".into()),
        ],
        s => vec![
            ("Cache-Control".into(), format!("max-age={s}")),
            (
                "Expires".into(),
                httpdate::fmt_http_date(now + Duration::from_secs(s as u64)),
            ),
        ],
    }
}

/// Decodes a querystring into ordered `(name, value)` pairs (`+` is a space). Invalid UTF-8
/// gets Kinto's exact (misspelt) message.
pub fn parse_query(raw: Option<&str>) -> ApiResult<Vec<(String, String)>> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut pairs = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        match (decode_component(name), decode_component(value)) {
            (Some(n), Some(v)) => pairs.push((n, v)),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "A request with an incorrect encoding in the querystring was\
                     received. Please make sure your requests are encoded in UTF-8: {raw}"
                )))
            }
        }
    }
    Ok(pairs)
}

fn decode_component(raw: &str) -> Option<String> {
    let replaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&replaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Percent-decodes one path segment; `None` when it is not UTF-8.
pub fn decode_segment(raw: &str) -> Option<String> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Python's `urllib.parse.quote_plus`, used to rebuild `Next-Page` querystrings.
pub fn quote_plus(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// True when the `Accept` header allows `application/json` (absent header allows everything).
pub fn accepts_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return true;
    };
    if accept.trim().is_empty() {
        return true;
    }
    accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f64>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && matches!(media.as_str(), "application/json" | "application/*" | "*/*")
    })
}

/// The 406 answered when `Accept` excludes JSON.
pub fn not_acceptable() -> ApiError {
    let description = "Accept header should be one of ['application/json']";
    ApiError::Invalid {
        status: 406,
        details: vec![crate::error::Detail::new(
            Location::Header,
            Some("Accept"),
            description,
        )],
    }
}

/// The media type of `Content-Type`, lower-cased and without parameters.
pub fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type.map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}
