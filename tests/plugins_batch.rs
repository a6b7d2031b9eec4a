//! Batch with the plugins (7.3 with 7.1, 5.3): the personal bucket created inside a batch,
//! sub-requests of account users, accounts managed through a batch, and a throughput check of
//! the benchmark's shape (batches of 25 record creations).

mod api_support;
use api_support::*;
use base64::Engine;
use serde_json::{json, Value};
use std::time::Instant;

const A: Option<&str> = Some("alice");

fn app(db: Db) -> TestApp {
    TestApp::with(db, |s| {
        s.includes = vec![
            "kinto.plugins.accounts".into(),
            "kinto.plugins.default_bucket".into(),
            "kinto.plugins.history".into(),
        ];
        s.multiauth_policies = vec!["account".into(), "basicauth".into()];
        s.raw.insert(
            "multiauth.policy.account.use".into(),
            "kinto.plugins.accounts.AccountsPolicy".into(),
        );
        s.raw
            .insert("account_create_principals".into(), "system.Everyone".into());
        s.raw.insert("account_bcrypt_cost".into(), "4".into());
    })
}

fn statuses(r: &Value) -> Vec<u64> {
    r["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_u64().unwrap())
        .collect()
}

on_both_backends!(personal_bucket_in_batch, |db| {
    let mut t = app(db);
    let requests: Vec<Value> = (0..5)
        .map(|i| json!({"body": {"data": {"n": i}}}))
        .collect();
    let r = t
        .call(
            "POST",
            "/v1/batch",
            A,
            Some(json!({
                "defaults": {"method": "POST", "path": "/buckets/default/collections/tasks/records"},
                "requests": requests,
            })),
        )
        .expect(200)
        .json();
    assert_eq!(statuses(&r), vec![201; 5]);
    let bid = kinto::api::default_bucket::bucket_id("", &t.user_id("alice"));
    // The reported path is the one sent, as the reference reports it.
    let path = r["responses"][0]["path"].as_str().unwrap();
    assert_eq!(path, "/v1/buckets/default/collections/tasks/records");
    assert_eq!(
        r["responses"][0]["body"]["data"]["n"],
        json!(0),
        "the record is in the personal bucket"
    );
    let list = t
        .call(
            "GET",
            "/v1/buckets/default/collections/tasks/records",
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(list["data"].as_array().unwrap().len(), 5);
    // One creation entry each for the bucket and the collection.
    let h = t
        .call(
            "GET",
            &format!("/v1/buckets/{bid}/history?resource_name=collection"),
            A,
            None,
        )
        .expect(200)
        .json();
    assert_eq!(h["data"].as_array().unwrap().len(), 1);
});

on_both_backends!(accounts_in_batch, |db| {
    let mut t = app(db);
    // Sign-ups through a batch, anonymously.
    let r = t
        .call(
            "POST",
            "/v1/batch",
            None,
            Some(json!({
                "defaults": {"method": "PUT"},
                "requests": [
                    {"path": "/accounts/u1", "body": {"data": {"password": "p1"}}},
                    {"path": "/accounts/u2", "body": {"data": {"password": "p2"}}},
                    {"path": "/accounts/u1", "method": "GET"},
                ],
            })),
        )
        .expect(200)
        .json();
    assert_eq!(statuses(&r), vec![201, 201, 401]);
    // An account user's batch: authenticated once, every sub-request as that user.
    let token = base64::engine::general_purpose::STANDARD.encode("u1:p1");
    let body = json!({
        "defaults": {"method": "PUT"},
        "requests": [
            {"path": "/buckets/ub"},
            {"path": "/buckets/ub/collections/c"},
            {"path": "/accounts/u1", "method": "GET"},
            {"path": "/accounts/u2", "method": "GET"},
            {"path": "/", "method": "GET"},
        ],
    });
    let r = t
        .request(
            Req::new("POST", "/v1/batch")
                .header("Authorization", &format!("Basic {token}"))
                .json(&body),
        )
        .expect(200)
        .json();
    assert_eq!(statuses(&r), vec![201, 201, 200, 403, 200]);
    assert_eq!(
        r["responses"][0]["body"]["permissions"]["write"],
        json!(["account:u1"])
    );
    assert_eq!(r["responses"][4]["body"]["user"]["id"], json!("account:u1"));
    // A sub-request with its own credentials is authenticated with them.
    let other = base64::engine::general_purpose::STANDARD.encode("u2:p2");
    let r = t
        .request(
            Req::new("POST", "/v1/batch")
                .header("Authorization", &format!("Basic {token}"))
                .json(&json!({"requests": [
                    {"path": "/"},
                    {"path": "/", "headers": {"Authorization": format!("Basic {other}")}},
                ]})),
        )
        .expect(200)
        .json();
    assert_eq!(r["responses"][0]["body"]["user"]["id"], json!("account:u1"));
    assert_eq!(r["responses"][1]["body"]["user"]["id"], json!("account:u2"));
});

// The benchmark's shape: batches of 25 record creations. Prints the rate; asserts a floor far
// below the target so that a loaded test machine does not fail it, but a pathological
// per-sub-request cost (a bcrypt check, a transaction each) would.
on_both_backends!(batch_throughput, |db| {
    let history = std::env::var("BATCH_NO_HISTORY").is_err();
    let mut t = app(db).reopen(|s| {
        if !history {
            s.includes.retain(|i| !i.ends_with("history"));
        }
    });
    t.call("PUT", "/v1/buckets/bench", A, None).expect(201);
    t.call("PUT", "/v1/buckets/bench/collections/c", A, None)
        .expect(201);
    let requests: Vec<Value> = (0..25)
        .map(|i| json!({"body": {"data": {"n": i, "title": "some text"}}}))
        .collect();
    let body = json!({
        "defaults": {"method": "POST", "path": "/buckets/bench/collections/c/records"},
        "requests": requests,
    });
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        let r = t
            .call("POST", "/v1/batch", A, Some(body.clone()))
            .expect(200);
        assert_eq!(statuses(&r.json()), vec![201; 25]);
    }
    let elapsed = start.elapsed();
    let rate = rounds as f64 / elapsed.as_secs_f64();
    eprintln!("{db:?}: {rate:.1} batches of 25 creations per second (history: {history})");
    assert!(elapsed.as_secs() < 15, "{rounds} batches took {elapsed:?}");
    let total = t
        .call("HEAD", "/v1/buckets/bench/collections/c/records", A, None)
        .expect(200);
    assert_eq!(total.header("Total-Objects"), Some("500"));
});
