//! Filters, sorting, pagination and field selection on plural endpoints (checklist group H).

mod api_support;
use api_support::*;
use base64::Engine;
use serde_json::{json, Value};

const A: Option<&str> = Some("alice");
const REC: &str = "/v1/buckets/b1/collections/c1/records";

fn seeded(db: Db, adjust: impl FnOnce(&mut kinto::settings::Settings)) -> TestApp {
    let mut t = TestApp::with(db, adjust);
    t.call("PUT", "/v1/buckets/b1", A, None).expect(201);
    t.call("PUT", "/v1/buckets/b1/collections/c1", A, None)
        .expect(201);
    let objects = [
        json!({"id": "a", "n": 1, "title": "t1", "tags": ["a", "x1"], "nested": {"v": 1}}),
        json!({"id": "b", "n": 3, "title": "T3", "tags": ["a", "x2"], "nested": {"v": 2}}),
        json!({"id": "c", "n": "3", "title": "t2", "x": null}),
        json!({"id": "d", "title": "other"}),
    ];
    for o in objects {
        t.call(
            "PUT",
            &format!("{REC}/{}", o["id"].as_str().unwrap()),
            A,
            Some(json!({"data": o})),
        )
        .expect(201);
    }
    t
}

fn ids(t: &mut TestApp, query: &str) -> Vec<String> {
    let r = t
        .call("GET", &format!("{REC}?{query}"), A, None)
        .expect(200)
        .json();
    let mut ids: Vec<String> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn ordered(t: &mut TestApp, query: &str) -> Vec<String> {
    let r = t
        .call("GET", &format!("{REC}?{query}"), A, None)
        .expect(200)
        .json();
    r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

fn error_message(t: &mut TestApp, query: &str) -> String {
    let r = t
        .call("GET", &format!("{REC}?{query}"), A, None)
        .expect(400)
        .json();
    assert_eq!(r["errno"], json!(107));
    r["message"].as_str().unwrap().to_string()
}

on_both_backends!(filters, |db| {
    let mut t = seeded(db, |_| {});
    assert_eq!(ids(&mut t, "n=3"), ["b"]);
    assert_eq!(ids(&mut t, "n=%223%22"), ["c"]);
    assert_eq!(ids(&mut t, "title=t1"), ids(&mut t, "title=%22t1%22"));
    assert_eq!(ids(&mut t, "min_n=1&max_n=3"), ["a", "b"]);
    assert_eq!(ids(&mut t, "gt_n=1&lt_n=3"), Vec::<String>::new());
    assert_eq!(ids(&mut t, "not_n=3"), ["a", "c", "d"]);
    // JSONB order: the string "3" sorts before numbers.
    assert_eq!(ids(&mut t, "lt_n=3"), ["a", "c"]);
    assert_eq!(ids(&mut t, "in_n=1,3"), ["a", "b"]);
    assert!(!ids(&mut t, "exclude_n=1,3").contains(&"a".to_string()));
    assert!(ids(&mut t, "exclude_n=1,3").contains(&"d".to_string()));
    assert_eq!(ids(&mut t, "like_title=t*"), ["a", "b", "c"]);
    assert_eq!(ids(&mut t, "like_title=T3"), ["b"]);
    assert_eq!(ids(&mut t, "has_n=false"), ["d"]);
    assert_eq!(ids(&mut t, "has_x=true"), ["c"]);
    assert_eq!(ids(&mut t, "contains_tags=x2"), ["b"]);
    assert_eq!(ids(&mut t, "contains_tags=%5B%22a%22,%22x2%22%5D"), ["b"]);
    assert_eq!(
        ids(&mut t, "contains_any_tags=%5B%22x1%22,%22x2%22%5D"),
        ["a", "b"]
    );
    assert_eq!(ids(&mut t, "nested.v=2"), ["b"]);
    assert_eq!(ids(&mut t, "tags=%5B%22a%22,%22x2%22%5D"), ["b"]);
    assert_eq!(ids(&mut t, "id=%22a%22"), ["a"]);
    assert_eq!(ids(&mut t, "_foo=bar"), ["a", "b", "c", "d"]);
});

#[test]
fn filter_validation() {
    let mut t = seeded(Db::Sqlite, |_| {});
    assert_eq!(
        error_message(&mut t, "like_title=3"),
        "Invalid value for like_title"
    );
    t.call("GET", &format!("{REC}?like_title=%223%22"), A, None)
        .expect(200);
    assert!(error_message(&mut t, "contains_id=x").ends_with("Field 'id' is not an array"));
    error_message(&mut t, "id=123");
    assert_eq!(
        error_message(&mut t, "in_id=1,2"),
        "Invalid value for in_id"
    );
    assert_eq!(
        error_message(&mut t, "_since=abc"),
        "_since in querystring: \"abc\" is not a number"
    );
    assert_eq!(
        error_message(&mut t, "_before=-5"),
        "_before in querystring: -5 is less than minimum value 0"
    );
    assert!(error_message(&mut t, "title=a%00b").ends_with("Invalid character 0x00"));
    let far = kinto::api::http::now_ms() + 25 * 3600 * 1000;
    assert_eq!(
        error_message(&mut t, &format!("_since={far}")),
        "Invalid value for _since"
    );
    assert_eq!(
        error_message(&mut t, &format!("gt_last_modified={far}")),
        "Invalid value for gt_last_modified"
    );
    let r = t
        .call("GET", &format!("{REC}?a=%ff"), A, None)
        .expect(400)
        .json();
    assert_eq!(r["errno"], json!(107));
    error_message(&mut t, "_limit=-1");
    error_message(&mut t, "_limit=abc");
}

on_both_backends!(since_before_and_to, |db| {
    let mut t = seeded(db, |_| {});
    let etag = t.call("GET", REC, A, None).etag();
    assert_eq!(ids(&mut t, &format!("_since=%22{}%22", etag - 1)).len(), 1);
    let r = t
        .call("GET", &format!("{REC}?_to={etag}"), A, None)
        .expect(200);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 3);
    let alert: Value = serde_json::from_str(r.header("Alert").unwrap()).unwrap();
    assert_eq!(alert["code"], json!("soft-eol"));
    assert_eq!(
        t.call("GET", &format!("{REC}?_since=null"), A, None)
            .expect(200)
            .json(),
        json!({"data": []})
    );
});

on_both_backends!(sorting, |db| {
    let mut t = seeded(db, |_| {});
    assert_eq!(ordered(&mut t, ""), ["d", "c", "b", "a"]);
    assert_eq!(
        ordered(&mut t, "_sort=-last_modified"),
        ["d", "c", "b", "a"]
    );
    let asc = ordered(&mut t, "_sort=n");
    assert_eq!(asc.last().unwrap(), "d", "absent sorts last: {asc:?}");
    let desc = ordered(&mut t, "_sort=-n");
    assert_eq!(
        desc.first().unwrap(),
        "d",
        "absent sorts first descending: {desc:?}"
    );
    assert_eq!(ordered(&mut t, "_sort=title,-n"), ["b", "d", "a", "c"]);
});

on_both_backends!(pagination, |db| {
    let mut t = seeded(db, |_| {});
    let r = t
        .call("GET", &format!("{REC}?_limit=2&_fields=n"), A, None)
        .expect(200);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    let next = r.header("Next-Page").unwrap().to_string();
    assert!(
        next.starts_with(
            "http://localhost:8888/v1/buckets/b1/collections/c1/records?_limit=2&_fields=n&_token="
        ),
        "{next}"
    );
    let token = next.split("_token=").nth(1).unwrap();
    let token = percent_encoding::percent_decode_str(token)
        .decode_utf8()
        .unwrap();
    let decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(token.as_bytes())
            .unwrap(),
    )
    .unwrap();
    assert!(decoded["last_object"].is_object());
    assert!(decoded["offset"].is_u64());
    assert!(decoded["nonce"]
        .as_str()
        .unwrap()
        .starts_with("pagination-token-"));
    // Following Next-Page returns every object once, in order; tokens of GETs are reusable.
    let mut seen = Vec::new();
    let mut url = format!("{REC}?_limit=1&_sort=title");
    loop {
        let r = t.call("GET", &url, A, None).expect(200);
        for o in r.json()["data"].as_array().unwrap() {
            seen.push(o["id"].as_str().unwrap().to_string());
        }
        match r.header("Next-Page") {
            Some(next) => {
                let again = next.trim_start_matches("http://localhost:8888").to_string();
                t.call("GET", &again, A, None).expect(200);
                url = again;
            }
            None => break,
        }
    }
    assert_eq!(seen, ["b", "d", "a", "c"]);
    assert_eq!(
        error_message(&mut t, "_token=abc"),
        "querystring: _token has invalid content"
    );
    assert_eq!(ids(&mut t, "_limit=0").len(), 4);
    // Count on HEAD only, filters applied.
    let head = t
        .call("HEAD", &format!("{REC}?has_n=true&_limit=1"), A, None)
        .expect(200);
    assert_eq!(head.header("Total-Objects"), Some("3"));
    assert_eq!(head.header("Total-Records"), Some("3"));
    // The would-be body is kept for its Content-Length; the worker never sends it.
    let get = t.call("GET", &format!("{REC}?has_n=true&_limit=1"), A, None);
    assert_eq!(head.body.len(), get.body.len());
    assert!(t
        .call("GET", REC, A, None)
        .header("Total-Objects")
        .is_none());
});

#[test]
fn page_size_settings() {
    let mut t = seeded(Db::Sqlite, |s| s.paginate_by = Some(2));
    assert_eq!(ids(&mut t, "_limit=10").len(), 2);
    let mut t = seeded(Db::Sqlite, |s| s.storage_max_fetch_size = 3);
    let r = t.call("GET", REC, A, None).expect(200);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 3);
    assert!(r.header("Next-Page").is_some());
}

on_both_backends!(delete_tokens_single_use, |db| {
    let mut t = seeded(db, |_| {});
    let r = t
        .call("DELETE", &format!("{REC}?_limit=1"), A, None)
        .expect(200);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1);
    let next = r
        .header("Next-Page")
        .unwrap()
        .trim_start_matches("http://localhost:8888")
        .to_string();
    let r = t.call("DELETE", &next, A, None).expect(200);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 1);
    let r = t.call("DELETE", &next, A, None).expect(400).json();
    assert_eq!(
        r["message"],
        json!("querystring: _token was already used or has expired.")
    );
    // Pages went newest first (d, then c); a filtered delete removes only matching objects.
    let r = t
        .call("DELETE", &format!("{REC}?title=t1"), A, None)
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
});

#[test]
fn fields_selection() {
    let mut t = seeded(Db::Sqlite, |_| {});
    let r = t
        .call("GET", &format!("{REC}?_fields=title&id=%22a%22"), A, None)
        .json();
    let obj = r["data"][0].as_object().unwrap();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "last_modified", "title"]);
    let r = t
        .call(
            "GET",
            &format!("{REC}?_fields=nested.v&id=%22b%22"),
            A,
            None,
        )
        .json();
    assert_eq!(r["data"][0]["nested"], json!({"v": 2}));
}

/// A plural GET the caller may read is one PostgreSQL round trip: the principals, permission
/// check, parent collection, list timestamp, page (and HEAD's count) in one statement, no
/// `BEGIN`/`COMMIT` (PERFORMANCE.md, "one round trip per read").
#[test]
fn list_is_one_round_trip_on_postgresql() {
    use kinto::storage::postgresql::round_trips;
    let mut t = seeded(Db::Postgres, |_| {});
    for i in 0..12 {
        t.call(
            "POST",
            REC,
            A,
            Some(json!({"data": {"n": i % 3, "pad": "x".repeat(200)}})),
        )
        .expect(201);
    }
    // Bob reads through a group; the public collection has a `cache_expires`.
    let bob = t.user_id("bob");
    t.call(
        "PUT",
        "/v1/buckets/b1/groups/readers",
        A,
        Some(json!({"data": {"members": [bob]}})),
    )
    .expect(201);
    t.call(
        "PATCH",
        "/v1/buckets/b1/collections/c1",
        A,
        Some(json!({"data": {"cache_expires": 60},
                    "permissions": {"read": ["/buckets/b1/groups/readers", "system.Everyone"]}})),
    )
    .expect(200);
    let paged = t
        .call("GET", &format!("{REC}?_limit=5"), A, None)
        .expect(200);
    let next = paged.header("Next-Page").unwrap().to_string();
    let next = &next[next.find("/v1/").unwrap()..];
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("GET", "?_limit=10&_sort=-last_modified", A),
        ("GET", "?n=1&_limit=20", A),
        ("GET", "?n=1&_limit=20", Some("bob")),
        ("GET", "?_since=0&_sort=n", None),
        ("HEAD", "?n=2", A),
        ("GET", "", None),
    ];
    let mut targets: Vec<(&str, String, Option<&str>)> = cases
        .iter()
        .map(|(m, q, u)| (*m, format!("{REC}{q}"), *u))
        .collect();
    targets.push(("GET", next.to_string(), A));
    targets.push(("GET", "/v1/buckets/b1/collections".into(), A));
    for (method, target, user) in targets {
        // Statements are prepared once per connection: warm it first.
        let warm = t.call(method, &target, user, None).expect(200);
        let before = round_trips();
        let resp = t.call(method, &target, user, None).expect(200);
        assert_eq!(round_trips() - before, 1, "{method} {target} as {user:?}");
        assert_eq!(resp.body, warm.body, "{target}");
        assert_eq!(resp.header("ETag"), warm.header("ETag"));
        if user.is_none() {
            assert_eq!(resp.header("Cache-Control"), Some("max-age=60"));
        }
    }
    // The first read of an empty list creates its timestamp in that same statement.
    t.call("PUT", "/v1/buckets/b1/collections/empty", A, None)
        .expect(201);
    let before = round_trips();
    t.call("GET", "/v1/buckets/b1/collections/empty/records", A, None)
        .expect(200);
    assert_eq!(round_trips() - before, 1);
}

#[test]
fn object_writes_open_their_transaction_with_their_read_on_postgresql() {
    // A PATCH or a PUT is its read, then its write with BEGIN, the list lock and the commit (the
    // write happens only if the object is still as read); a POST is its access read, then its
    // ACEs, its creation and the commit.
    use kinto::storage::postgresql::round_trips;
    let mut t = seeded(Db::Postgres, |_| {});
    for i in 0..3 {
        t.call(
            "PUT",
            &format!("{REC}/r{i}"),
            A,
            Some(json!({"data": {"n": i}})),
        )
        .expect(201);
    }
    // Warm the prepared statements of the connection.
    t.call(
        "PATCH",
        &format!("{REC}/r0"),
        A,
        Some(json!({"data": {"m": 0}})),
    )
    .expect(200);
    let before = round_trips();
    let r = t
        .call(
            "PATCH",
            &format!("{REC}/r1"),
            A,
            Some(json!({"data": {"m": 1}})),
        )
        .expect(200);
    assert_eq!(round_trips() - before, 2, "PATCH");
    assert_eq!(r.json()["data"]["m"], json!(1));
    let before = round_trips();
    t.call(
        "PUT",
        &format!("{REC}/r1"),
        A,
        Some(json!({"data": {"m": 2}})),
    )
    .expect(200);
    assert_eq!(round_trips() - before, 2, "PUT");
    for i in 0..2 {
        let before = round_trips();
        let r = t
            .call("POST", REC, A, Some(json!({"data": {"n": i}})))
            .expect(201);
        // The first one prepares the creation and the ACE write on this connection.
        if i == 1 {
            assert_eq!(round_trips() - before, 2, "POST");
        }
        let id = r.json()["data"]["id"].as_str().unwrap().to_string();
        let got = t.call("GET", &format!("{REC}/{id}"), A, None).expect(200);
        assert_eq!(got.json()["data"]["n"], json!(i));
        assert_eq!(
            got.json()["permissions"]["write"],
            r.json()["permissions"]["write"]
        );
    }
    // A stale If-Match is refused after the one round trip of the read (then rolled back).
    let before = round_trips();
    t.request(
        Req::new("PATCH", &format!("{REC}/r2"))
            .user("alice")
            .header("If-Match", "\"1\"")
            .json(&json!({"data": {"m": 3}})),
    )
    .expect(412);
    // Alone in its transaction, the read takes no lock and opens nothing to roll back.
    assert_eq!(round_trips() - before, 1, "412: the read");
    let got = t.call("GET", &format!("{REC}/r2"), A, None).expect(200);
    assert_eq!(got.json()["data"].get("m"), None);
}
