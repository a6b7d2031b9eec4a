//! Hostile API use against the real binary (issue 7, item 4), on SQLite and on PostgreSQL: SQL
//! injection through ids, filter names and values, sort fields, `_fields` and JSON-patch paths;
//! path traversal in ids; permission escalation attempts; account passwords (bcrypt cost 12,
//! wrong passwords refused). Every attempt gets the expected 4xx (or a harmless literal answer)
//! and has no effect.

mod support_chaos;
use serde_json::{json, Value};
use std::time::Duration;
use support_chaos::*;

fn sqlite_server() -> Server {
    Server::start(&format!("{SQLITE_BACKENDS}{PLUGINS}"), 1, "harakiri = 20\n")
}

fn pg_server(db: &PgDb) -> Server {
    Server::start(
        &format!("{}{PLUGINS}", pg_backends(&db.url(), 2, 10)),
        1,
        "harakiri = 20\n",
    )
}

const PLUGINS: &str = "kinto.includes = kinto.plugins.default_bucket kinto.plugins.accounts\n\
                       multiauth.policies = account basicauth\n\
                       multiauth.policy.account.use = kinto.plugins.accounts.AccountsPolicy\n\
                       kinto.account_create_principals = system.Everyone\n\
                       kinto.userid_hmac_secret = chaos-secret\n\
                       kinto.bucket_create_principals = system.Authenticated\n";

fn ids(answer: &Answer) -> Vec<String> {
    let mut ids: Vec<String> = answer.json()["data"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {} {:?}", answer.status, answer.json()))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const PAYLOADS: [&str; 5] = [
    "x' OR '1'='1",
    "x'; DROP TABLE objects; --",
    "1; SELECT pg_sleep(5)",
    "') OR 1=1 --",
    "%' OR '%'='",
];

/// SQL injection attempts with the first `n` payloads; returns the number of attempts.
fn injections(client: &Client, n: usize) -> usize {
    let payloads = &PAYLOADS[..n];
    make_collection(client, "alice", "inj", "c");
    let base = "/v1/buckets/inj/collections/c/records";
    for (id, title) in [("r1", "a"), ("r2", "b")] {
        let a = client.call(
            "PUT",
            &format!("{base}/{id}"),
            Some("alice"),
            Some(&json!({"data": {"title": title}})),
        );
        assert_eq!(a.status, 201);
    }
    let mut attempts = 0;

    for &p in payloads {
        // Ids: refused as invalid, on every kind of object.
        for path in [
            format!("{base}/{}", q(p)),
            format!("/v1/buckets/{}", q(p)),
            format!("/v1/buckets/inj/collections/{}", q(p)),
            format!("/v1/buckets/inj/groups/{}", q(p)),
        ] {
            attempts += 1;
            let a = client.call("PUT", &path, Some("alice"), Some(&json!({"data": {}})));
            assert_eq!(a.status, 400, "PUT {path}: {:?}", a.json());
            assert_eq!(a.json()["errno"], 107, "{:?}", a.json());
            attempts += 1;
            let a = client.call("GET", &path, Some("alice"), None);
            assert!(
                matches!(a.status, 400 | 403 | 404),
                "GET {path}: {} {:?}",
                a.status,
                a.json()
            );
        }
        // Filter values: compared literally, match nothing.
        for name in [
            "title",
            "id",
            "not_title",
            "in_id",
            "like_title",
            "has_title",
            "min_title",
            "contains_title",
        ] {
            attempts += 1;
            let a = client.call(
                "GET",
                &format!("{base}?{name}={}", q(p)),
                Some("alice"),
                None,
            );
            assert!(
                a.status == 200 || a.status == 400,
                "{name}={p}: {} {:?}",
                a.status,
                a.json()
            );
            if a.status == 200 {
                let got = ids(&a);
                let expected: Vec<String> = match name {
                    "not_title" => vec!["r1".into(), "r2".into()],
                    // like_ with '%' in the payload: a wildcard by design, never more than all.
                    "like_title" => got.clone(),
                    // has_: the field exists (any truthy value).
                    "has_title" => got.clone(),
                    // min_ compares strings: 'x...' > 'a', 'b' keeps none, '%'/'\\'/... keep both.
                    "min_title" => got.clone(),
                    _ => vec![],
                };
                assert_eq!(got, expected, "{name}={p}");
                assert!(got.iter().all(|i| i == "r1" || i == "r2"));
            }
        }
        // Filter names: a field that no record has.
        attempts += 1;
        let a = client.call("GET", &format!("{base}?{}=a", q(p)), Some("alice"), None);
        assert!(
            a.status == 200 || a.status == 400,
            "filter name {p}: {} {:?}",
            a.status,
            a.json()
        );
        if a.status == 200 {
            assert_eq!(ids(&a), Vec::<String>::new(), "filter name {p}");
        }
        attempts += 1;
        let a = client.call(
            "GET",
            &format!("{base}?has_{}=true", q(p)),
            Some("alice"),
            None,
        );
        assert!(
            a.status == 200 || a.status == 400,
            "has_ {p}: {} {:?}",
            a.status,
            a.json()
        );
        if a.status == 200 {
            assert_eq!(ids(&a), Vec::<String>::new(), "has_{p}");
        }
        // Sort fields and _fields: ignored or projected literally.
        attempts += 1;
        let a = client.call(
            "GET",
            &format!("{base}?_sort={}", q(p)),
            Some("alice"),
            None,
        );
        assert_eq!(a.status, 200, "_sort={p}: {:?}", a.json());
        assert_eq!(ids(&a), vec!["r1", "r2"]);
        attempts += 1;
        let a = client.call(
            "GET",
            &format!("{base}?_sort=-{}", q(p)),
            Some("alice"),
            None,
        );
        assert_eq!(a.status, 200, "_sort=-{p}: {:?}", a.json());
        attempts += 1;
        let a = client.call(
            "GET",
            &format!("{base}?_fields={}", q(p)),
            Some("alice"),
            None,
        );
        assert!(
            a.status == 200 || a.status == 400,
            "_fields={p}: {} {:?}",
            a.status,
            a.json()
        );
        if a.status == 200 {
            assert_eq!(ids(&a), vec!["r1", "r2"]);
        }
        attempts += 1;
        let a = client.call(
            "GET",
            &format!("{base}?_token={}", q(p)),
            Some("alice"),
            None,
        );
        assert_eq!(a.status, 400, "_token={p}: {:?}", a.json());
        // JSON-patch paths: a key named after the payload, stored literally.
        attempts += 1;
        let patch = json!([{"op": "add", "path": format!("/data/{}", p.replace('~', "~0").replace('/', "~1")), "value": 1}]);
        let a = client
            .try_call(
                "PATCH",
                &format!("{base}/r1"),
                Some("alice"),
                Some(&patch),
                &[("Content-Type", "application/json-patch+json")],
                Duration::from_secs(20),
            )
            .unwrap();
        assert_eq!(a.status, 200, "patch {p}: {:?}", a.json());
        assert_eq!(a.json()["data"][p], 1, "{:?}", a.json());
        // The literal key is filterable and sortable, still literally.
        attempts += 1;
        let a = client.call("GET", &format!("{base}?{}=1", q(p)), Some("alice"), None);
        if a.status == 200 {
            assert_eq!(ids(&a), vec!["r1"], "filter on literal key {p}");
        }
    }
    // JSON-patch paths reaching outside `data`/`permissions`: refused, or (as Kinto, which
    // patches `{"data", "permissions"}` and keeps only those two) applied to nothing.
    for path in [
        "/id",
        "/last_modified",
        "/../permissions",
        "/data/../../objects",
        "/permissions/write/0/../..",
    ] {
        attempts += 1;
        let patch = json!([{"op": "add", "path": path, "value": "x"}]);
        let a = client
            .try_call(
                "PATCH",
                &format!("{base}/r2"),
                Some("alice"),
                Some(&patch),
                &[("Content-Type", "application/json-patch+json")],
                Duration::from_secs(20),
            )
            .unwrap();
        assert!(
            a.status == 400 || a.status == 200,
            "patch path {path}: {} {:?}",
            a.status,
            a.json()
        );
        if a.status == 200 {
            assert_eq!(a.json()["data"]["id"], "r2", "{:?}", a.json());
            assert!(
                !a.json()["permissions"].to_string().contains("\"x\""),
                "{:?}",
                a.json()
            );
        }
    }
    // Nothing else changed: both records, r2 untouched, the bucket still listed.
    let list = client.call("GET", base, Some("alice"), None);
    assert_eq!(ids(&list), vec!["r1", "r2"]);
    let r2 = client.call("GET", &format!("{base}/r2"), Some("alice"), None);
    assert_eq!(
        r2.json()["data"].as_object().unwrap().len(),
        3,
        "{:?}",
        r2.json()
    );
    let buckets = client.call("GET", "/v1/buckets", Some("alice"), None);
    assert!(ids(&buckets).contains(&"inj".to_string()));
    attempts
}

/// Path traversal in ids; returns the number of attempts.
fn traversal(client: &Client) -> usize {
    make_collection(client, "alice", "secretb", "c");
    let a = client.call(
        "PUT",
        "/v1/buckets/secretb/collections/c/records/s1",
        Some("alice"),
        Some(&json!({"data": {"secret": true}})),
    );
    assert_eq!(a.status, 201);
    make_collection(client, "mallory", "mallb", "c");
    let paths = [
        "/v1/buckets/mallb/collections/c/records/..%2F..%2F..%2Fsecretb%2Fcollections%2Fc%2Frecords%2Fs1",
        "/v1/buckets/mallb/collections/c/records/%2e%2e",
        "/v1/buckets/mallb/../secretb/collections/c/records/s1",
        "/v1/buckets/mallb/collections/../../secretb/collections/c/records/s1",
        "/v1/buckets/mallb%2F..%2Fsecretb/collections/c/records/s1",
        "/v1/buckets/secretb%00/collections/c/records/s1",
        "/v1/buckets/./secretb/collections/c/records/s1",
        "/v1//buckets/secretb/collections/c/records/s1",
        "/v1/buckets/mallb/collections/c/records/s1%2F..%2F..",
    ];
    for path in paths {
        let a = client.call("GET", path, Some("mallory"), None);
        assert!(
            (400..500).contains(&a.status),
            "GET {path}: {} {:?}",
            a.status,
            a.json()
        );
        assert!(
            !String::from_utf8_lossy(&a.body).contains("\"secret\""),
            "{path} leaked: {:?}",
            a.json()
        );
        let a = client.call(
            "PUT",
            path,
            Some("mallory"),
            Some(&json!({"data": {"x": 1}})),
        );
        assert!(
            (400..500).contains(&a.status),
            "PUT {path}: {} {:?}",
            a.status,
            a.json()
        );
    }
    let s1 = client.call(
        "GET",
        "/v1/buckets/secretb/collections/c/records/s1",
        Some("alice"),
        None,
    );
    assert_eq!(
        s1.json()["data"],
        json!({"id": "s1", "secret": true, "last_modified": s1.json()["data"]["last_modified"]})
    );
    paths.len() * 2
}

/// Permission escalation attempts by `mallory` on `alice`'s objects; returns the count.
fn escalation(client: &Client) -> usize {
    make_collection(client, "alice", "own", "c");
    let a = client.call(
        "PUT",
        "/v1/buckets/own/groups/admins",
        Some("alice"),
        Some(&json!({"data": {"members": ["basicauth:nobody"]}})),
    );
    assert_eq!(a.status, 201, "{:?}", a.json());
    // Mallory may read the collection (through a group she is not in) and nothing else.
    let a = client.call(
        "PATCH",
        "/v1/buckets/own/collections/c",
        Some("alice"),
        Some(&json!({"permissions": {"read": ["/buckets/own/groups/admins"]}})),
    );
    assert_eq!(a.status, 200, "{:?}", a.json());
    let mallory_id = client.call("GET", "/v1/", Some("mallory"), None).json()["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let everyone_write = json!({"permissions": {"write": ["system.Everyone", mallory_id.clone()]}});
    let attempts: Vec<(&str, String, Value, u16)> = vec![
        ("PUT", "/v1/buckets/own".into(), everyone_write.clone(), 403),
        (
            "PATCH",
            "/v1/buckets/own".into(),
            everyone_write.clone(),
            403,
        ),
        (
            "PUT",
            "/v1/buckets/own/collections/c".into(),
            everyone_write.clone(),
            403,
        ),
        (
            "PATCH",
            "/v1/buckets/own/collections/c".into(),
            everyone_write.clone(),
            403,
        ),
        (
            "PUT",
            "/v1/buckets/own/collections/evil".into(),
            json!({"data": {}}),
            403,
        ),
        (
            "POST",
            "/v1/buckets/own/collections/c/records".into(),
            json!({"data": {"a": 1}}),
            403,
        ),
        (
            "PATCH",
            "/v1/buckets/own/groups/admins".into(),
            json!({"data": {"members": [mallory_id.clone()]}}),
            403,
        ),
        (
            "PUT",
            "/v1/buckets/own/groups/admins".into(),
            json!({"data": {"members": [mallory_id.clone()]}}),
            403,
        ),
        (
            "PUT",
            "/v1/buckets/own/groups/mine".into(),
            json!({"data": {"members": [mallory_id.clone()]}}),
            403,
        ),
        (
            "DELETE",
            "/v1/buckets/own/groups/admins".into(),
            Value::Null,
            403,
        ),
        ("DELETE", "/v1/buckets/own".into(), Value::Null, 403),
        (
            "GET",
            "/v1/buckets/own/collections/c/records".into(),
            Value::Null,
            403,
        ),
    ];
    let count = attempts.len();
    for (method, path, body, expected) in attempts {
        let body = (!body.is_null()).then_some(&body);
        let a = client.call(method, &path, Some("mallory"), body);
        assert_eq!(a.status, expected, "{method} {path}: {:?}", a.json());
    }
    // A group of her own with the same name is another principal: still no access.
    make_collection(client, "mallory", "mine", "c");
    let a = client.call(
        "PUT",
        "/v1/buckets/mine/groups/admins",
        Some("mallory"),
        Some(&json!({"data": {"members": [mallory_id.clone()]}})),
    );
    assert_eq!(a.status, 201);
    let a = client.call(
        "GET",
        "/v1/buckets/own/collections/c/records",
        Some("mallory"),
        None,
    );
    assert_eq!(a.status, 403, "{:?}", a.json());
    // Nothing changed on alice's side.
    let group = client.call("GET", "/v1/buckets/own/groups/admins", Some("alice"), None);
    assert_eq!(group.json()["data"]["members"], json!(["basicauth:nobody"]));
    let bucket = client.call("GET", "/v1/buckets/own", Some("alice"), None);
    let perms = bucket.json()["permissions"].to_string();
    assert!(
        !perms.contains("system.Everyone") && !perms.contains(&mallory_id),
        "{perms}"
    );
    let collections = client.call("GET", "/v1/buckets/own/collections", Some("alice"), None);
    assert_eq!(ids(&collections), vec!["c"]);

    // Default bucket: mallory learns alice's default bucket id and tries to take it over.
    let alice_default = client.call("GET", "/v1/", Some("alice"), None).json()["user"]["bucket"]
        .as_str()
        .unwrap()
        .to_string();
    let a = client.call(
        "PUT",
        "/v1/buckets/default/collections/tasks/records/t1",
        Some("alice"),
        Some(&json!({"data": {"todo": "private"}})),
    );
    assert_eq!(a.status, 201, "{:?}", a.json());
    let mut more = 0;
    for (method, path, body) in [
        (
            "PUT",
            format!("/v1/buckets/{alice_default}"),
            json!({"data": {}}),
        ),
        (
            "GET",
            format!("/v1/buckets/{alice_default}/collections/tasks/records"),
            Value::Null,
        ),
        (
            "PUT",
            format!("/v1/buckets/{alice_default}/collections/tasks/records/t1"),
            json!({"data": {}}),
        ),
    ] {
        more += 1;
        let body = (!body.is_null()).then_some(&body);
        let a = client.call(method, &path, Some("mallory"), body);
        assert_eq!(a.status, 403, "{method} {path}: {:?}", a.json());
    }
    // Mallory's own default bucket is a different one.
    let mallory_default = client.call("GET", "/v1/buckets/default", Some("mallory"), None);
    assert_eq!(mallory_default.status, 200);
    assert_ne!(mallory_default.json()["data"]["id"], json!(alice_default));
    let t1 = client.call(
        "GET",
        "/v1/buckets/default/collections/tasks/records/t1",
        Some("alice"),
        None,
    );
    assert_eq!(t1.json()["data"]["todo"], "private");
    count + 1 + more
}

/// Accounts: bcrypt cost 12 stored, wrong password refused. Returns the stored hash.
fn accounts(client: &Client) -> usize {
    let a = client.call(
        "PUT",
        "/v1/accounts/acct",
        None,
        Some(&json!({"data": {"password": "right"}})),
    );
    assert_eq!(a.status, 201, "{:?}", a.json());
    let login = |password: &str| {
        let token = base64_encode(&format!("acct:{password}"));
        client
            .try_call(
                "GET",
                "/v1/accounts/acct",
                None,
                None,
                &[("Authorization", &format!("Basic {token}"))],
                Duration::from_secs(20),
            )
            .unwrap()
    };
    let ok = login("right");
    assert_eq!(ok.status, 200, "{:?}", ok.json());
    assert!(
        ok.json()["data"].get("password").is_none()
            || ok.json()["data"]["password"]
                .as_str()
                .unwrap()
                .starts_with("$2b$12$")
    );
    // Wrong password, before and after the cached proof exists: not authenticated as acct
    // (basicauth takes over: another user, without access to the account).
    // (Each check is a bcrypt at cost 12: two keep the test short.)
    for wrong in ["wrong", "Right"] {
        let a = login(wrong);
        assert!(
            matches!(a.status, 401 | 403),
            "password {wrong:?}: {} {:?}",
            a.status,
            a.json()
        );
    }
    4
}

/// One group of attempts: runs them, returns how many there were.
type Group<'a> = dyn Fn(&Client) -> usize + 'a;

/// Runs every group of attempts, printing how long each took; the number of attempts.
fn phases(client: &Client, payloads: usize) -> usize {
    let injections = |c: &Client| injections(c, payloads);
    let groups: [(&str, &Group<'_>); 4] = [
        ("injections", &injections),
        ("traversal", &traversal),
        ("escalation", &escalation),
        ("accounts", &accounts),
    ];
    let mut total = 0;
    for (name, group) in groups {
        let start = std::time::Instant::now();
        let n = group(client);
        println!("  {name}: {n} attempts in {:?}", start.elapsed());
        total += n;
    }
    total
}

fn base64_encode(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn hostile_api_use_on_sqlite() {
    let server = sqlite_server();
    let client = server.client();
    let worker = server.worker_pids();
    let n = phases(&client, PAYLOADS.len());
    println!(
        "hostile api (sqlite): {n} attempts refused or harmless; worker {worker:?} -> {:?}",
        server.worker_pids()
    );
    assert_eq!(server.worker_pids(), worker);
    // The database file is intact.
    let conn = rusqlite::Connection::open(server.dir.0.join("kinto.db")).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let hash: String = conn
        .query_row(
            "SELECT json_extract(data, '$.password') FROM objects WHERE resource_name = 'account' AND id = 'acct'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        hash.starts_with("$2b$12$"),
        "bcrypt cost 12 as Kinto: {hash}"
    );
}

#[test]
fn hostile_api_use_on_postgresql() {
    let db = PgDb::create();
    let server = pg_server(&db);
    let client = server.client();
    let worker = server.worker_pids();
    let mut pg = db.connect();
    let tables: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    // Every request costs a round trip or more on PostgreSQL: three payloads keep the test
    // short on a loaded machine (all five run on SQLite).
    let n = phases(&client, 3);
    println!(
        "hostile api (postgresql): {n} attempts refused or harmless; worker {worker:?} -> {:?}",
        server.worker_pids()
    );
    assert_eq!(server.worker_pids(), worker);
    let tables_after: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, tables_after, "no table dropped or created");
    let hash: String = pg
        .query_one(
            "SELECT data->>'password' FROM objects WHERE resource_name = 'account' AND id = 'acct'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        hash.starts_with("$2b$12$"),
        "bcrypt cost 12 as Kinto: {hash}"
    );
    // A NUL in a JSON string cannot go into jsonb: a 4xx, not a 500.
    let a = client
        .raw(
            format!(
                "PUT /v1/buckets/inj/collections/c/records/nul HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{{\"data\": {{\"k\": \"a\\u0000b\"}}}}",
                basic("alice")
            )
            .as_bytes(),
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(a.status, 400, "NUL in jsonb: {:?}", a.json());
}
