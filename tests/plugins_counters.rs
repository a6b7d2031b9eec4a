//! Counters plugin (7.7, checklist L 275): objects and tombstones per resource type.

mod api_support;
use api_support::*;
use serde_json::json;

const A: Option<&str> = Some("alice");

on_both_backends!(counts_objects_and_tombstones, |db| {
    let mut t = TestApp::with(db, |s| {
        s.includes = vec!["kinto.plugins.counters".into()];
    });
    let root = t.call("GET", "/v1/", None, None).expect(200).json();
    assert!(root["capabilities"]["counters_endpoint"].is_object());
    let empty = t
        .call("GET", "/v1/__counters__", None, None)
        .expect(200)
        .json();
    assert_eq!(empty, json!({"objects": {}, "tombstones": {}}));
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b2", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b1/collections/c", A, None)
        .expect(201);
    for r in ["r1", "r2", "r3"] {
        t.call(
            "PUT",
            &format!("/v1/buckets/b1/collections/c/records/{r}"),
            A,
            None,
        )
        .expect(201);
    }
    t.call("DELETE", "/v1/buckets/b1/collections/c/records/r1", A, None)
        .expect(200);
    t.call("DELETE", "/v1/buckets/b2", A, None).expect(200);
    let counts = t
        .call("GET", "/v1/__counters__", None, None)
        .expect(200)
        .json();
    assert_eq!(
        counts,
        json!({
            "objects": {"bucket": 1, "collection": 1, "record": 2},
            "tombstones": {"bucket": 1, "record": 1},
        })
    );
    t.call("POST", "/v1/__counters__", None, None).expect(405);
});

#[test]
fn disabled_by_default() {
    let mut t = TestApp::new();
    t.call("GET", "/v1/__counters__", None, None).expect(404);
}
