//! Resource endpoints: ids and bodies, timestamps, tombstones and cascades, methods and
//! status codes, PATCH/PUT details, conditional requests (checklist groups B-G).

mod api_support;
use api_support::*;
use serde_json::{json, Value};

const A: Option<&str> = Some("alice");
const REC: &str = "/v1/buckets/b1/collections/c1/records";

/// A bucket `b1` with a collection `c1`, owned by alice.
fn setup(db: Db) -> TestApp {
    let mut t = TestApp::on(db);
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    t
}

fn is_uuid4(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 4) && id == id.to_lowercase()
}

on_both_backends!(generated_ids, |db| {
    let mut t = setup(db);
    let r = t.call("POST", "/v1/buckets", A, None).expect(201).json();
    let id = r["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 8);
    assert!(id.chars().next().unwrap().is_ascii_alphanumeric());
    assert!(id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    let r = t
        .call("POST", REC, A, Some(json!({"data": {"a": 1}})))
        .expect(201)
        .json();
    assert!(is_uuid4(r["data"]["id"].as_str().unwrap()));
    assert_eq!(r["data"]["a"], json!(1));
    assert_eq!(r["permissions"]["write"], json!([t.user_id("alice")]));
    t.call(
        "PUT",
        &format!("{REC}/my_id-1"),
        A,
        Some(json!({"data": {}})),
    )
    .expect(201);
});

#[test]
fn invalid_ids_and_bodies() {
    let mut t = setup(Db::Sqlite);
    let r = t
        .call("PUT", "/v1/buckets/bad.id", A, None)
        .expect(400)
        .json();
    assert_eq!(r["errno"], json!(107));
    assert_eq!(
        r["details"],
        json!([{"location":"path","name":null,"description":"Invalid object id"}])
    );
    assert_eq!(r["message"], json!("path: Invalid object id"));
    let r = t
        .call("POST", REC, A, Some(json!({"data": {"id": "bad id"}})))
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["description"], json!("Invalid object id"));
    let r = t
        .call(
            "PUT",
            &format!("{REC}/r1"),
            A,
            Some(json!({"data": {"id": "r2"}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("id"));
    assert_eq!(
        r["message"],
        json!("Object id does not match existing object")
    );
    let r = t
        .call(
            "PUT",
            &format!("{REC}/r1"),
            A,
            Some(json!({"data": {}, "foo": 1})),
        )
        .expect(400)
        .json();
    assert!(r["message"]
        .as_str()
        .unwrap()
        .starts_with("Unrecognized keys in mapping"));
    let r = t
        .call("PUT", &format!("{REC}/r1"), A, Some(json!({"data": "str"})))
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("data"));
    t.call("PUT", &format!("{REC}/r1"), A, Some(json!({"data": null})))
        .expect(400);
    t.call(
        "PUT",
        &format!("{REC}/r1"),
        A,
        Some(json!({"permissions": null})),
    )
    .expect(400);
    let r = t
        .call(
            "PUT",
            &format!("{REC}/r1"),
            A,
            Some(json!({"permissions": {"fly": ["a"]}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("permissions"));
    let r = t
        .call(
            "PUT",
            &format!("{REC}/r1"),
            A,
            Some(json!({"permissions": {"read": "a"}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("permissions.read"));
    t.call(
        "PUT",
        "/v1/buckets/b2",
        A,
        Some(json!({"permissions": {"collection:create": ["x"]}})),
    )
    .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/c2",
        A,
        Some(json!({"permissions": {"collection:create": ["x"]}})),
    )
    .expect(400);
    // Invalid JSON: errno 107, location body.
    let r = t
        .request(
            Req::new("PUT", &format!("{REC}/r1"))
                .user("alice")
                .raw("{bad"),
        )
        .expect(400)
        .json();
    assert_eq!(r["errno"], json!(107));
    assert_eq!(r["details"][0]["location"], json!("body"));
}

#[test]
fn resource_specific_fields() {
    let mut t = setup(Db::Sqlite);
    let r = t.call("POST", REC, A, None).expect(201).json();
    let keys: Vec<&String> = r["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "only id and last_modified: {keys:?}");
    let r = t
        .call(
            "POST",
            REC,
            A,
            Some(json!({"data": {"last_modified": "abc"}})),
        )
        .expect(201)
        .json();
    assert!(r["data"]["last_modified"].is_i64());
    let r = t
        .call(
            "PUT",
            "/v1/buckets/b1/groups/g",
            A,
            Some(json!({"data": {}})),
        )
        .expect(201)
        .json();
    assert_eq!(r["data"]["members"], json!([]));
    let r = t
        .call(
            "PUT",
            "/v1/buckets/b1/groups/g",
            A,
            Some(json!({"data": {"members": ["system.Everyone"]}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("data.members.0"));
    t.call(
        "PUT",
        "/v1/buckets/b1/groups/g",
        A,
        Some(json!({"data": {"members": ["/buckets/b/groups/x"]}})),
    )
    .expect(400);
    let r = t
        .call(
            "PUT",
            "/v1/buckets/b1/collections/c3",
            A,
            Some(json!({"data": {"cache_expires": "abc"}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("cache_expires"));
    let r = t
        .call(
            "PUT",
            "/v1/buckets/b1/collections/c3",
            A,
            Some(json!({"data": {"schema": {"type": "wrong"}}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("data.schema"));
}

on_both_backends!(timestamps_and_etags, |db| {
    let mut t = setup(db);
    let r = t
        .call(
            "PUT",
            &format!("{REC}/r1"),
            A,
            Some(json!({"data": {"n": 1}})),
        )
        .expect(201);
    let lm = r.json()["data"]["last_modified"].as_i64().unwrap();
    assert_eq!(r.etag(), lm);
    assert_eq!(
        r.header("Last-Modified").unwrap(),
        kinto::api::http::http_date_ms(lm)
    );
    let r2 = t
        .call(
            "PUT",
            &format!("{REC}/r2"),
            A,
            Some(json!({"data": {"n": 2}})),
        )
        .expect(201);
    assert!(r2.etag() > lm);
    let list = t.call("GET", REC, A, None).expect(200);
    assert_eq!(list.etag(), r2.etag());
    assert_eq!(
        t.call("GET", &format!("{REC}?n=1"), A, None).etag(),
        list.etag()
    );
    // A never-written list keeps a stable timestamp.
    let e1 = t
        .call("GET", "/v1/buckets/b1/groups", A, None)
        .expect(200)
        .etag();
    let e2 = t
        .call("GET", "/v1/buckets/b1/groups", A, None)
        .expect(200)
        .etag();
    assert_eq!(e1, e2);
    // Collection object untouched by record writes.
    let coll = t
        .call("GET", "/v1/buckets/b1/collections/c1", A, None)
        .expect(200)
        .json();
    let created = t
        .call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .json();
    assert!(coll["data"]["last_modified"].as_i64().unwrap() <= lm);
    t.call("POST", REC, A, None).expect(201);
    let after = t
        .call("GET", "/v1/buckets/b1/collections/c1", A, None)
        .json();
    assert_eq!(
        after["data"]["last_modified"],
        created["data"]["last_modified"]
    );
    // Client timestamps: lower kept and list ETag unchanged; higher becomes the ETag.
    let before = t.call("GET", REC, A, None).etag();
    let r = t
        .call(
            "POST",
            REC,
            A,
            Some(json!({"data": {"last_modified": 1000}})),
        )
        .expect(201)
        .json();
    assert_eq!(r["data"]["last_modified"], json!(1000));
    assert_eq!(t.call("GET", REC, A, None).etag(), before);
    let future = before + 100000;
    let r = t
        .call(
            "POST",
            REC,
            A,
            Some(json!({"data": {"last_modified": future}})),
        )
        .expect(201)
        .json();
    assert_eq!(r["data"]["last_modified"], json!(future));
    assert_eq!(t.call("GET", REC, A, None).etag(), future);
    let r = t
        .call(
            "POST",
            REC,
            A,
            Some(json!({"data": {"last_modified": future}})),
        )
        .expect(201)
        .json();
    assert_eq!(r["data"]["last_modified"], json!(future + 1));
    // Replace with an older timestamp: server value used. PATCH without change still bumps.
    let r = t
        .call(
            "PUT",
            &format!("{REC}/r1"),
            A,
            Some(json!({"data": {"last_modified": 5}})),
        )
        .expect(200)
        .json();
    assert!(r["data"]["last_modified"].as_i64().unwrap() > future);
    let prev = r["data"]["last_modified"].as_i64().unwrap();
    let r = t
        .call("PATCH", &format!("{REC}/r1"), A, Some(json!({"data": {}})))
        .expect(200)
        .json();
    assert!(r["data"]["last_modified"].as_i64().unwrap() > prev);
});

on_both_backends!(delete_timestamps_and_tombstones, |db| {
    let mut t = setup(db);
    for i in 0..3 {
        t.call(
            "PUT",
            &format!("{REC}/r{i}"),
            A,
            Some(json!({"data": {"n": i}})),
        )
        .expect(201);
    }
    let cur = t.call("GET", &format!("{REC}/r0"), A, None).json()["data"]["last_modified"]
        .as_i64()
        .unwrap();
    let r = t
        .call(
            "DELETE",
            &format!("{REC}/r0?last_modified={}", cur - 1),
            A,
            None,
        )
        .expect(200)
        .json();
    assert!(r["data"]["last_modified"].as_i64().unwrap() != cur - 1);
    assert_eq!(r["data"]["deleted"], json!(true));
    assert!(r.get("permissions").is_none());
    let target = t.call("GET", REC, A, None).etag() + 1000;
    let r = t
        .call(
            "DELETE",
            &format!("{REC}/r1?last_modified={target}"),
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(r["data"]["last_modified"], json!(target));
    assert_eq!(
        t.call("GET", &format!("{REC}/r1"), A, None)
            .expect(404)
            .json()["errno"],
        json!(110)
    );
    // Plain listing hides tombstones; _since shows them; _fields drops `deleted`.
    let list = t.call("GET", REC, A, None).json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    let since = t.call("GET", &format!("{REC}?_since=0"), A, None).json();
    assert_eq!(since["data"].as_array().unwrap().len(), 3);
    let fields = t
        .call("GET", &format!("{REC}?_since=0&_fields=n"), A, None)
        .json();
    assert!(fields["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o.get("deleted").is_none()));
    let before = t
        .call("GET", &format!("{REC}?_before={}", target + 1), A, None)
        .json();
    assert_eq!(before["data"].as_array().unwrap().len(), 3);
    let head = t
        .call("HEAD", &format!("{REC}?_since=0"), A, None)
        .expect(200);
    assert_eq!(head.header("Total-Objects"), Some("1"));
    // Revival.
    t.call("PUT", &format!("{REC}/r1"), A, Some(json!({"data": {}})))
        .expect(201);
    let since = t.call("GET", &format!("{REC}?_since=0"), A, None).json();
    assert!(!since["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["id"] == json!("r1") && o.get("deleted").is_some()));
    // Plural delete: distinct increasing tombstones.
    t.call("PUT", &format!("{REC}/r5"), A, None).expect(201);
    let r = t.call("DELETE", REC, A, None).expect(200).json();
    let mut stamps: Vec<i64> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["last_modified"].as_i64().unwrap())
        .collect();
    assert_eq!(stamps.len(), 3);
    stamps.sort();
    stamps.dedup();
    assert_eq!(stamps.len(), 3);
    assert_eq!(
        t.call("DELETE", REC, A, None).expect(200).json(),
        json!({"data": []})
    );
});

on_both_backends!(cascades, |db| {
    let mut t = setup(db);
    t.call("PUT", &format!("{REC}/r1"), A, None).expect(201);
    t.call(
        "PUT",
        "/v1/buckets/b1/groups/g1",
        A,
        Some(json!({"data": {"members": ["basicauth:x"]}})),
    )
    .expect(201);
    t.call("DELETE", "/v1/buckets/b1/collections/c1", A, None)
        .expect(200);
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    assert_eq!(
        t.call("GET", &format!("{REC}?_since=0"), A, None)
            .expect(200)
            .json(),
        json!({"data": []})
    );
    t.call("DELETE", "/v1/buckets/b1", A, None).expect(200);
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    assert_eq!(
        t.call("GET", "/v1/buckets/b1/collections?_since=0", A, None)
            .expect(200)
            .json(),
        json!({"data": []})
    );
    assert_eq!(
        t.call("GET", "/v1/buckets/b1/groups?_since=0", A, None)
            .expect(200)
            .json(),
        json!({"data": []})
    );
    // Records of a deleted collection: 404 errno 111.
    let r = t.call("GET", REC, A, None).expect(404).json();
    assert_eq!(
        r,
        json!({"code":404,"errno":111,"error":"Not Found","details":{"id":"c1","resource_name":"collection"}})
    );
});

#[test]
fn group_deletion_removes_principal() {
    let mut t = setup(Db::Sqlite);
    let bob = t.user_id("bob");
    t.call(
        "PUT",
        "/v1/buckets/b1/groups/g1",
        A,
        Some(json!({"data": {"members": [bob]}})),
    )
    .expect(201);
    let p = t.call("GET", "/v1/", Some("bob"), None).json()["user"]["principals"].clone();
    assert!(p
        .as_array()
        .unwrap()
        .contains(&json!("/buckets/b1/groups/g1")));
    t.call("DELETE", "/v1/buckets/b1/groups/g1", A, None)
        .expect(200);
    let p = t.call("GET", "/v1/", Some("bob"), None).json()["user"]["principals"].clone();
    assert!(!p
        .as_array()
        .unwrap()
        .contains(&json!("/buckets/b1/groups/g1")));
}

#[test]
fn methods_and_status_codes() {
    let mut t = setup(Db::Sqlite);
    t.call(
        "PUT",
        &format!("{REC}/r1"),
        A,
        Some(json!({"data": {"a": 1}})),
    )
    .expect(201);
    t.call(
        "PUT",
        &format!("{REC}/r1"),
        A,
        Some(json!({"data": {"a": 2}})),
    )
    .expect(200);
    let existing = t.call("GET", &format!("{REC}/r1"), A, None).json();
    let r = t
        .call("POST", REC, A, Some(json!({"data": {"id": "r1", "a": 9}})))
        .expect(200);
    assert_eq!(r.json()["data"], existing["data"]);
    assert_eq!(
        r.etag(),
        existing["data"]["last_modified"].as_i64().unwrap()
    );
    let head = t.call("HEAD", &format!("{REC}/r1"), A, None).expect(200);
    let get = t.call("GET", &format!("{REC}/r1"), A, None).expect(200);
    assert_eq!(head.body, get.body, "same would-be body (Content-Length)");
    assert_eq!(head.header("ETag"), get.header("ETag"));
    let r = t
        .request(
            Req::new("GET", REC)
                .user("alice")
                .header("Accept", "text/html"),
        )
        .expect(406)
        .json();
    assert_eq!(
        (r["errno"].clone(), r["error"].clone()),
        (json!(107), json!("Invalid parameters"))
    );
    t.request(
        Req::new("GET", REC)
            .user("alice")
            .header("Accept", "application/*"),
    )
    .expect(200);
    t.request(
        Req::new("PUT", &format!("{REC}/r2"))
            .user("alice")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .raw("a=1"),
    )
    .expect(415);
    t.request(
        Req::new("PUT", &format!("{REC}/r2"))
            .user("alice")
            .raw("{\"data\":{}}"),
    )
    .expect(201);
    t.request(
        Req::new("PUT", &format!("{REC}/r3"))
            .user("alice")
            .header("Content-Type", "application/json; charset=utf-8")
            .raw("{}"),
    )
    .expect(201);
    t.request(
        Req::new("PUT", &format!("{REC}/r3"))
            .user("alice")
            .header("Content-Type", "application/merge-patch+json")
            .raw("{}"),
    )
    .expect(415);
    let r = t
        .call("GET", &format!("{REC}/r1?_fields=a"), A, None)
        .expect(200)
        .json();
    assert!(r.get("permissions").is_none());
    assert_eq!(r["data"]["a"], json!(2));
}

#[test]
fn disabled_method_setting() {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.raw
            .insert("plural_bucket_delete_enabled".into(), "false".into());
    });
    let r = t.call("DELETE", "/v1/buckets", A, None).expect(405);
    assert_eq!(r.header("Allow"), Some("HEAD, GET, POST, OPTIONS"));
}

#[test]
fn patch_modes() {
    let mut t = setup(Db::Sqlite);
    let url = format!("{REC}/r1");
    t.call(
        "PUT",
        &url,
        A,
        Some(json!({"data": {"a": 1, "sub": {"x": 1, "y": 2}}})),
    )
    .expect(201);
    let r = t
        .call(
            "PATCH",
            &url,
            A,
            Some(json!({"data": {"a": null, "sub": {"z": 3}}})),
        )
        .expect(200)
        .json();
    assert_eq!(r["data"]["a"], json!(null));
    assert_eq!(r["data"]["sub"], json!({"z": 3}));
    let merge = |t: &mut TestApp, body: Value| {
        t.request(
            Req::new("PATCH", &url)
                .user("alice")
                .header("Content-Type", "application/merge-patch+json")
                .raw(&body.to_string()),
        )
    };
    let r = merge(&mut t, json!({"data": {"a": null, "sub": {"w": 4}}}))
        .expect(200)
        .json();
    assert!(r["data"].get("a").is_none());
    assert_eq!(r["data"]["sub"], json!({"z": 3, "w": 4}));
    let r = merge(&mut t, json!({"permissions": {"read": ["x"]}}))
        .expect(200)
        .json();
    assert_eq!(r["permissions"]["read"], json!(["x"]));
    let r = merge(&mut t, json!({"permissions": {"read": null}}))
        .expect(200)
        .json();
    assert!(r["permissions"].get("read").is_none());
    let jp = |t: &mut TestApp, body: Value| {
        t.request(
            Req::new("PATCH", &url)
                .user("alice")
                .header("Content-Type", "application/json-patch+json")
                .raw(&body.to_string()),
        )
    };
    let r = jp(&mut t, json!([{"op": "add", "path": "/data/c", "value": 5}, {"op": "add", "path": "/permissions/read/account:bob"}])).expect(200).json();
    assert_eq!(r["data"]["c"], json!(5));
    assert_eq!(r["permissions"]["read"], json!(["account:bob"]));
    let r = jp(
        &mut t,
        json!([{"op": "test", "path": "/data/c", "value": 6}]),
    )
    .expect(400)
    .json();
    assert!(r["details"][0]["description"]
        .as_str()
        .unwrap()
        .starts_with("JSON Patch operation failed"));
    jp(&mut t, json!({"op": "add"})).expect(400);
    let r = jp(&mut t, json!([{"op": "bad", "path": "/data/c"}]))
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("0.op"));
    jp(&mut t, json!([])).expect(200);
    let r = t.call("PATCH", &url, A, Some(json!({}))).expect(400).json();
    assert_eq!(
        r["message"],
        json!("Provide at least one of data or permissions")
    );
}

#[test]
fn response_behavior_and_permissions() {
    let mut t = setup(Db::Sqlite);
    let url = format!("{REC}/r1");
    t.call(
        "PUT",
        &url,
        A,
        Some(json!({"data": {"a": 1, "b": 2}, "permissions": {"read": ["x"]}})),
    )
    .expect(201);
    let r = t
        .request(
            Req::new("PATCH", &url)
                .user("alice")
                .header("Response-Behavior", "light")
                .json(&json!({"data": {"a": 1, "b": 3, "c": 4}})),
        )
        .expect(200)
        .json();
    assert_eq!(r, json!({"data": {"b": 3, "c": 4}}));
    let r = t
        .request(
            Req::new("PATCH", &url)
                .user("alice")
                .header("Response-Behavior", "diff")
                .json(&json!({"data": {"b": 5}})),
        )
        .expect(200)
        .json();
    assert_eq!(r, json!({"data": {}}));
    let r = t
        .request(
            Req::new("PATCH", &url)
                .user("alice")
                .header("Response-Behavior", "foo")
                .json(&json!({"data": {}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("Response-Behavior"));
    // Permissions only: data kept, timestamp bumped.
    let before = t.call("GET", &url, A, None).json();
    let r = t
        .call(
            "PATCH",
            &url,
            A,
            Some(json!({"permissions": {"read": ["y"]}})),
        )
        .expect(200)
        .json();
    assert_eq!(r["data"]["b"], before["data"]["b"]);
    assert!(r["data"]["last_modified"].as_i64() > before["data"]["last_modified"].as_i64());
    // PUT without permissions keeps ACEs; with permissions resets the unlisted ones.
    let r = t
        .call("PUT", &url, A, Some(json!({"data": {"z": 1}})))
        .expect(200)
        .json();
    assert_eq!(r["permissions"]["read"], json!(["y"]));
    let r = t
        .call(
            "PUT",
            &url,
            A,
            Some(json!({"permissions": {"write": ["x"]}})),
        )
        .expect(200)
        .json();
    assert!(r["permissions"].get("read").is_none());
    let mut write: Vec<String> = serde_json::from_value(r["permissions"]["write"].clone()).unwrap();
    write.sort();
    let mut expected = vec!["x".to_string(), t.user_id("alice")];
    expected.sort();
    assert_eq!(write, expected);
    assert_eq!(r["data"]["z"], json!(1), "PUT without data keeps the data");
    // A reader sees no permissions.
    let bob = t.user_id("bob");
    t.call(
        "PATCH",
        &url,
        A,
        Some(json!({"permissions": {"read": [bob]}})),
    )
    .expect(200);
    assert_eq!(
        t.call("GET", &url, Some("bob"), None).expect(200).json()["permissions"],
        json!({})
    );
}

on_both_backends!(conditional_requests, |db| {
    let mut t = setup(db);
    let url = format!("{REC}/r1");
    let cur = t
        .call("PUT", &url, A, Some(json!({"data": {"n": 1}})))
        .expect(201)
        .etag();
    let q = |v: i64| format!("\"{v}\"");
    let r = t
        .request(
            Req::new("GET", &url)
                .user("alice")
                .header("If-None-Match", &q(cur)),
        )
        .expect(304);
    assert_eq!(r.etag(), cur);
    assert!(r.body.is_empty());
    let list = t.call("GET", REC, A, None).etag();
    t.request(
        Req::new("GET", REC)
            .user("alice")
            .header("If-None-Match", &q(list)),
    )
    .expect(304);
    t.request(
        Req::new("GET", REC)
            .user("alice")
            .header("If-None-Match", &q(list - 1)),
    )
    .expect(200);
    t.request(
        Req::new("GET", REC)
            .user("alice")
            .header("If-None-Match", "*"),
    )
    .expect(412);
    let r = t
        .request(
            Req::new("GET", REC)
                .user("alice")
                .header("If-Match", &q(list - 1)),
        )
        .expect(412)
        .json();
    assert!(r.get("details").is_none());
    let r = t
        .request(
            Req::new("PUT", &url)
                .user("alice")
                .header("If-Match", &q(cur - 1))
                .json(&json!({})),
        )
        .expect(412);
    assert_eq!(r.etag(), cur);
    let body = r.json();
    assert_eq!(body["details"]["existing"]["n"], json!(1));
    assert!(body["details"]["existing"].get("permissions").is_none());
    t.request(
        Req::new("PUT", &url)
            .user("alice")
            .header("If-None-Match", "*")
            .json(&json!({})),
    )
    .expect(412);
    t.request(
        Req::new("PUT", &format!("{REC}/new1"))
            .user("alice")
            .header("If-None-Match", "*")
            .json(&json!({})),
    )
    .expect(201);
    t.request(
        Req::new("PUT", &format!("{REC}/new2"))
            .user("alice")
            .header("If-Match", "*")
            .json(&json!({})),
    )
    .expect(412);
    t.request(
        Req::new("PATCH", &url)
            .user("alice")
            .header("If-Match", &q(cur))
            .json(&json!({"data": {}})),
    )
    .expect(200);
    t.request(
        Req::new("DELETE", &url)
            .user("alice")
            .header("If-Match", &q(cur)),
    )
    .expect(412);
    t.request(
        Req::new("POST", REC)
            .user("alice")
            .header("If-Match", &q(cur))
            .json(&json!({})),
    )
    .expect(412);
    t.request(
        Req::new("POST", REC)
            .user("alice")
            .header("If-None-Match", "*")
            .json(&json!({"data": {"id": "r1"}})),
    )
    .expect(412);
    let r = t
        .request(
            Req::new("GET", &url)
                .user("alice")
                .header("If-Match", "123"),
        )
        .expect(400)
        .json();
    assert_eq!(
        r["details"][0]["description"],
        json!("The value should be integer between double quotes.")
    );
    let list = t.call("GET", REC, A, None).etag();
    t.request(
        Req::new("DELETE", REC)
            .user("alice")
            .header("If-Match", &q(list - 1)),
    )
    .expect(412);
    t.request(
        Req::new("GET", &format!("{REC}/missing"))
            .user("alice")
            .header("If-Match", "*"),
    )
    .expect(404);
});

#[test]
fn client_cache_headers() {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.raw
            .insert("bucket_cache_expires_seconds".into(), "30".into());
        s.raw
            .insert("record_cache_expires_seconds".into(), "60".into());
        s.raw
            .insert("pub.record_cache_expires_seconds".into(), "120".into());
    });
    let public = json!({"permissions": {"read": ["system.Everyone"]}});
    t.call("PUT", "/v1/buckets/pub", A, Some(public.clone()))
        .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/pub/collections/c",
        A,
        Some(json!({"data": {"cache_expires": 300}})),
    )
    .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/pub/collections/d",
        A,
        Some(json!({"data": {"cache_expires": 30}})),
    )
    .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/pub/collections/z",
        A,
        Some(json!({"data": {"cache_expires": 0}})),
    )
    .expect(201);
    let r = t.call("GET", "/v1/buckets/pub", None, None).expect(200);
    assert_eq!(r.header("Cache-Control"), Some("max-age=30"));
    assert!(r.header("Expires").is_some());
    let r = t.call("GET", "/v1/buckets/pub", A, None).expect(200);
    assert_eq!(r.header("Cache-Control"), Some("no-cache, no-store"));
    let r = t
        .call("GET", "/v1/buckets/pub/collections/c/records", None, None)
        .expect(200);
    assert_eq!(r.header("Cache-Control"), Some("max-age=300"));
    let r = t
        .call("GET", "/v1/buckets/pub/collections/d/records", None, None)
        .expect(200);
    assert_eq!(r.header("Cache-Control"), Some("max-age=120"));
    let r = t
        .call("GET", "/v1/buckets/pub/collections/z/records", None, None)
        .expect(200);
    assert_eq!(r.header("Cache-Control"), Some("max-age=120"));
    t.call("PUT", "/v1/buckets/pub/collections/c/records/r1", A, None)
        .expect(201);
    let r = t
        .call(
            "GET",
            "/v1/buckets/pub/collections/c/records/r1",
            None,
            None,
        )
        .expect(200);
    assert_eq!(r.header("Cache-Control"), Some("max-age=300"));
}

#[test]
fn collection_cache_expires_zero() {
    let mut t = TestApp::new();
    let public = json!({"permissions": {"read": ["system.Everyone"]}});
    t.call("PUT", "/v1/buckets/pub", A, Some(public))
        .expect(201);
    t.call(
        "PUT",
        "/v1/buckets/pub/collections/z",
        A,
        Some(json!({"data": {"cache_expires": 0}})),
    )
    .expect(201);
    let r = t
        .call("GET", "/v1/buckets/pub/collections/z/records", None, None)
        .expect(200);
    assert_eq!(
        r.header("Cache-Control"),
        Some("max-age=0, must-revalidate, no-cache, no-store")
    );
    assert_eq!(r.header("Pragma"), Some("no-cache"));
}
