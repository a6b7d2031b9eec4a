//! Routing, utility endpoints, service signals and CORS (checklist groups A, I, M).

mod api_support;
use api_support::*;
use serde_json::json;

const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; ";

#[test]
fn root_view_fields_anonymous() {
    let mut t = TestApp::new();
    let r = t.call("GET", "/v1/", None, None).expect(200);
    let body = r.json();
    // Kinto's member order, in compact JSON (the body is spliced from parts serialized once).
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "project_name",
            "project_version",
            "http_api_version",
            "project_docs",
            "url",
            "config",
            "settings",
            "capabilities",
        ]
    );
    assert_eq!(serde_json::to_vec(&body).unwrap(), r.body);
    assert_eq!(body["http_api_version"], json!("1.23"));
    assert_eq!(body["url"], json!("http://localhost:8888/v1/"));
    assert_eq!(
        body["settings"],
        json!({"batch_max_requests": 25, "readonly": false, "explicit_permissions": true})
    );
    assert!(body.get("user").is_none());
    assert!(body.get("eos").is_none());
    assert_eq!(
        body["capabilities"]["basicauth"]["url"],
        json!("http://kinto.readthedocs.io/en/stable/api/1.x/authentication.html")
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("Content-Security-Policy"), Some(CSP));
    assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
    assert!(r.header("Cache-Control").is_none());
}

#[test]
fn root_view_authenticated_user() {
    let mut t = TestApp::new();
    let r = t.call("GET", "/v1/", Some("someone"), None).expect(200);
    let body = r.json();
    assert_eq!(
        body.as_object().unwrap().keys().next_back().unwrap(),
        "user"
    );
    assert_eq!(serde_json::to_vec(&body).unwrap(), r.body);
    let id = t.user_id("someone");
    assert_eq!(body["user"]["id"], json!(id));
    let principals: Vec<String> =
        serde_json::from_value(body["user"]["principals"].clone()).unwrap();
    for p in [id.as_str(), "system.Everyone", "system.Authenticated"] {
        assert!(principals.iter().any(|x| x == p), "missing {p}");
    }
}

#[test]
fn basicauth_user_id_matches_reference_example() {
    let mut t = TestApp::new();
    let body = t.call("GET", "/v1/", Some("someone"), None).json();
    // Reference example of section 5.2: secret `test-secret`, credentials `someone:pw`.
    assert_eq!(
        body["user"]["id"],
        json!("basicauth:fddfe07be819b39d41c2126e60930c6750f2d791485b1261b508aa783b1a4d3f")
    );
}

#[test]
fn root_view_eos_readonly_scheme_host() {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.eos = Some("2999-01-01".into());
        s.readonly = true;
        s.http_scheme = Some("https".into());
        s.http_host = Some("kinto.example.com:8443".into());
    });
    let r = t.call("GET", "/v1/", None, None).expect(200);
    let body = r.json();
    assert_eq!(body["eos"], json!("2999-01-01"));
    assert_eq!(body["url"], json!("https://kinto.example.com:8443/v1/"));
    assert_eq!(body["settings"]["readonly"], json!(true));
    assert_eq!(r.header("Cache-Control"), Some("max-age=86400"));
    let alert: serde_json::Value = serde_json::from_str(r.header("Alert").unwrap()).unwrap();
    assert_eq!(alert["code"], json!("soft-eol"));
    assert_eq!(alert["url"], json!("https://kinto.readthedocs.io/"));
}

#[test]
fn hard_end_of_service() {
    let mut t = TestApp::with(Db::Sqlite, |s| s.eos = Some("2001-01-01".into()));
    for path in ["/v1/", "/v1/__heartbeat__", "/v1/buckets"] {
        let r = t.call("GET", path, None, None).expect(410);
        assert_eq!(r.json()["errno"], json!(202));
        let alert: serde_json::Value = serde_json::from_str(r.header("Alert").unwrap()).unwrap();
        assert_eq!(alert["code"], json!("hard-eol"));
    }
}

#[test]
fn head_root_has_the_headers_of_get() {
    let mut t = TestApp::new();
    let head = t.call("HEAD", "/v1/", None, None).expect(200);
    let get = t.call("GET", "/v1/", None, None).expect(200);
    // The worker sends the would-be Content-Length and no body.
    assert_eq!(head.body.len(), get.body.len());
    assert_eq!(head.header("Content-Type"), get.header("Content-Type"));
}

#[test]
fn redirects() {
    let mut t = TestApp::new();
    let r = t.call("GET", "/v1", None, None).expect(307);
    assert_eq!(r.header("Location"), Some("http://localhost:8888/v1/"));
    assert_eq!(r.header("Content-Security-Policy"), Some(CSP));
    let r = t.call("GET", "/v1/buckets/?a=1", None, None).expect(307);
    assert_eq!(
        r.header("Location"),
        Some("http://localhost:8888/v1/buckets?a=1")
    );
    assert_eq!(r.header("Cache-Control"), Some("max-age=3600"));
    let r = t.call("GET", "/buckets", None, None).expect(307);
    assert_eq!(
        r.header("Location"),
        Some("http://localhost:8888/v1/buckets")
    );
    assert!(r.header("Cache-Control").is_none());
    assert!(r.header("Access-Control-Expose-Headers").is_some());
}

#[test]
fn redirect_ttl_settings() {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.trailing_slash_redirect_ttl_seconds = 0;
        s.version_prefix_redirect_ttl_seconds = 10;
    });
    let r = t.call("GET", "/v1/buckets/", None, None).expect(307);
    assert_eq!(
        r.header("Cache-Control"),
        Some("max-age=0, must-revalidate, no-cache, no-store")
    );
    assert_eq!(r.header("Pragma"), Some("no-cache"));
    let r = t.call("GET", "/buckets", None, None).expect(307);
    assert_eq!(r.header("Cache-Control"), Some("max-age=10"));
}

#[test]
fn not_found_kinds() {
    let mut t = TestApp::new();
    let r = t.call("GET", "/v2/buckets", None, None).expect(404);
    assert_eq!(
        r.json(),
        json!({"code":404,"errno":116,"error":"Not Found","message":"The requested API version is not available on this server."})
    );
    assert_eq!(r.header("Content-Security-Policy"), Some(CSP));
    let r = t.call("GET", "/v1/does-not-exist", None, None).expect(404);
    assert_eq!(
        r.json(),
        json!({"code":404,"errno":111,"error":"Not Found","message":"The resource you are looking for could not be found."})
    );
}

#[test]
fn redirects_disabled() {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.trailing_slash_redirect_enabled = false;
        s.version_prefix_redirect_enabled = false;
    });
    assert_eq!(
        t.call("GET", "/v1/buckets/", None, None).expect(404).json()["errno"],
        json!(111)
    );
    assert_eq!(
        t.call("GET", "/buckets", None, None).expect(404).json()["errno"],
        json!(116)
    );
}

#[test]
fn heartbeats_and_static_endpoints() {
    let mut t = TestApp::new();
    let r = t.call("GET", "/v1/__heartbeat__", None, None).expect(200);
    assert_eq!(
        r.json(),
        json!({"storage": true, "permission": true, "cache": true})
    );
    assert_eq!(
        t.call("GET", "/v1/__lbheartbeat__", None, None)
            .expect(200)
            .json(),
        json!({})
    );
    let api = t.call("GET", "/v1/__api__", None, None).expect(200).json();
    assert_eq!(api["swagger"], json!("2.0"));
    assert_eq!(api["basePath"], json!("/v1"));
    assert!(t
        .call("GET", "/v1/contribute.json", None, None)
        .expect(200)
        .json()["name"]
        .is_string());
    let r = t.call("POST", "/v1/", None, None).expect(405);
    assert_eq!(r.json()["errno"], json!(115));
    assert!(r.header("Allow").is_some());
}

#[test]
fn version_file_served_verbatim() {
    let dir = std::env::temp_dir().join(format!("kinto_version_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("version.json");
    let content = json!({"name":"kinto","version":"1.2.3","commit":"abc","source":"x","build":"y"});
    std::fs::write(&path, content.to_string()).unwrap();
    let p = path.display().to_string();
    let mut t = TestApp::with(Db::Sqlite, move |s| s.version_json_path = p);
    assert_eq!(
        t.call("GET", "/v1/__version__", None, None)
            .expect(200)
            .json(),
        content
    );
    std::fs::remove_dir_all(dir).unwrap();
    // A missing file answers like the reference: 500 errno 999 with `info`.
    let mut t = TestApp::new();
    let r = t.call("GET", "/v1/__version__", None, None).expect(500);
    assert_eq!(r.json()["errno"], json!(999));
    assert_eq!(
        r.json()["info"],
        json!("https://github.com/Kinto/kinto/issues/")
    );
    assert!(r.header("Retry-After").is_none());
}

#[test]
fn error_bodies_exact() {
    let mut t = TestApp::new();
    let r = t.call("GET", "/v1/buckets/nope", None, None).expect(401);
    assert_eq!(
        r.json(),
        json!({"code":401,"errno":104,"error":"Unauthorized","message":"Please authenticate yourself to use this endpoint."})
    );
    assert_eq!(
        r.headers_named("WWW-Authenticate"),
        vec!["Basic realm=\"Realm\""]
    );
    let r = t
        .call("GET", "/v1/buckets/nope", Some("bob"), None)
        .expect(403);
    assert_eq!(
        r.json(),
        json!({"code":403,"errno":121,"error":"Forbidden","message":"This user cannot access this resource."})
    );
    let r = t.call("PUT", "/v1/buckets", Some("bob"), None).expect(405);
    assert_eq!(
        r.json(),
        json!({"code":405,"errno":115,"error":"Method Not Allowed","message":"Method not allowed on this endpoint."})
    );
    assert_eq!(r.header("Allow"), Some("HEAD, GET, POST, DELETE, OPTIONS"));
    let r = t
        .call("POST", "/v1/buckets/b1", Some("bob"), None)
        .expect(405);
    assert_eq!(
        r.header("Allow"),
        Some("GET, HEAD, PUT, PATCH, DELETE, OPTIONS")
    );
}

#[test]
fn worker_errors_use_kinto_bodies() {
    use worker::Handler;
    let mut t = TestApp::new();
    let r = t.app.error_response(500);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["errno"], json!(999));
    assert_eq!(
        body["info"],
        json!("https://github.com/Kinto/kinto/issues/")
    );
    let r = t.app.error_response(413);
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (body["code"].clone(), body["errno"].clone()),
        (json!(413), json!(113))
    );
}

#[test]
fn backoff_on_every_response() {
    let mut t = TestApp::with(Db::Sqlite, |s| s.backoff = Some("10".into()));
    assert_eq!(
        t.call("GET", "/v1/", None, None)
            .expect(200)
            .header("Backoff"),
        Some("10")
    );
    assert_eq!(
        t.call("GET", "/v1/buckets/x", Some("u"), None)
            .expect(403)
            .header("Backoff"),
        Some("10")
    );
    assert_eq!(
        t.call("PUT", "/v1/buckets", Some("u"), None)
            .expect(405)
            .header("Backoff"),
        Some("10")
    );
}

#[test]
fn backoff_percentage_is_partial() {
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.backoff = Some("10".into());
        s.backoff_percentage = Some(50);
    });
    let with = (0..100)
        .filter(|_| {
            t.call("GET", "/v1/__lbheartbeat__", None, None)
                .header("Backoff")
                .is_some()
        })
        .count();
    assert!(
        (15..=85).contains(&with),
        "{with} of 100 responses had Backoff"
    );
}

#[test]
fn readonly_mode() {
    let mut writable = TestApp::new();
    writable
        .call("PUT", "/v1/buckets/b", Some("u"), None)
        .expect(201);
    writable
        .call("GET", "/v1/buckets", Some("u"), None)
        .expect(200);
    let mut t = writable.reopen(|s| s.readonly = true);
    t.call("GET", "/v1/buckets/b", Some("u"), None).expect(200);
    let r = t
        .call("PUT", "/v1/buckets/b", Some("u"), Some(json!({})))
        .expect(405);
    assert!(r.header("Allow").is_none());
    t.call("POST", "/v1/batch", Some("u"), Some(json!({})))
        .expect(405);
    t.call("GET", "/v1/buckets", Some("u"), None).expect(200);
}

#[test]
fn cors_actual_requests() {
    let mut t = TestApp::new();
    let r = t
        .request(Req::new("GET", "/v1/").header("Origin", "http://x.org"))
        .expect(200);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let mut t = TestApp::with(Db::Sqlite, |s| {
        s.cors_origins = vec!["http://allowed.org".into()]
    });
    let r = t
        .request(Req::new("GET", "/v1/").header("Origin", "http://allowed.org"))
        .expect(200);
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("http://allowed.org")
    );
    let r = t
        .request(Req::new("GET", "/v1/").header("Origin", "http://evil.org"))
        .expect(400);
    assert_eq!(
        r.json()["message"],
        json!("Origin in header: http://evil.org not allowed")
    );
}

#[test]
fn cors_preflight() {
    let mut t = TestApp::new();
    let r = t
        .request(
            Req::new("OPTIONS", "/v1/buckets")
                .header("Origin", "http://x.org")
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "X-Custom, Authorization"),
        )
        .expect(200);
    assert!(r
        .header("Access-Control-Allow-Methods")
        .unwrap()
        .contains("POST"));
    assert_eq!(r.header("Access-Control-Max-Age"), Some("3600"));
    let allowed = r.header("Access-Control-Allow-Headers").unwrap();
    assert!(allowed.contains("X-Custom") && allowed.contains("Authorization"));
    assert_eq!(r.json(), serde_json::Value::Null);
    let r = t
        .request(Req::new("OPTIONS", "/v1/buckets").header("Origin", "http://x.org"))
        .expect(400);
    assert_eq!(
        r.json()["message"],
        json!("Access-Control-Request-Method in header: this header is mandatory")
    );
    let r = t
        .request(
            Req::new("OPTIONS", "/v1/buckets")
                .header("Origin", "http://x.org")
                .header("Access-Control-Request-Method", "PUT"),
        )
        .expect(400);
    assert_eq!(
        r.json()["message"],
        json!("Access-Control-Request-Method in header: Method not allowed")
    );
}

#[test]
fn exposed_headers_per_endpoint() {
    let mut t = TestApp::new();
    let get = t.call("GET", "/v1/buckets", Some("u"), None).expect(200);
    let exposed = get
        .header("Access-Control-Expose-Headers")
        .unwrap()
        .to_string();
    for h in [
        "Next-Page",
        "ETag",
        "Last-Modified",
        "Cache-Control",
        "Backoff",
    ] {
        assert!(exposed.contains(h), "{h} not in {exposed}");
    }
    assert!(!exposed.contains("Total-Objects"));
    let head = t.call("HEAD", "/v1/buckets", Some("u"), None).expect(200);
    assert!(head
        .header("Access-Control-Expose-Headers")
        .unwrap()
        .contains("Total-Objects"));
    let root = t.call("GET", "/v1/", None, None);
    assert!(!root
        .header("Access-Control-Expose-Headers")
        .unwrap()
        .contains("ETag"));
}
