//! JSON-schema validation (section 7.4).

mod api_support;
use api_support::*;
use serde_json::json;

const A: Option<&str> = Some("alice");
const REC: &str = "/v1/buckets/b1/collections/c1/records";

fn app(enabled: bool) -> TestApp {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.experimental_collection_schema_validation = enabled
    });
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    let schema = json!({
        "type": "object",
        "properties": {"title": {"type": "string"}, "n": {"type": "integer", "minimum": 0}},
        "required": ["title", "id"],
        "additionalProperties": false
    });
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/c1",
        A,
        Some(json!({"data": {"schema": schema}})),
    )
    .expect(201);
    t
}

#[test]
fn records_validated_against_collection_schema() {
    let mut t = app(true);
    assert!(t.call("GET", "/v1/", None, None).json()["capabilities"]["schema"].is_object());
    let r = t
        .call("POST", REC, A, Some(json!({"data": {"n": 1}})))
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("'title' is a required property"));
    assert_eq!(r["details"][0]["name"], json!("title"));
    let r = t
        .call("POST", REC, A, Some(json!({"data": {"title": 5}})))
        .expect(400)
        .json();
    assert_eq!(
        r["message"],
        json!("title in body: 5 is not of type 'string'")
    );
    let r = t
        .call(
            "POST",
            REC,
            A,
            Some(json!({"data": {"title": "t", "extra": 1}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("additionalProperties"));
    assert_eq!(
        r["details"][0]["description"],
        json!("Additional properties are not allowed ('extra' was unexpected)")
    );
    let coll = t
        .call("GET", "/v1/buckets/b1/collections/c1", A, None)
        .json();
    let r = t
        .call(
            "POST",
            REC,
            A,
            Some(json!({"data": {"title": "ok", "n": 2}})),
        )
        .expect(201)
        .json();
    assert_eq!(r["data"]["schema"], coll["data"]["last_modified"]);
    let id = r["data"]["id"].as_str().unwrap().to_string();
    t.call(
        "PATCH",
        &format!("{REC}/{id}"),
        A,
        Some(json!({"data": {"n": -1}})),
    )
    .expect(400);
}

#[test]
fn bucket_level_schemas() {
    let mut t = app(true);
    let rs = json!({"type": "object", "properties": {"rank": {"type": "number"}}});
    let cs = json!({"type": "object", "required": ["label"]});
    t.call(
        "PATCH",
        "/v1/buckets/b1",
        A,
        Some(json!({"data": {"record:schema": rs, "collection:schema": cs}})),
    )
    .expect(200);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/c2",
        A,
        Some(json!({"data": {}})),
    )
    .expect(400);
    t.call(
        "PUT",
        "/v1/buckets/b1/collections/c2",
        A,
        Some(json!({"data": {"label": "x"}})),
    )
    .expect(201);
    let r = t
        .call(
            "POST",
            "/v1/buckets/b1/collections/c2/records",
            A,
            Some(json!({"data": {"rank": "high"}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("rank"));
}

#[test]
fn disabled_validation_stores_schema_only() {
    let mut t = app(false);
    t.call(
        "POST",
        REC,
        A,
        Some(json!({"data": {"title": 5, "extra": true}})),
    )
    .expect(201);
    // The schema itself must still be a valid JSON schema.
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
