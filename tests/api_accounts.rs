//! The accounts plugin and policy (section 5.3, checklist group J).

mod api_support;
use api_support::*;
use base64::Engine;
use serde_json::json;

fn accounts_app(db: Db) -> TestApp {
    TestApp::with(db, |s| {
        s.includes = vec!["kinto.plugins.accounts".into()];
        s.multiauth_policies = vec!["account".into(), "basicauth".into()];
        s.raw.insert(
            "multiauth.policy.account.use".into(),
            "kinto.plugins.accounts.AccountsPolicy".into(),
        );
        s.raw
            .insert("account_create_principals".into(), "system.Everyone".into());
        s.raw
            .insert("account_write_principals".into(), "account:admin".into());
        // Kinto's cost 12 takes about a second per hash on a loaded machine.
        s.raw.insert("account_bcrypt_cost".into(), "4".into());
    })
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn as_user(
    t: &mut TestApp,
    method: &str,
    path: &str,
    user: &str,
    password: &str,
    body: Option<serde_json::Value>,
) -> Resp {
    let mut req = Req::new(method, path).header("Authorization", &basic(user, password));
    if let Some(body) = body {
        req = req.json(&body);
    }
    t.request(req)
}

fn whoami(t: &mut TestApp, user: &str, password: &str) -> serde_json::Value {
    as_user(t, "GET", "/v1/", user, password, None)
        .expect(200)
        .json()["user"]["id"]
        .clone()
}

on_both_backends!(account_life_cycle, |db| {
    let mut t = accounts_app(db);
    let root = t.call("GET", "/v1/", None, None).json();
    assert_eq!(
        root["capabilities"]["accounts"]["validation_enabled"],
        json!(false)
    );
    let r = t
        .call(
            "PUT",
            "/v1/accounts/x",
            None,
            Some(json!({"data": {"password": "p"}})),
        )
        .expect(201)
        .json();
    assert_eq!(r["permissions"]["write"], json!(["account:x"]));
    assert!(r["data"]["password"].as_str().unwrap().starts_with("$2b$"));
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    // Cached verification is used the second time.
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    let fallback = whoami(&mut t, "x", "wrong");
    assert!(fallback.as_str().unwrap().starts_with("basicauth:"));
    // Password change: new works, old does not (for the account policy).
    as_user(
        &mut t,
        "PATCH",
        "/v1/accounts/x",
        "x",
        "p",
        Some(json!({"data": {"password": "q"}})),
    )
    .expect(200);
    assert_eq!(whoami(&mut t, "x", "q"), json!("account:x"));
    assert!(whoami(&mut t, "x", "p")
        .as_str()
        .unwrap()
        .starts_with("basicauth:"));
    // Deletion: no longer authenticates.
    as_user(&mut t, "DELETE", "/v1/accounts/x", "x", "q", None).expect(200);
    assert!(whoami(&mut t, "x", "q")
        .as_str()
        .unwrap()
        .starts_with("basicauth:"));
});

#[test]
fn account_rules() {
    let mut t = accounts_app(Db::Sqlite);
    t.call(
        "PUT",
        "/v1/accounts/bob",
        None,
        Some(json!({"data": {"password": "b"}})),
    )
    .expect(201);
    let r = as_user(
        &mut t,
        "PUT",
        "/v1/accounts/other",
        "bob",
        "b",
        Some(json!({"data": {"password": "o"}})),
    )
    .expect(400)
    .json();
    assert_eq!(
        r["message"],
        json!("data.id in body: Username and account ID do not match.")
    );
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
    let r = t
        .call("PUT", "/v1/accounts/z", None, Some(json!({"data": {}})))
        .expect(400)
        .json();
    assert_eq!(r["message"], json!("data.password in body: Required"));
    let r = t.call("GET", "/v1/accounts", None, None).expect(401);
    assert_eq!(
        r.json(),
        json!({"code": 401, "errno": 999, "error": "Cannot read accounts."})
    );
    t.call(
        "PUT",
        "/v1/accounts/a.b@c+d",
        None,
        Some(json!({"data": {"password": "p"}})),
    )
    .expect(201);
    t.call(
        "PUT",
        "/v1/accounts/bad%20id",
        None,
        Some(json!({"data": {"password": "p"}})),
    )
    .expect(400);
    t.call(
        "PUT",
        "/v1/accounts/bob",
        None,
        Some(json!({"data": {"password": "x"}})),
    )
    .expect(401);
    as_user(&mut t, "GET", "/v1/accounts/bob", "a.b@c+d", "p", None).expect(403);
    let list = as_user(&mut t, "GET", "/v1/accounts", "bob", "b", None)
        .expect(200)
        .json();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bob"], "users list only their own account");
    t.call("DELETE", "/v1/accounts", None, None).expect(401);
}

#[test]
fn administrators_manage_every_account() {
    let mut t = accounts_app(Db::Sqlite);
    for id in ["bob", "carol"] {
        t.call(
            "PUT",
            &format!("/v1/accounts/{id}"),
            None,
            Some(json!({"data": {"password": "b"}})),
        )
        .expect(201);
    }
    // Administrators manage every account.
    t.call(
        "PUT",
        "/v1/accounts/admin",
        None,
        Some(json!({"data": {"password": "a"}})),
    )
    .expect(201);
    as_user(&mut t, "GET", "/v1/accounts/bob", "admin", "a", None).expect(200);
    as_user(
        &mut t,
        "PATCH",
        "/v1/accounts/bob",
        "admin",
        "a",
        Some(json!({"data": {"age": 3}})),
    )
    .expect(200);
    let r = as_user(&mut t, "DELETE", "/v1/accounts", "admin", "a", None)
        .expect(200)
        .json();
    assert_eq!(
        r["data"].as_array().unwrap().len(),
        3,
        "admin, bob and carol"
    );
}

#[test]
fn default_bcrypt_cost_is_kintos() {
    let t = TestApp::new();
    assert_eq!(kinto::api::accounts::bcrypt_cost(&t.settings), 12);
    let t = accounts_app(Db::Sqlite);
    assert_eq!(kinto::api::accounts::bcrypt_cost(&t.settings), 4);
}

#[test]
fn verification_cached_in_shared_cache() {
    let mut t = accounts_app(Db::Sqlite);
    t.call(
        "PUT",
        "/v1/accounts/x",
        None,
        Some(json!({"data": {"password": "p"}})),
    )
    .expect(201);
    let cache = kinto::cache::connect(&t.settings).unwrap();
    let key = kinto::api::accounts::cache_key("test-secret", "x");
    assert_eq!(cache.get(&key).unwrap(), None);
    assert_eq!(whoami(&mut t, "x", "p"), json!("account:x"));
    let expected = kinto::api::accounts::cache_value(&key, "p");
    assert_eq!(cache.get(&key).unwrap(), Some(json!(expected)));
    assert!(cache.ttl(&key).unwrap() > 0);
    // Another worker's password change invalidates the entry for everyone.
    as_user(
        &mut t,
        "PATCH",
        "/v1/accounts/x",
        "x",
        "p",
        Some(json!({"data": {"password": "q"}})),
    )
    .expect(200);
    assert_eq!(cache.get(&key).unwrap(), None);
}
