//! Plugins: personal bucket (7.1) and flush (7.2).

mod api_support;
use api_support::*;
use serde_json::json;

const A: Option<&str> = Some("alice");

fn with_plugins(db: Db) -> TestApp {
    TestApp::with(db, |s| {
        s.includes = vec![
            "kinto.plugins.default_bucket".into(),
            "kinto.plugins.flush".into(),
        ];
        s.default_bucket_hmac_secret = "bucket-secret".into();
    })
}

#[test]
fn personal_bucket_id_matches_reference_example() {
    assert_eq!(
        kinto::api::default_bucket::bucket_id("bucket-secret", "account:alice"),
        "cce98280-37e1-be7b-320d-bb60ccb8a85e"
    );
}

on_both_backends!(personal_bucket, |db| {
    let mut t = with_plugins(db);
    let expected = kinto::api::default_bucket::bucket_id("bucket-secret", &t.user_id("alice"));
    let root = t.call("GET", "/v1/", A, None).expect(200).json();
    assert_eq!(root["user"]["bucket"], json!(expected));
    assert!(root["capabilities"]["default_bucket"].is_object());
    assert!(root["capabilities"]["flush_endpoint"].is_object());
    let r = t
        .call("GET", "/v1/buckets/default", A, None)
        .expect(200)
        .json();
    assert_eq!(r["data"]["id"], json!(expected));
    assert_eq!(r["permissions"]["write"], json!([t.user_id("alice")]));
    let r = t
        .call(
            "GET",
            "/v1/buckets/default/collections/tasks/records",
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(r, json!({"data": []}));
    t.call(
        "GET",
        &format!("/v1/buckets/{expected}/collections/tasks"),
        A,
        None,
    )
    .expect(200);
    let r = t
        .call(
            "POST",
            "/v1/buckets/default/collections/tasks/records",
            A,
            Some(json!({"data": {"a": 1}})),
        )
        .expect(201)
        .json();
    let rid = r["data"]["id"].as_str().unwrap().to_string();
    t.call(
        "GET",
        &format!("/v1/buckets/{expected}/collections/tasks/records/{rid}"),
        A,
        None,
    )
    .expect(200);
    let r = t
        .call(
            "GET",
            "/v1/buckets/default/collections/bad.id/records",
            A,
            None,
        )
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("path: Invalid collection id"));
    let r = t.call("GET", "/v1/buckets/default", None, None).expect(401);
    assert!(r.header("WWW-Authenticate").is_some());
    // Another user gets another bucket.
    let other = t
        .call("GET", "/v1/buckets/default", Some("bob"), None)
        .expect(200)
        .json();
    assert_ne!(other["data"]["id"], json!(expected));
});

#[test]
fn personal_bucket_readonly_and_empty_secret() {
    let t = with_plugins(Db::Sqlite);
    let mut ro = t.reopen(|s| s.readonly = true);
    ro.call("GET", "/v1/buckets/default", A, None).expect(405);
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.includes = vec!["kinto.plugins.default_bucket".into()]
    });
    let expected = kinto::api::default_bucket::bucket_id("", &t.user_id("alice"));
    let r = t
        .call("GET", "/v1/buckets/default", A, None)
        .expect(200)
        .json();
    assert_eq!(r["data"]["id"], json!(expected));
}

#[test]
fn flush_endpoint() {
    let mut t = with_plugins(Db::Sqlite);
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("GET", "/v1/__flush__", None, None).expect(405);
    assert_eq!(
        t.call("POST", "/v1/__flush__", None, None)
            .expect(202)
            .json(),
        json!({})
    );
    t.call("GET", "/v1/buckets/b1", A, None).expect(403);
    // Without the plugin the endpoint does not exist.
    let mut t = TestApp::new();
    t.call("POST", "/v1/__flush__", None, None).expect(404);
}

on_both_backends!(user_data_deletion, |db| {
    let mut t = TestApp::with(db, |s| {
        s.raw.insert(
            "user-data_delete_principals".into(),
            "basicauth:admin-ish".into(),
        );
    });
    let alice = t.user_id("alice");
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call(
        "PUT",
        "/v1/buckets/shared",
        A,
        Some(json!({"permissions": {"write": ["someone"]}})),
    )
    .expect(201);
    t.call("DELETE", &format!("/v1/__user_data__/{alice}"), None, None)
        .expect(401);
    t.call(
        "DELETE",
        &format!("/v1/__user_data__/{alice}"),
        Some("bob"),
        None,
    )
    .expect(403);
    t.call(
        "GET",
        &format!("/v1/__user_data__/{alice}"),
        Some("bob"),
        None,
    )
    .expect(405);
    let mut admin = t.reopen(|s| {
        s.raw
            .insert("user-data_delete_principals".into(), alice.clone());
    });
    let r = admin
        .call("DELETE", &format!("/v1/__user_data__/{alice}"), A, None)
        .expect(200)
        .json();
    assert_eq!(r, json!({"data": {"principal": alice}}));
    // b1 (alice the only writer) is gone; `shared` stays, without alice.
    let mut other = t.reopen(|s| {
        s.raw.insert(
            "bucket_read_principals".into(),
            "system.Authenticated".into(),
        );
    });
    let r = other
        .call("GET", "/v1/buckets", Some("bob"), None)
        .expect(200)
        .json();
    let ids: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["shared"]);
    other.call("GET", "/v1/buckets/shared", A, None).expect(200);
    other
        .call("PATCH", "/v1/buckets/shared", A, Some(json!({"data": {}})))
        .expect(403);
});

#[test]
fn personal_bucket_creation_is_recorded_in_history() {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.includes = vec![
            "kinto.plugins.default_bucket".into(),
            "kinto.plugins.history".into(),
        ];
    });
    t.call(
        "GET",
        "/v1/buckets/default/collections/tasks/records",
        A,
        None,
    )
    .expect(200);
    let r = t
        .call("GET", "/v1/buckets/default/history", A, None)
        .expect(200)
        .json();
    let mut kinds: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource_name"].as_str().unwrap())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["bucket", "collection"]);
}
