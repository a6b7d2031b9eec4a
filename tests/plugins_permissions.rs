//! `GET /v1/permissions` (6.7): the caller's objects with implied permissions, settings grants,
//! filters and pagination; 404 unless enabled.

mod api_support;
use api_support::*;
use serde_json::{json, Value};

const A: Option<&str> = Some("alice");
const B: Option<&str> = Some("bob");

fn perms_app(db: Db) -> TestApp {
    TestApp::with(db, |s| {
        s.experimental_permissions_endpoint = true;
    })
}

fn by_uri(r: &Value) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut perms: Vec<String> = e["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            perms.sort();
            (e["uri"].as_str().unwrap().to_string(), perms)
        })
        .collect();
    out.sort();
    out
}

fn strs(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn disabled_by_default() {
    let mut t = TestApp::new();
    t.call("GET", "/v1/permissions", A, None).expect(404);
}

on_both_backends!(lists_objects_and_implied_permissions, |db| {
    let mut t = perms_app(db);
    let root = t.call("GET", "/v1/", None, None).expect(200).json();
    assert!(root["capabilities"]["permissions_endpoint"].is_object());
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/gc",
        A,
        Some(json!({"permissions": {"write": [t.user_id("bob")]}})),
    )
    .expect(201);
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/c1/records/p1",
        A,
        Some(json!({"permissions": {"read": [t.user_id("bob")]}})),
    )
    .expect(201);
    let r = t.call("GET", "/v1/permissions", B, None).expect(200).json();
    assert_eq!(
        by_uri(&r),
        vec![
            ("/".into(), strs(&["bucket:create"])),
            (
                "/buckets/b1/collections/c1/records/p1".into(),
                strs(&["read"])
            ),
            (
                "/buckets/b1/collections/gc".into(),
                strs(&["read", "read:attributes", "record:create", "write"])
            ),
        ]
    );
    let record = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource_name"] == json!("record"))
        .unwrap()
        .clone();
    assert_eq!(record["bucket_id"], json!("b1"));
    assert_eq!(record["collection_id"], json!("c1"));
    assert_eq!(record["record_id"], json!("p1"));
    assert_eq!(record["id"], json!("p1"));
    // Children of an accessible parent are not expanded: alice only gets her own objects.
    let r = t.call("GET", "/v1/permissions", A, None).expect(200).json();
    let uris: Vec<String> = by_uri(&r).into_iter().map(|(u, _)| u).collect();
    assert!(uris.contains(&"/buckets/b1".to_string()));
    // Default order: uri descending.
    let r = t.call("GET", "/v1/permissions", B, None).expect(200).json();
    assert_eq!(r["data"][0]["uri"], json!("/buckets/b1/collections/gc"));
    assert_eq!(r["data"][2]["uri"], json!("/"));
    // Filters, unknown fields, pagination.
    let r = t
        .call("GET", "/v1/permissions?resource_name=collection", B, None)
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    let r = t
        .call("GET", "/v1/permissions?foo=1", B, None)
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("Unknown filter field 'foo'"));
    let first = t
        .call("GET", "/v1/permissions?_limit=2&_sort=uri", B, None)
        .expect(200);
    let next = first.header("Next-Page").expect("Next-Page").to_string();
    assert_eq!(first.json()["data"].as_array().unwrap().len(), 2);
    let target = next.trim_start_matches("http://localhost:8888");
    let second = t.call("GET", target, B, None).expect(200).json();
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        second["data"][0]["uri"],
        json!("/buckets/b1/collections/gc")
    );
    // Anonymous callers see root-level grants they have (none by default) and public objects.
    t.call(
        "PATCH",
        "/v1/buckets/b1",
        A,
        Some(json!({"permissions": {"read": ["system.Everyone"]}})),
    )
    .expect(200);
    let r = t
        .call("GET", "/v1/permissions", None, None)
        .expect(200)
        .json();
    assert_eq!(
        by_uri(&r),
        vec![("/buckets/b1".into(), strs(&["read", "read:attributes"]))]
    );
});

on_both_backends!(settings_grants, |db| {
    let mut t = TestApp::with(db, |s| {
        s.experimental_permissions_endpoint = true;
        s.includes = vec!["kinto.plugins.accounts".into()];
        s.multiauth_policies = vec!["account".into(), "basicauth".into()];
        s.raw.insert(
            "multiauth.policy.account.use".into(),
            "kinto.plugins.accounts.AccountsPolicy".into(),
        );
        s.raw
            .insert("account_create_principals".into(), "system.Everyone".into());
        s.raw.insert(
            "collection_create_principals".into(),
            "system.Authenticated".into(),
        );
    });
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b2", A, None).expect(201);
    let r = t.call("GET", "/v1/permissions", B, None).expect(200).json();
    assert_eq!(
        by_uri(&r),
        vec![
            ("/".into(), strs(&["account:create", "bucket:create"])),
            (
                "/buckets/b1".into(),
                strs(&["collection:create", "read:attributes"])
            ),
            (
                "/buckets/b2".into(),
                strs(&["collection:create", "read:attributes"])
            ),
        ]
    );
    t.call(
        "PUT",
        "/v1/accounts/zed",
        None,
        Some(json!({"data": {"password": "p"}})),
    )
    .expect(201);
    let r = t
        .call("GET", "/v1/permissions?resource_name=account", None, None)
        .expect(200)
        .json();
    assert_eq!(r["data"], json!([]));
});
