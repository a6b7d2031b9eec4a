//! `GET /v1/permissions` (section 6.7).

mod api_support;
use api_support::*;
use serde_json::{json, Value};

const A: Option<&str> = Some("alice");

fn app(db: Db) -> TestApp {
    TestApp::with(db, |s| s.experimental_permissions_endpoint = true)
}

fn entry<'a>(data: &'a Value, uri: &str) -> &'a Value {
    data.as_array()
        .unwrap()
        .iter()
        .find(|e| e["uri"] == json!(uri))
        .unwrap_or_else(|| panic!("no entry for {uri} in {data}"))
}

on_both_backends!(lists_objects_with_implied_permissions, |db| {
    let mut t = app(db);
    let bob = t.user_id("bob");
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/gc",
        A,
        Some(json!({"permissions": {"record:create": [bob.clone()], "read": [bob.clone()]}})),
    )
    .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/gc/records/p1",
        A,
        Some(json!({"permissions": {"read": [bob]}})),
    )
    .expect(201);
    let r = t
        .call("GET", "/v1/permissions", Some("bob"), None)
        .expect(200)
        .json();
    let data = &r["data"];
    let coll = entry(data, "/buckets/b1/collections/gc");
    assert_eq!(coll["resource_name"], json!("collection"));
    assert_eq!(coll["bucket_id"], json!("b1"));
    assert_eq!(coll["collection_id"], json!("gc"));
    assert_eq!(coll["id"], json!("gc"));
    let mut perms: Vec<String> = serde_json::from_value(coll["permissions"].clone()).unwrap();
    perms.sort();
    assert_eq!(perms, ["read", "read:attributes", "record:create"]);
    let rec = entry(data, "/buckets/b1/collections/gc/records/p1");
    assert_eq!(rec["record_id"], json!("p1"));
    let root = entry(data, "/");
    assert_eq!(root["permissions"], json!(["bucket:create"]));
    // Default order: uri descending.
    let uris: Vec<&str> = data
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uri"].as_str().unwrap())
        .collect();
    let mut sorted = uris.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(uris, sorted);
    // Filters on known fields; unknown ones refused.
    let r = t
        .call(
            "GET",
            "/v1/permissions?resource_name=record",
            Some("bob"),
            None,
        )
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    let r = t
        .call("GET", "/v1/permissions?foo=bar", Some("bob"), None)
        .expect(400)
        .json();
    assert!(r["message"]
        .as_str()
        .unwrap()
        .ends_with("Unknown filter field 'foo'"));
    // Pagination.
    let r = t
        .call("GET", "/v1/permissions?_limit=1", Some("bob"), None)
        .expect(200);
    let next = r
        .header("Next-Page")
        .unwrap()
        .trim_start_matches("http://localhost:8888")
        .to_string();
    let second = t.call("GET", &next, Some("bob"), None).expect(200).json();
    assert_ne!(second["data"][0]["uri"], r.json()["data"][0]["uri"]);
    // Writers of a bucket get only the bucket entry.
    let r = t.call("GET", "/v1/permissions", A, None).expect(200).json();
    let b = entry(&r["data"], "/buckets/b1");
    assert!(b["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("collection:create")));
});

#[test]
fn disabled_by_default_and_settings_grants() {
    let mut t = TestApp::new();
    t.call("GET", "/v1/permissions", A, None).expect(404);
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.experimental_permissions_endpoint = true;
        s.raw.insert(
            "bucket_read_principals".into(),
            "system.Authenticated".into(),
        );
    });
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    let r = t
        .call("GET", "/v1/permissions", Some("bob"), None)
        .expect(200)
        .json();
    assert_eq!(
        entry(&r["data"], "/buckets/b1")["permissions"],
        json!(["read", "read:attributes"])
    );
}
