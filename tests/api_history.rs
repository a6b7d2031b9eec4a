//! The history plugin (section 7.6).

mod api_support;
use api_support::*;
use serde_json::json;

const A: Option<&str> = Some("alice");
const B: Option<&str> = Some("bob");

fn history_app(db: Db) -> TestApp {
    TestApp::with(db, |s| s.includes = vec!["kinto.plugins.history".into()])
}

on_both_backends!(entries_for_every_write, |db| {
    let mut t = history_app(db);
    let root = t.call("GET", "/v1/", None, None).json();
    assert!(root["capabilities"]["history"].is_object());
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/c1/records/r1",
        A,
        Some(json!({"data": {"a": 1}})),
    )
    .expect(201);
    t.call(
        "PATCH",
        "/v1/buckets/b1/collections/c1/records/r1",
        A,
        Some(json!({"data": {"a": 2}})),
    )
    .expect(200);
    t.call(
        "DELETE",
        "/v1/buckets/b1/collections/c1/records/r1",
        A,
        None,
    )
    .expect(200);
    let r = t
        .call("GET", "/v1/buckets/b1/history", A, None)
        .expect(200)
        .json();
    let entries = r["data"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "update", "create", "create", "create"]);
    let update = &entries[1];
    assert_eq!(
        update["uri"],
        json!("/buckets/b1/collections/c1/records/r1")
    );
    assert_eq!(update["user_id"], json!(t.user_id("alice")));
    assert_eq!(update["resource_name"], json!("record"));
    assert_eq!(update["record_id"], json!("r1"));
    assert_eq!(update["collection_id"], json!("c1"));
    assert_eq!(update["target"]["data"]["a"], json!(2));
    assert_eq!(
        update["target"]["permissions"]["write"],
        json!([t.user_id("alice")])
    );
    assert!(update["date"].as_str().unwrap().ends_with("+00:00"));
    let r = t
        .call(
            "GET",
            "/v1/buckets/b1/history?resource_name=collection",
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    let r = t
        .call("GET", "/v1/buckets/b1/history?foo=1", A, None)
        .expect(400)
        .json();
    assert!(r["message"]
        .as_str()
        .unwrap()
        .ends_with("Unknown filter field 'foo'"));
    t.call("POST", "/v1/buckets/b1/history", A, Some(json!({})))
        .expect(405);
    // Strangers see nothing; a reader of one record sees its entries.
    t.call("GET", "/v1/buckets/b1/history", B, None).expect(403);
    let bob = t.user_id("bob");
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/c1/records/r2",
        A,
        Some(json!({"permissions": {"read": [bob]}})),
    )
    .expect(201);
    let r = t
        .call("GET", "/v1/buckets/b1/history", B, None)
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    // Deleting the bucket purges its history.
    t.call("DELETE", "/v1/buckets/b1", A, None).expect(200);
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    let r = t
        .call("GET", "/v1/buckets/b1/history", A, None)
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
});

#[test]
fn history_disabled_has_no_route() {
    let mut t = TestApp::new();
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("GET", "/v1/buckets/b1/history", A, None).expect(404);
}
