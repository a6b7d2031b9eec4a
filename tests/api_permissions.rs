//! Permissions: ownership, inheritance, restricted views, groups, settings-based principals,
//! 401 versus 403 versus 404 (checklist group K).

mod api_support;
use api_support::*;
use serde_json::json;

const A: Option<&str> = Some("alice");
const B: Option<&str> = Some("bob");
const REC: &str = "/v1/buckets/b1/collections/c1/records";

fn setup(db: Db) -> TestApp {
    let mut t = TestApp::on(db);
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    t
}

on_both_backends!(ownership_and_sharing, |db| {
    let mut t = setup(db);
    let alice = t.user_id("alice");
    let bob = t.user_id("bob");
    let r = t
        .call("PUT", &format!("{REC}/r1"), A, Some(json!({"data": {}})))
        .expect(201)
        .json();
    assert_eq!(r["permissions"]["write"], json!([alice]));
    t.call(
        "PUT",
        &format!("{REC}/r2"),
        A,
        Some(json!({"permissions": {"read": [bob]}})),
    )
    .expect(201);
    // Bob sees only the shared record; Total-Objects counts it; no tombstones.
    let r = t.call("GET", REC, B, None).expect(200).json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    assert_eq!(r["data"][0]["id"], json!("r2"));
    let head = t.call("HEAD", REC, B, None).expect(200);
    assert_eq!(head.header("Total-Objects"), Some("1"));
    t.call("DELETE", &format!("{REC}/r1"), A, None).expect(200);
    let r = t
        .call("GET", &format!("{REC}?_since=0"), B, None)
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    t.call("GET", &format!("{REC}/r2"), B, None).expect(200);
    t.call("PUT", &format!("{REC}/r2"), B, Some(json!({})))
        .expect(403);
    // Bucket reader lists collections and reads records.
    t.call(
        "PATCH",
        "/v1/buckets/b1",
        A,
        Some(json!({"permissions": {"read": [bob]}})),
    )
    .expect(200);
    t.call("GET", "/v1/buckets/b1/collections", B, None)
        .expect(200);
    assert_eq!(
        t.call("GET", REC, B, None).expect(200).json()["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
});

#[test]
fn anonymous_writes_and_explicit_permissions() {
    let mut t = setup(Db::Sqlite);
    t.call(
        "PATCH",
        "/v1/buckets/b1/collections/c1",
        A,
        Some(json!({"permissions": {"record:create": ["system.Everyone"]}})),
    )
    .expect(200);
    let r = t
        .call("POST", REC, None, Some(json!({"data": {}})))
        .expect(201)
        .json();
    assert_eq!(r["permissions"]["write"], json!(["system.Everyone"]));
    let mut t = TestApp::with(Db::Sqlite, |s| s.explicit_permissions = false);
    let r = t.call("PUT", "/v1/buckets/b1", A, None).expect(201).json();
    assert_eq!(r["permissions"], json!({}));
}

#[test]
fn record_create_and_group_create() {
    let mut t = setup(Db::Sqlite);
    let bob = t.user_id("bob");
    t.call(
        "PATCH",
        "/v1/buckets/b1/collections/c1",
        A,
        Some(json!({"permissions": {"record:create": [bob]}})),
    )
    .expect(200);
    t.call("GET", "/v1/buckets/b1/collections/c1", B, None)
        .expect(200);
    t.call("POST", REC, B, Some(json!({"data": {}})))
        .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b2",
        A,
        Some(json!({"permissions": {"group:create": [bob]}})),
    )
    .expect(201);
    let r = t.call("GET", "/v1/buckets", B, None).expect(200).json();
    let ids: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b2"]);
    t.call("GET", "/v1/buckets/b2", B, None).expect(200);
    t.call("GET", "/v1/buckets/b2/collections", B, None)
        .expect(403);
}

#[test]
fn groups_grant_access() {
    let mut t = setup(Db::Sqlite);
    let bob = t.user_id("bob");
    t.call(
        "PUT",
        "/v1/buckets/b1/groups/readers",
        A,
        Some(json!({"data": {"members": [bob]}})),
    )
    .expect(201);
    let p = t.call("GET", "/v1/", B, None).json()["user"]["principals"].clone();
    assert!(p
        .as_array()
        .unwrap()
        .contains(&json!("/buckets/b1/groups/readers")));
    t.call("GET", REC, B, None).expect(403);
    t.call(
        "PATCH",
        "/v1/buckets/b1/collections/c1",
        A,
        Some(json!({"permissions": {"read": ["/buckets/b1/groups/readers"]}})),
    )
    .expect(200);
    t.call("GET", REC, B, None).expect(200);
    t.call(
        "PUT",
        "/v1/buckets/b1/groups/all",
        A,
        Some(json!({"data": {"members": ["system.Authenticated"]}})),
    )
    .expect(201);
    let p = t.call("GET", "/v1/", Some("carol"), None).json()["user"]["principals"].clone();
    assert!(p
        .as_array()
        .unwrap()
        .contains(&json!("/buckets/b1/groups/all")));
}

on_both_backends!(unauthorized_forbidden_not_found, |db| {
    let mut t = setup(db);
    let bob = t.user_id("bob");
    // Anonymous /buckets with nothing public → 401; with a public bucket → only it.
    t.call("GET", "/v1/buckets", None, None).expect(401);
    t.call(
        "PUT",
        "/v1/buckets/pub",
        A,
        Some(json!({"permissions": {"read": ["system.Everyone"]}})),
    )
    .expect(201);
    let r = t.call("GET", "/v1/buckets", None, None).expect(200).json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    // Strangers reading a missing bucket: 403.
    t.call("GET", "/v1/buckets/missing", B, None).expect(403);
    // Collection reader: 404 on missing record delete/patch/get, 403 on creation.
    t.call(
        "PATCH",
        "/v1/buckets/b1/collections/c1",
        A,
        Some(json!({"permissions": {"read": [bob]}})),
    )
    .expect(200);
    let r = t
        .call("DELETE", &format!("{REC}/nope"), B, None)
        .expect(404)
        .json();
    assert_eq!(
        r,
        json!({"code":404,"errno":110,"error":"Not Found","details":{"id":"nope","resource_name":"record"}})
    );
    t.call(
        "PATCH",
        &format!("{REC}/nope"),
        B,
        Some(json!({"data": {}})),
    )
    .expect(404);
    t.call("GET", &format!("{REC}/nope"), B, None).expect(404);
    t.call("PUT", &format!("{REC}/nope"), B, Some(json!({})))
        .expect(403);
    // Anyone writing in a missing collection learns it is missing.
    let r = t
        .call(
            "PUT",
            "/v1/buckets/b1/collections/zz/records/r",
            Some("carol"),
            Some(json!({})),
        )
        .expect(404)
        .json();
    assert_eq!(r["errno"], json!(111));
    t.call(
        "GET",
        "/v1/buckets/b1/collections/zz/records",
        Some("carol"),
        None,
    )
    .expect(403);
    // Anonymous bucket creation needs authentication.
    t.call("POST", "/v1/buckets", None, Some(json!({})))
        .expect(401);
    t.call("POST", "/v1/buckets", Some("carol"), Some(json!({})))
        .expect(201);
});

#[test]
fn settings_based_principals() {
    let bob_id = {
        let t = TestApp::new();
        t.user_id("bob")
    };
    let b = bob_id.clone();
    let mut t = TestApp::with(Db::Sqlite, move |s| {
        s.raw
            .insert("bucket_read_principals".into(), format!("someone {b}"));
        s.raw
            .insert("bucket_write_principals".into(), "basicauth:writer".into());
    });
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b2", A, None).expect(201);
    t.call("DELETE", "/v1/buckets/b2", A, None).expect(200);
    let r = t
        .call("GET", "/v1/buckets?_since=0", B, None)
        .expect(200)
        .json();
    assert_eq!(
        r["data"].as_array().unwrap().len(),
        2,
        "includes the tombstone: {r}"
    );
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    // bucket_* settings do not grant reading records.
    t.call("GET", REC, B, None).expect(403);
}

#[test]
fn plural_delete_restricted_to_writable() {
    let mut t = setup(Db::Sqlite);
    let bob = t.user_id("bob");
    t.call(
        "PUT",
        &format!("{REC}/mine"),
        A,
        Some(json!({"permissions": {"write": [bob]}})),
    )
    .expect(201);
    t.call("PUT", &format!("{REC}/other"), A, None).expect(201);
    let r = t.call("DELETE", REC, B, None).expect(200).json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    assert_eq!(r["data"][0]["id"], json!("mine"));
    t.call("GET", &format!("{REC}/other"), A, None).expect(200);
}

#[test]
fn put_if_none_match_needs_create() {
    let mut t = setup(Db::Sqlite);
    let bob = t.user_id("bob");
    t.call(
        "PUT",
        &format!("{REC}/r1"),
        A,
        Some(json!({"permissions": {"write": [bob]}})),
    )
    .expect(201);
    t.request(
        Req::new("PUT", &format!("{REC}/r1"))
            .user("bob")
            .header("If-None-Match", "*")
            .json(&json!({})),
    )
    .expect(403);
}

// Regression: rewriting an unchanged or overlapping `write` entry must keep the rows
// (PostgreSQL's replace statement deleted principals it re-inserted).
on_both_backends!(owner_keeps_access_after_updates, |db| {
    let mut t = setup(db);
    let bob = t.user_id("bob");
    t.call(
        "PATCH",
        "/v1/buckets/b1/collections/c1",
        A,
        Some(json!({"permissions": {"record:create": [bob]}})),
    )
    .expect(200);
    let url = format!("{REC}/mine");
    t.call("PUT", &url, B, Some(json!({"data": {"n": 1}})))
        .expect(201);
    t.call("PATCH", &url, B, Some(json!({"data": {"n": 2}})))
        .expect(200);
    t.call("GET", &url, B, None).expect(200);
    let r = t
        .call(
            "PUT",
            &url,
            B,
            Some(json!({"permissions": {"write": ["x", bob]}})),
        )
        .expect(200)
        .json();
    assert_eq!(r["permissions"]["write"].as_array().unwrap().len(), 2);
    assert_eq!(
        t.call("GET", &url, B, None).expect(200).json()["data"]["n"],
        json!(2)
    );
});
