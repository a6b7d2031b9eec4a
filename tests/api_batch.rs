//! `POST /v1/batch` (section 7.3).

mod api_support;
use api_support::*;
use serde_json::json;

const A: Option<&str> = Some("alice");

on_both_backends!(batch_runs_in_order, |db| {
    let mut t = TestApp::on(db);
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    let body = json!({
        "defaults": {"method": "PUT", "path": "/buckets/b1/collections/c1"},
        "requests": [
            {},
            {"method": "POST", "path": "/buckets/b1/collections/c1/records", "body": {"data": {"k": 1}}},
            {"method": "PUT", "path": "/v1/buckets/b1/collections/c1/records/bk2", "body": {"data": {"k": 2}}},
            {"method": "GET", "path": "/buckets/b1/collections/c1/records?k=2"},
            {"method": "HEAD", "path": "/buckets/b1/collections/c1/records"},
            {"method": "GET", "path": "/buckets/nope"},
            {"method": "GET", "path": "/buckets/b1/"},
        ]
    });
    let r = t
        .call("POST", "/v1/batch", A, Some(body))
        .expect(200)
        .json();
    let responses = r["responses"].as_array().unwrap();
    let statuses: Vec<u64> = responses
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 201, 201, 200, 200, 403, 200]);
    assert_eq!(responses[0]["path"], json!("/v1/buckets/b1/collections/c1"));
    assert_eq!(
        responses[3]["path"],
        json!("/v1/buckets/b1/collections/c1/records")
    );
    assert_eq!(responses[3]["body"]["data"][0]["id"], json!("bk2"));
    assert!(responses[1]["headers"]["ETag"].is_string());
    assert_eq!(responses[4]["body"], json!(""));
    assert_eq!(responses[6]["path"], json!("/v1/buckets/b1"));
    // The 403 did not undo the earlier writes.
    t.call("GET", "/v1/buckets/b1/collections/c1/records/bk2", A, None)
        .expect(200);
    assert_eq!(
        t.call("POST", "/v1/batch", A, Some(json!({"requests": []})))
            .expect(200)
            .json(),
        json!({"responses": []})
    );
});

#[test]
fn batch_validation() {
    let mut t = TestApp::new();
    let msg = |t: &mut TestApp, body: serde_json::Value| {
        t.call("POST", "/v1/batch", A, Some(body))
            .expect(400)
            .json()
    };
    assert_eq!(
        msg(&mut t, json!({}))["message"],
        json!("requests in body: Required")
    );
    let many: Vec<_> = (0..26).map(|_| json!({"path": "/buckets"})).collect();
    assert_eq!(
        msg(&mut t, json!({"requests": many}))["message"],
        json!("Number of requests is limited to 25")
    );
    assert_eq!(
        msg(&mut t, json!({"requests": [{"path": "/batch"}]}))["message"],
        json!("requests in body: Recursive call on /batch endpoint is forbidden.")
    );
    assert_eq!(
        msg(&mut t, json!({"requests": [{"path": "buckets"}]}))["details"][0]["name"],
        json!("requests.0.path")
    );
    assert_eq!(
        msg(
            &mut t,
            json!({"requests": [{"path": "/buckets", "foo": 1}]})
        )["details"][0]["name"],
        json!("requests.0")
    );
    assert_eq!(
        msg(&mut t, json!({"requests": [{"path": "/buckets", "method": "FOO"}]}))["message"],
        json!("requests.0.method in body: \"FOO\" is not one of GET, HEAD, DELETE, TRACE, POST, PUT, PATCH")
    );
    t.call("GET", "/v1/batch", A, None).expect(405);
}
