//! Accounts plugin (5.3, checklist J): sign-up, login with bcrypt hashes and the shared
//! verification cache, who may read/write which account, `kinto create-user`.

mod api_support;
use api_support::*;
use base64::Engine;
use serde_json::{json, Value};

fn accounts_app(db: Db) -> TestApp {
    TestApp::with(db, |s| {
        s.includes = vec!["kinto.plugins.accounts".into()];
        s.multiauth_policies = vec!["account".into(), "basicauth".into()];
        for (k, v) in [
            (
                "multiauth.policy.account.use",
                "kinto.plugins.accounts.AccountsPolicy",
            ),
            ("account_create_principals", "system.Everyone"),
            ("account_write_principals", "account:admin"),
            // Low cost for speed; `kinto_made_hash_logs_in` checks cost-12 Kinto hashes.
            ("account_bcrypt_cost", "4"),
        ] {
            s.raw.insert(k.into(), v.into());
        }
    })
}

/// A request with `Authorization: Basic user:password`.
fn as_user(method: &str, target: &str, user: &str, password: &str) -> Req {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Req::new(method, target).header("Authorization", &format!("Basic {token}"))
}

fn whoami(t: &mut TestApp, user: &str, password: &str) -> Value {
    let root = t
        .request(as_user("GET", "/v1/", user, password))
        .expect(200)
        .json();
    root.get("user")
        .map(|u| u["id"].clone())
        .unwrap_or(Value::Null)
}

fn sign_up(t: &mut TestApp, id: &str, password: &str) -> Value {
    t.request(
        Req::new("PUT", &format!("/v1/accounts/{id}"))
            .json(&json!({"data": {"password": password}})),
    )
    .expect(201)
    .json()
}

on_both_backends!(sign_up_and_login, |db| {
    let mut t = accounts_app(db);
    let root = t.call("GET", "/v1/", None, None).expect(200).json();
    assert_eq!(
        root["capabilities"]["accounts"]["validation_enabled"],
        json!(false)
    );
    let created = sign_up(&mut t, "x", "p");
    assert_eq!(created["permissions"]["write"], json!(["account:x"]));
    let hash = created["data"]["password"].as_str().unwrap().to_string();
    assert!(hash.starts_with("$2b$04$"), "{hash}");
    assert!(kinto::accounts::check_password("p", &hash));
    // Login, then again from the shared cache.
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    // A wrong password falls through to basicauth.
    let other = whoami(&mut t, "x", "wrong");
    assert!(other.as_str().unwrap().starts_with("basicauth:"), "{other}");
    // Anonymous PUT on an existing account: 401 with the policies' challenges.
    let r = t
        .request(Req::new("PUT", "/v1/accounts/x").json(&json!({"data": {"password": "z"}})))
        .expect(401);
    assert_eq!(r.headers_named("WWW-Authenticate").len(), 2);
});

on_both_backends!(password_changes_and_deletion, |db| {
    let mut t = accounts_app(db);
    sign_up(&mut t, "x", "p");
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    // PATCH without password keeps the hash.
    let r = t
        .request(as_user("PATCH", "/v1/accounts/x", "x", "p").json(&json!({"data": {"age": 3}})))
        .expect(200)
        .json();
    assert_eq!(r["data"]["age"], json!(3));
    assert_eq!(r["permissions"]["write"], json!(["account:x"]));
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    // PATCH with a new password: the old one stops working at once (cached or not).
    t.request(
        as_user("PATCH", "/v1/accounts/x", "x", "p").json(&json!({"data": {"password": "q"}})),
    )
    .expect(200);
    assert_ne!(whoami(&mut t, "x", "p"), json!("account:x"));
    assert_eq!(whoami(&mut t, "x", "q"), json!("account:x"));
    // PUT replaces it too.
    t.request(as_user("PUT", "/v1/accounts/x", "x", "q").json(&json!({"data": {"password": "r"}})))
        .expect(200);
    assert_ne!(whoami(&mut t, "x", "q"), json!("account:x"));
    assert_eq!(whoami(&mut t, "x", "r"), json!("account:x"));
    // Another worker process sees the same cache: delete through one, login through the other.
    let mut other = t.reopen(|_| {});
    assert_eq!(whoami(&mut other, "x", "r"), json!("account:x"));
    t.request(as_user("DELETE", "/v1/accounts/x", "x", "r"))
        .expect(200);
    assert_ne!(whoami(&mut other, "x", "r"), json!("account:x"));
    assert_ne!(whoami(&mut t, "x", "r"), json!("account:x"));
});

/// Calls made to the cache backend so far, as the Prometheus plugin's cache timers count them.
fn cache_calls(metrics: &kinto::metrics::Metrics) -> u64 {
    let text = metrics.render_prometheus().expect("prometheus enabled");
    text.lines()
        .filter(|l| l.starts_with("kinto_backend_cache_seconds_count{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

/// A verification remembered by the worker serves further requests without any cache call
/// (the PostgreSQL cache), until a password change or deletion invalidates it.
#[test]
fn remembered_verifications_skip_the_cache() {
    let mut t = accounts_app(Db::Postgres).reopen(|s| {
        s.includes.push("kinto.plugins.prometheus".into());
        // Well above the time these requests take, so a slow machine cannot expire entries.
        s.raw
            .insert("account_local_cache_seconds".into(), "60".into());
    });
    let metrics = kinto::metrics::Metrics::from_settings(&t.settings).unwrap();
    let storage = kinto::storage::connect(&t.settings).unwrap();
    let cache = kinto::cache::connect(&t.settings).unwrap();
    // Its own epoch: other tests of this binary moving the process's one cannot interfere.
    t.app = kinto::api::App::new(t.settings.clone(), storage, cache)
        .with_metrics(metrics.clone())
        .with_accounts_epoch(kinto::api::verified::Epoch::new());
    sign_up(&mut t, "x", "p");
    let before = cache_calls(&metrics);
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    let first = cache_calls(&metrics);
    assert!(
        first > before,
        "the first login reads and fills the shared cache"
    );
    for _ in 0..5 {
        assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
        t.request(as_user("GET", "/v1/accounts/x", "x", "p"))
            .expect(200);
    }
    assert_eq!(cache_calls(&metrics), first, "remembered: no cache call");
    // A wrong password is never served from memory.
    assert_ne!(whoami(&mut t, "x", "wrong"), json!("account:x"));
    // The password change invalidates the memory: the old password is refused at once.
    t.request(
        as_user("PATCH", "/v1/accounts/x", "x", "p").json(&json!({"data": {"password": "q"}})),
    )
    .expect(200);
    assert_ne!(whoami(&mut t, "x", "p"), json!("account:x"));
    assert_eq!(whoami(&mut t, "x", "q"), json!("account:x"));
    let changed = cache_calls(&metrics);
    assert_eq!(whoami(&mut t, "x", "q"), json!("account:x"));
    assert_eq!(cache_calls(&metrics), changed);
    // So does the deletion.
    t.request(as_user("DELETE", "/v1/accounts/x", "x", "q"))
        .expect(200);
    assert_ne!(whoami(&mut t, "x", "q"), json!("account:x"));
}

on_both_backends!(who_may_do_what, |db| {
    let mut t = accounts_app(db);
    sign_up(&mut t, "alice", "pa");
    sign_up(&mut t, "bob", "pb");
    sign_up(&mut t, "admin", "pz");
    // A user creating another account: ids must match.
    let r = t
        .request(
            as_user("PUT", "/v1/accounts/carol", "bob", "pb")
                .json(&json!({"data": {"password": "x"}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("data.id"));
    assert_eq!(
        r["details"][0]["description"],
        json!("Username and account ID do not match.")
    );
    // Another user's existing account is "missing" to a user: writing it fails on the id
    // (as the reference answers), reading or changing it is forbidden.
    for req in [
        as_user("PUT", "/v1/accounts/alice", "bob", "pb").json(&json!({"data": {"password": "x"}})),
        as_user("POST", "/v1/accounts", "bob", "pb")
            .json(&json!({"data": {"id": "alice", "password": "x"}})),
    ] {
        let r = t.request(req).expect(400).json();
        assert_eq!(
            r["message"],
            json!("data.id in body: Username and account ID do not match.")
        );
    }
    t.request(as_user("PATCH", "/v1/accounts/alice", "bob", "pb").json(&json!({"data": {"a": 1}})))
        .expect(403);
    t.request(as_user("DELETE", "/v1/accounts/carol", "bob", "pb"))
        .expect(403);
    let r = t
        .request(
            as_user("POST", "/v1/accounts", "bob", "pb").json(&json!({"data": {"password": "x"}})),
        )
        .expect(400)
        .json();
    assert_eq!(
        r["message"],
        json!("data.id in body: Accounts must have an ID.")
    );
    // Another user's account: 403; own: 200.
    t.request(as_user("GET", "/v1/accounts/alice", "bob", "pb"))
        .expect(403);
    let own = t
        .request(as_user("GET", "/v1/accounts/bob", "bob", "pb"))
        .expect(200)
        .json();
    assert_eq!(own["data"]["id"], json!("bob"));
    // Lists: anonymous refused with Kinto's odd body, users see their own account only.
    let r = t.call("GET", "/v1/accounts", None, None).expect(401);
    assert_eq!(
        r.json(),
        json!({"code": 401, "errno": 999, "error": "Cannot read accounts."})
    );
    assert!(r.header("WWW-Authenticate").is_none());
    let r = t.call("DELETE", "/v1/accounts", None, None).expect(401);
    assert_eq!(r.json()["error"], json!("Cannot read accounts."));
    let r = t
        .request(as_user("GET", "/v1/accounts", "bob", "pb"))
        .expect(200)
        .json();
    let ids: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["bob"]);
    // The administrator reaches any account.
    t.request(as_user("GET", "/v1/accounts/alice", "admin", "pz"))
        .expect(200);
    t.request(
        as_user("PATCH", "/v1/accounts/alice", "admin", "pz").json(&json!({"data": {"note": "x"}})),
    )
    .expect(200);
    t.request(
        as_user("PUT", "/v1/accounts/dave", "admin", "pz")
            .json(&json!({"data": {"password": "pd"}})),
    )
    .expect(201);
    assert_eq!(whoami(&mut t, "dave", "pd"), json!("account:dave"));
    t.request(as_user("DELETE", "/v1/accounts/alice", "admin", "pz"))
        .expect(200);
    assert_ne!(whoami(&mut t, "alice", "pa"), json!("account:alice"));
    // A user's DELETE /accounts deletes its own account only.
    let r = t
        .request(as_user("DELETE", "/v1/accounts", "bob", "pb"))
        .expect(200)
        .json();
    assert_eq!(r["data"].as_array().unwrap().len(), 1);
    assert_eq!(r["data"][0]["id"], json!("bob"));
    // The administrator's deletes all that is left.
    let r = t
        .request(as_user("DELETE", "/v1/accounts", "admin", "pz"))
        .expect(200)
        .json();
    let mut ids: Vec<&str> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["admin", "dave"]);
});

on_both_backends!(validation, |db| {
    let mut t = accounts_app(db);
    let r = t
        .call(
            "POST",
            "/v1/accounts",
            None,
            Some(json!({"data": {"password": "p"}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["details"][0]["name"], json!("data.id"));
    assert_eq!(r["message"], json!("data.id in body: Required"));
    let r = t
        .call("PUT", "/v1/accounts/z", None, Some(json!({"data": {}})))
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("data.password in body: Required"));
    let r = t
        .call(
            "PUT",
            "/v1/accounts/z",
            None,
            Some(json!({"data": {"password": 12}})),
        )
        .expect(400)
        .json();
    assert_eq!(
        r["message"],
        json!("data.password in body: 12 is not a string: {'password': ''}")
    );
    t.call(
        "PUT",
        "/v1/accounts/a.b@c+d",
        None,
        Some(json!({"data": {"password": "p"}})),
    )
    .expect(201);
    let r = t
        .call(
            "PUT",
            "/v1/accounts/bad%20id",
            None,
            Some(json!({"data": {"password": "p"}})),
        )
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("path: Invalid object id"));
    // POST with an id creates; the same POST again answers the existing account.
    let created = t
        .call(
            "POST",
            "/v1/accounts",
            None,
            Some(json!({"data": {"id": "eve", "password": "pe"}})),
        )
        .expect(201)
        .json();
    assert_eq!(created["data"]["id"], json!("eve"));
    let again = t
        .request(
            as_user("POST", "/v1/accounts", "eve", "pe")
                .json(&json!({"data": {"id": "eve", "password": "pe"}})),
        )
        .expect(200)
        .json();
    assert_eq!(again["data"]["password"], created["data"]["password"]);
});

on_both_backends!(create_user_command, |db| {
    let t = accounts_app(db);
    let backend = kinto::storage::connect(&t.settings).unwrap();
    kinto::accounts::create_user(&t.settings, &*backend, "cli", "secret").unwrap();
    let mut t = t.reopen(|_| {});
    assert_eq!(whoami(&mut t, "cli", "secret"), json!("account:cli"));
    let own = t
        .request(as_user("GET", "/v1/accounts/cli", "cli", "secret"))
        .expect(200)
        .json();
    assert_eq!(own["permissions"]["write"], json!(["account:cli"]));
    // Refusals.
    let err = kinto::accounts::create_user(&t.settings, &*backend, "bad id", "x").unwrap_err();
    assert!(err.contains("not a valid username"), "{err}");
    let mut settings = (*t.settings).clone();
    settings.includes.clear();
    let err = kinto::accounts::create_user(&settings, &*backend, "cli2", "x").unwrap_err();
    assert!(err.contains("accounts plugin"), "{err}");
});

/// A hash made by the reference Kinto logs in here (and so do its own accounts).
#[test]
fn kinto_made_hash_logs_in() {
    let t = accounts_app(Db::Sqlite);
    let backend = kinto::storage::connect(&t.settings).unwrap();
    let mut tx = backend.begin().unwrap();
    let mut account = serde_json::Map::new();
    account.insert("id".into(), json!("pt-alice"));
    account.insert(
        "password".into(),
        json!("$2b$12$08XLYqnJJXdsUivW75eoceUFqoyWUn9Lm.Pp9cLhZOV6/dfFQAjdS"),
    );
    tx.update(
        kinto::storage::ListRef {
            resource_name: "account",
            parent_id: "pt-alice",
        },
        "pt-alice",
        account,
    )
    .unwrap();
    tx.commit().unwrap();
    let mut t = t.reopen(|_| {});
    assert_eq!(whoami(&mut t, "pt-alice", "pa"), json!("account:pt-alice"));
    assert_ne!(whoami(&mut t, "pt-alice", "pb"), json!("account:pt-alice"));
}

/// The plugin's startup checks (the server refuses such configurations).
#[test]
fn startup_checks() {
    let t = accounts_app(Db::Sqlite);
    let ok = (*t.settings).clone();
    assert_eq!(kinto::accounts::check_settings(&ok), Ok(()));
    let mut missing = ok.clone();
    missing.raw.remove("multiauth.policy.account.use");
    assert!(kinto::accounts::check_settings(&missing)
        .unwrap_err()
        .contains("Account policy missing"));
    let mut order = ok.clone();
    order.multiauth_policies = vec!["basicauth".into(), "account".into()];
    assert!(kinto::accounts::check_settings(&order)
        .unwrap_err()
        .contains("'basicauth' should not be mentioned before 'account'"));
    let mut creators = ok.clone();
    creators.raw.insert(
        "account_create_principals".into(),
        "system.Everyone account:boss".into(),
    );
    assert!(kinto::accounts::check_settings(&creators)
        .unwrap_err()
        .contains("account:boss"));
    let mut without_plugin = missing;
    without_plugin.includes.clear();
    assert_eq!(kinto::accounts::check_settings(&without_plugin), Ok(()));
}

on_both_backends!(user_data_deletion_ends_the_account_login, |db| {
    // Deleting a principal's data deletes its account: its password stops working at once, as
    // after `DELETE /accounts/{id}` (the remembered and shared verifications go too).
    let mut t = accounts_app(db).reopen(|s| {
        s.raw
            .insert("user-data_delete_principals".into(), "account:admin".into());
    });
    sign_up(&mut t, "x", "p");
    sign_up(&mut t, "admin", "pz");
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    t.request(as_user(
        "DELETE",
        "/v1/__user_data__/account:x",
        "admin",
        "pz",
    ))
    .expect(200);
    assert_eq!(
        t.request(as_user("GET", "/v1/accounts/x", "admin", "pz"))
            .status,
        404
    );
    assert_ne!(whoami(&mut t, "x", "p"), json!("account:x"));
});
