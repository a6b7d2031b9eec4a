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

on_both_backends!(collection_snapshots, |db| {
    let mut t = history_app(db);
    let rec = "/v1/buckets/b1/collections/c1/records";
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    t.call(
        "PUT",
        &format!("{rec}/r1"),
        A,
        Some(json!({"data": {"v": 1}})),
    )
    .expect(201);
    let early = t
        .call(
            "PUT",
            &format!("{rec}/r2"),
            A,
            Some(json!({"data": {"v": 2}})),
        )
        .expect(201)
        .etag();
    t.call(
        "PATCH",
        &format!("{rec}/r1"),
        A,
        Some(json!({"data": {"v": 3}})),
    )
    .expect(200);
    let late = t
        .call("DELETE", &format!("{rec}/r2"), A, None)
        .expect(200)
        .etag();
    let snap = |t: &mut TestApp, ts: i64| {
        t.call(
            "GET",
            &format!("/v1/buckets/b1/snapshot/collections/c1@{ts}"),
            A,
            None,
        )
        .expect(200)
        .json()["data"]
            .clone()
    };
    let at_early = snap(&mut t, early);
    assert_eq!(at_early.as_array().unwrap().len(), 2);
    assert_eq!(at_early[0]["id"], json!("r2"), "newest first");
    assert_eq!(at_early[1]["v"], json!(1));
    let at_late = snap(&mut t, late);
    assert_eq!(
        at_late,
        json!([t.call("GET", &format!("{rec}/r1"), A, None).json()["data"]])
    );
    let r = t
        .call("GET", "/v1/buckets/b1/snapshot/collections/c1@abc", A, None)
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("Invalid timestamp 'abc'"));
    t.call(
        "GET",
        &format!("/v1/buckets/b1/snapshot/collections/c1@{late}"),
        B,
        None,
    )
    .expect(403);
});
