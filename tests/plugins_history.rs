//! History plugin (7.6, checklist L 271-274): entries written with each change, in the same
//! transaction, listed with filters, visibility, purge with the bucket, snapshots.

mod api_support;
use api_support::*;
use serde_json::{json, Value};

const A: Option<&str> = Some("alice");
const B: Option<&str> = Some("bob");

fn history_app(db: Db) -> TestApp {
    TestApp::with(db, |s| {
        s.includes = vec![
            "kinto.plugins.history".into(),
            "kinto.plugins.default_bucket".into(),
        ];
    })
}

fn entries(t: &mut TestApp, query: &str, user: Option<&str>) -> Vec<Value> {
    let r = t
        .call("GET", &format!("/v1/buckets/b/history{query}"), user, None)
        .expect(200)
        .json();
    r["data"].as_array().unwrap().clone()
}

on_both_backends!(records_each_change, |db| {
    let mut t = history_app(db);
    let root = t.call("GET", "/v1/", None, None).expect(200).json();
    assert!(root["capabilities"]["history"].is_object());
    t.call("PUT", "/v1/buckets/b", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b/collections/c", A, None)
        .expect(201);
    let rec = t
        .call(
            "PUT",
            "/v1/buckets/b/collections/c/records/r1",
            A,
            Some(json!({"data": {"a": 1}})),
        )
        .expect(201)
        .json();
    t.call(
        "PATCH",
        "/v1/buckets/b/collections/c/records/r1",
        A,
        Some(json!({"data": {"a": 2}})),
    )
    .expect(200);
    t.call("DELETE", "/v1/buckets/b/collections/c/records/r1", A, None)
        .expect(200);
    let all = entries(&mut t, "", A);
    let actions: Vec<(&str, &str)> = all
        .iter()
        .map(|e| {
            (
                e["resource_name"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        actions,
        vec![
            ("record", "delete"),
            ("record", "update"),
            ("record", "create"),
            ("collection", "create"),
            ("bucket", "create"),
        ]
    );
    let create = &all[2];
    assert_eq!(create["uri"], json!("/buckets/b/collections/c/records/r1"));
    assert_eq!(create["user_id"], json!(t.user_id("alice")));
    assert_eq!(create["collection_id"], json!("c"));
    assert_eq!(create["record_id"], json!("r1"));
    assert!(create.get("bucket_id").is_none());
    assert_eq!(create["target"]["data"], rec["data"]);
    assert_eq!(
        create["target"]["permissions"]["write"],
        json!([t.user_id("alice")])
    );
    assert!(create["date"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(all[1]["target"]["data"]["a"], json!(2));
    assert_eq!(all[0]["target"]["data"]["deleted"], json!(true));
    assert_eq!(all[4]["bucket_id"], json!("b"));
    // Filters.
    let only = entries(&mut t, "?resource_name=collection", A);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["collection_id"], json!("c"));
    let r = t
        .call("GET", "/v1/buckets/b/history?foo=1", A, None)
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("Unknown filter field 'foo'"));
    assert_eq!(entries(&mut t, "?target.data.a=2", A).len(), 1);
    // A 4xx rolls back nothing recorded before; a failed write records nothing.
    t.call(
        "PUT",
        "/v1/buckets/b/collections/c/records/r2",
        A,
        Some(json!({"data": "x"})),
    )
    .expect(400);
    assert_eq!(entries(&mut t, "", A).len(), 5);
});

on_both_backends!(visibility_and_purge, |db| {
    let mut t = history_app(db);
    t.call("PUT", "/v1/buckets/b", A, None).expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b/collections/c",
        A,
        Some(json!({"permissions": {"read": [t.user_id("bob")]}})),
    )
    .expect(201);
    t.call("PUT", "/v1/buckets/b/collections/c/records/r", A, None)
        .expect(201);
    // Bob reads the collection: he sees the entries written since, not the bucket's.
    let seen = entries(&mut t, "", B);
    let uris: Vec<&str> = seen.iter().map(|e| e["uri"].as_str().unwrap()).collect();
    assert_eq!(
        uris,
        vec![
            "/buckets/b/collections/c/records/r",
            "/buckets/b/collections/c"
        ]
    );
    // A stranger sees nothing; anonymous gets 401.
    t.call("GET", "/v1/buckets/b/history", Some("carol"), None)
        .expect(403);
    t.call("GET", "/v1/buckets/b/history", None, None)
        .expect(401);
    // Only writers delete history.
    t.call("DELETE", "/v1/buckets/b/history", B, None)
        .expect(403);
    let deleted = t
        .call(
            "DELETE",
            "/v1/buckets/b/history?resource_name=record",
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(deleted["data"].as_array().unwrap().len(), 1);
    assert_eq!(entries(&mut t, "", A).len(), 2);
    // Deleting the bucket purges its history; a new bucket of that name starts afresh.
    t.call("DELETE", "/v1/buckets/b", A, None).expect(200);
    t.call("PUT", "/v1/buckets/b", A, None).expect(201);
    let fresh = entries(&mut t, "", A);
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0]["action"], json!("create"));
});

on_both_backends!(snapshot, |db| {
    let mut t = history_app(db);
    t.call("PUT", "/v1/buckets/b", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b/collections/c", A, None)
        .expect(201);
    let path = "/v1/buckets/b/collections/c/records";
    t.call(
        "PUT",
        &format!("{path}/r1"),
        A,
        Some(json!({"data": {"v": 1}})),
    )
    .expect(201);
    let at = t
        .call(
            "PUT",
            &format!("{path}/r2"),
            A,
            Some(json!({"data": {"v": 1}})),
        )
        .expect(201)
        .etag();
    t.call(
        "PATCH",
        &format!("{path}/r1"),
        A,
        Some(json!({"data": {"v": 2}})),
    )
    .expect(200);
    t.call("DELETE", &format!("{path}/r2"), A, None).expect(200);
    t.call(
        "PUT",
        &format!("{path}/r3"),
        A,
        Some(json!({"data": {"v": 1}})),
    )
    .expect(201);
    let snap = t
        .call(
            "GET",
            &format!("/v1/buckets/b/snapshot/collections/c@{at}"),
            A,
            None,
        )
        .expect(200)
        .json();
    let state: Vec<(String, i64)> = snap["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["v"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(state, vec![("r2".into(), 1), ("r1".into(), 1)]);
    let r = t
        .call("GET", "/v1/buckets/b/snapshot/collections/c@abc", A, None)
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("Invalid timestamp 'abc'"));
    t.call(
        "GET",
        &format!("/v1/buckets/b/snapshot/collections/c@{at}"),
        B,
        None,
    )
    .expect(403);
});

on_both_backends!(personal_bucket_and_batch_are_recorded, |db| {
    let mut t = history_app(db);
    t.call(
        "PUT",
        "/v1/buckets/default/collections/tasks/records/t1",
        A,
        None,
    )
    .expect(201);
    let bid = kinto::api::default_bucket::bucket_id("", &t.user_id("alice"));
    let r = t
        .call("GET", &format!("/v1/buckets/{bid}/history"), A, None)
        .expect(200)
        .json();
    let kinds: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource_name"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["record", "collection", "bucket"]);
    // A batch: every sub-request's entry, in the batch's transaction.
    t.call("PUT", "/v1/buckets/b", A, None).expect(201);
    let requests: Vec<Value> = (0..3)
        .map(|i| json!({"path": format!("/buckets/b/groups/g{i}"), "body": {"data": {"members": []}}}))
        .collect();
    t.call(
        "POST",
        "/v1/batch",
        A,
        Some(json!({"defaults": {"method": "PUT"}, "requests": requests})),
    )
    .expect(200);
    let groups = entries(&mut t, "?resource_name=group", A);
    assert_eq!(groups.len(), 3);
    assert_eq!(groups[0]["group_id"], json!("g2"));
});
