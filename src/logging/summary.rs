//! The per-request records: what the API knows about a request, turned into the fields of
//! Kinto's `request.summary` and `subrequest.summary` lines (API.md 10.2). No header other than
//! `User-Agent` and `Accept-Language` is taken, so credentials cannot reach the logs.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use super::clock;
use super::installed::current_request_id;

/// What Kinto's `request.summary` line says about one request (API.md 10.2).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSummary<'a> {
    pub method: &'a str,
    /// URL path including `/v1`.
    pub path: &'a str,
    /// Raw query string without `?` (decoded into the `querystring` object).
    pub query: Option<&'a str>,
    pub code: u16,
    /// 0 on success, the error's errno otherwise.
    pub errno: u32,
    pub duration: Duration,
    /// `User-Agent`.
    pub agent: Option<&'a str>,
    /// `Accept-Language`.
    pub lang: Option<&'a str>,
    /// Request id (`X-Request-Id` or generated, see [`request_id`]); the thread's current one if `None`.
    pub rid: Option<&'a str>,
    /// User id without the policy prefix, authenticated requests only.
    pub uid: Option<&'a str>,
    /// Authentication policy name, authenticated requests only.
    pub authn_type: Option<&'a str>,
    /// Number of sub-requests, batch requests only.
    pub batch_size: Option<usize>,
}

/// The request id of a request: its `X-Request-Id` header when present and sane, else a UUID4.
pub fn request_id(header: Option<&str>) -> String {
    match header.map(str::trim) {
        Some(h) if !h.is_empty() && h.len() <= 128 && h.bytes().all(|b| b.is_ascii_graphic()) => {
            h.to_owned()
        }
        // From the thread's generator: `Uuid::new_v4` makes a getrandom system call per request.
        _ => uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string(),
    }
}

pub(super) fn summary_fields(s: &RequestSummary<'_>) -> Map<String, Value> {
    let mut fields = Map::with_capacity(14);
    if let Some(agent) = s.agent {
        fields.insert("agent".into(), agent.into());
    }
    fields.insert("path".into(), s.path.into());
    fields.insert("method".into(), s.method.into());
    if let Some(lang) = s.lang {
        fields.insert("lang".into(), lang.into());
    }
    if let Some(rid) = s.rid.map(str::to_owned).or_else(current_request_id) {
        fields.insert("rid".into(), rid.into());
    }
    fields.insert("errno".into(), s.errno.into());
    let query = querystring(s.query.unwrap_or(""));
    if !query.is_empty() {
        fields.insert("querystring".into(), Value::Object(query));
    }
    if let Some(uid) = s.uid {
        fields.insert("uid".into(), uid.into());
    }
    if let Some(authn_type) = s.authn_type {
        fields.insert("authn_type".into(), authn_type.into());
    }
    fields.insert("time".into(), clock::isoformat(SystemTime::now()).into());
    fields.insert("code".into(), s.code.into());
    fields.insert("t".into(), (s.duration.as_millis() as u64).into());
    if let Some(size) = s.batch_size {
        fields.insert("batch_size".into(), size.into());
    }
    fields
}

/// The query string as Kinto logs it: decoded parameters, the last of repeated names winning.
pub(super) fn querystring(query: &str) -> Map<String, Value> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut map = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(decode(k), Value::String(decode(v)));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn querystrings_and_ids() {
        let q = querystring("_limit=1&x=a%20b+c&x=2&flag");
        assert_eq!(
            Value::Object(q),
            serde_json::json!({"_limit": "1", "x": "2", "flag": ""})
        );
        assert_eq!(request_id(Some("my-req-id-1")), "my-req-id-1");
        assert_eq!(request_id(Some("bad id\n")).len(), 36);
        assert_eq!(request_id(None).len(), 36);
    }
}
