//! Backend failures (sections 4.7, 1.4): a PostgreSQL server that refuses connections.

mod api_support;
use api_support::*;
use kinto::api::App;
use kinto::settings::{BackendKind, BackendSettings};
use serde_json::json;
use std::sync::Arc;
use worker::{Handler, Request, Scheme, Version};

fn unreachable_app() -> App {
    // Port 1 on loopback refuses connections immediately.
    let backend = BackendSettings {
        kind: BackendKind::PostgreSql,
        url: "postgresql://postgres@127.0.0.1:1/kinto".into(),
        pool_size: 1,
        pool_timeout: 1,
    };
    let settings = default_settings(backend);
    let storage = kinto::storage::connect(&settings).expect("lazy connection");
    let cache = kinto::cache::connect(&settings).expect("lazy connection");
    App::new(Arc::new(settings), storage, cache)
}

fn get(app: &mut App, path: &str, auth: bool) -> worker::Response {
    let mut headers = vec![("Host".to_string(), "localhost".to_string())];
    if auth {
        headers.push(("Authorization".into(), "Basic dTpwdw==".into()));
    }
    app.handle(&Request {
        method: "GET".into(),
        target: path.into(),
        version: Version::Http11,
        headers,
        body: Vec::new(),
        remote_addr: "127.0.0.1".into(),
        scheme: Scheme::Http,
    })
}

fn header<'a>(r: &'a worker::Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn storage_down_answers_503_with_retry_after() {
    let mut app = unreachable_app();
    let r = get(&mut app, "/v1/buckets/b1", true);
    assert_eq!(r.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["errno"], json!(201));
    assert_eq!(header(&r, "Retry-After"), Some("3"));
}

#[test]
fn heartbeat_reports_failures_without_retry_after() {
    let mut app = unreachable_app();
    let r = get(&mut app, "/v1/__heartbeat__", false);
    assert_eq!(r.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"storage": false, "permission": false, "cache": false})
    );
    assert!(header(&r, "Retry-After").is_none());
    // Neither the load-balancer heartbeat nor the anonymous root touch the backends.
    assert_eq!(get(&mut app, "/v1/__lbheartbeat__", false).status, 200);
    assert_eq!(get(&mut app, "/v1/", false).status, 200);
}
