//! Utility endpoints (section 1.3-1.4): the root "hello" view, `__heartbeat__`, `__version__`,
//! `__api__` and `contribute.json`.

use super::http::{cache_headers, json, json_bytes};
use super::{Config, Ctx};
use crate::cache::Cache;
use crate::error::{ApiError, ApiResult};
use crate::settings::Settings;
use crate::storage::{Backend, Transaction};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use worker::Response;

/// `GET /v1/`: project, settings subset, capabilities and, when authenticated, the user.
pub fn hello(ctx: &mut Ctx, tx: Option<&mut dyn Transaction>) -> ApiResult<Response> {
    let cfg = ctx.cfg;
    let settings = &cfg.settings;
    let user = match (ctx.user.clone(), tx) {
        (Some(user), Some(tx)) => {
            let principals: Vec<String> = ctx.principals(tx)?.into_iter().collect();
            let mut user_info = json!({"id": user.id, "principals": principals});
            if cfg.default_bucket {
                user_info["bucket"] = json!(super::default_bucket::bucket_id(
                    &settings.default_bucket_hmac_secret,
                    &user.id
                ));
            }
            Some(user_info)
        }
        _ => None,
    };
    let url = format!("{}/v1/", ctx.base_url());
    let mut response = json_bytes(200, cfg.hello.body(&url, user.as_ref()));
    if settings.readonly {
        response
            .headers
            .extend(cache_headers(settings.root_cache_expires_seconds));
    }
    Ok(response)
}

/// The root view's body serialized once around its two per-request members, `url` and `user`:
/// the view is the most requested one and everything else in it is fixed by the settings.
#[derive(Debug, Default)]
pub struct HelloBody {
    /// `{"project_name":…,"project_docs":…` (the members before `url`, no closing brace).
    before_url: Vec<u8>,
    /// `,"config":…,"capabilities":{…}` (the members after `url`, before `user`).
    after_url: Vec<u8>,
}

impl HelloBody {
    pub fn new(cfg: &Config) -> Self {
        let settings = &cfg.settings;
        let mut head = Map::new();
        head.insert("project_name".into(), json!(settings.project_name));
        head.insert("project_version".into(), json!(settings.project_version));
        head.insert("http_api_version".into(), json!(settings.http_api_version));
        head.insert("project_docs".into(), json!(settings.project_docs));
        let mut tail = Map::new();
        tail.insert("config".into(), cfg.hello_config.clone());
        if let Some(eos) = &settings.eos {
            tail.insert("eos".into(), json!(eos));
        }
        tail.insert(
            "settings".into(),
            json!({
                "batch_max_requests": settings.batch_max_requests,
                "readonly": settings.readonly,
                "explicit_permissions": settings.explicit_permissions,
            }),
        );
        tail.insert("capabilities".into(), capabilities(cfg));
        let mut before_url = Value::Object(head).to_string().into_bytes();
        before_url.pop();
        let tail = Value::Object(tail).to_string();
        let after_url = format!(",{}", &tail[1..tail.len() - 1]).into_bytes();
        HelloBody {
            before_url,
            after_url,
        }
    }

    /// The JSON body, members in Kinto's order.
    pub fn body(&self, url: &str, user: Option<&Value>) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.before_url.len() + self.after_url.len() + 256);
        out.extend_from_slice(&self.before_url);
        out.extend_from_slice(b",\"url\":");
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, url);
        out.extend_from_slice(&self.after_url);
        if let Some(user) = user {
            out.extend_from_slice(b",\"user\":");
            let _ = serde_json::to_writer(&mut out, user);
        }
        out.push(b'}');
        out
    }
}

fn capabilities(cfg: &Config) -> Value {
    let mut caps = Map::new();
    if cfg.auth.has_basicauth() {
        caps.insert(
            "basicauth".into(),
            json!({
                "description": "Very basic authentication sessions. Not for production use.",
                "url": "http://kinto.readthedocs.io/en/stable/api/1.x/authentication.html",
            }),
        );
    }
    if cfg.routing.accounts_enabled {
        caps.insert(
            "accounts".into(),
            json!({
                "description": "Manage user accounts.",
                "url": "https://kinto.readthedocs.io/en/latest/api/1.x/accounts.html",
                "validation_enabled": false,
            }),
        );
    }
    if cfg.default_bucket {
        caps.insert(
            "default_bucket".into(),
            json!({
                "description": "The default bucket is an alias for a personal bucket where collections are created implicitly.",
                "url": "https://kinto.readthedocs.io/en/latest/api/1.x/buckets.html#personal-bucket-default",
            }),
        );
    }
    if cfg.history.enabled {
        caps.insert(
            "history".into(),
            json!({
                "description": "Track changes on data.",
                "url": "http://kinto.readthedocs.io/en/latest/api/1.x/history.html",
            }),
        );
    }
    if cfg.settings.experimental_collection_schema_validation {
        caps.insert(
            "schema".into(),
            json!({
                "description": "Validates collection records with JSON schemas.",
                "url": "https://kinto.readthedocs.io/en/latest/api/1.x/collections.html#collection-json-schema",
            }),
        );
    }
    if cfg.routing.permissions_enabled {
        caps.insert(
            "permissions_endpoint".into(),
            json!({
                "description": "The permissions endpoint can be used to list all user objects permissions.",
                "url": "https://kinto.readthedocs.io/en/latest/configuration/settings.html#activating-the-permissions-endpoint",
            }),
        );
    }
    if cfg.routing.counters_enabled {
        caps.insert("counters_endpoint".into(), super::counters::capability());
    }
    if cfg.routing.flush_enabled {
        caps.insert(
            "flush_endpoint".into(),
            json!({
                "description": "The __flush__ endpoint can be used to remove all data from all backends.",
                "url": "https://kinto.readthedocs.io/en/latest/api/1.x/flush.html",
            }),
        );
    }
    Value::Object(caps)
}

/// The root view's `config`: path, SHA-256 and modification time of the ini file, or null.
pub fn config_summary(settings: &Settings) -> Value {
    let path = std::env::var("KINTO_INI")
        .ok()
        .unwrap_or_else(|| settings.ini_path.display().to_string());
    let Ok(bytes) = std::fs::read(&path) else {
        return Value::Null;
    };
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| local_iso(d.as_secs() as i64, d.subsec_micros()))
        .unwrap_or_default();
    json!({
        "path": path,
        "hash": hex::encode(Sha256::digest(&bytes)),
        "modified": modified,
    })
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` in local time, without zone (Python's naive `isoformat()`).
fn local_iso(epoch_secs: i64, micros: u32) -> String {
    let local = epoch_secs + super::signals::utc_offset_seconds(epoch_secs);
    let days = local.div_euclid(86400);
    let secs = local.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Reads the version file once; `None` when missing or not JSON.
pub fn read_version_file(path: &str) -> Option<Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `GET /v1/__version__`. A missing file answers 500 like the reference.
pub fn version(cfg: &Config) -> ApiResult<Response> {
    match &cfg.version_file {
        Some(content) => Ok(json(200, content)),
        None => Err(ApiError::Internal(format!(
            "version file {:?} not found",
            cfg.settings.version_json_path
        ))),
    }
}

/// `GET /v1/__heartbeat__`: the checks run concurrently, each bounded by
/// `heartbeat_timeout_seconds`; a check that does not answer in time counts as failed.
pub fn heartbeat(cfg: &Config, probes: &Probes) -> Response {
    let timeout = Duration::from_secs(cfg.settings.heartbeat_timeout_seconds.max(1));
    let deadline = std::time::Instant::now() + timeout;
    // Both checks start before either answer is awaited: they run side by side.
    let storage = probes.storage.start();
    let cache = probes.cache.start();
    let storage = Probe::wait(storage, deadline);
    let cache = Probe::wait(cache, deadline);
    let mut results = Map::new();
    results.insert("storage".into(), Value::Bool(storage));
    results.insert("permission".into(), Value::Bool(storage));
    results.insert("cache".into(), Value::Bool(cache));
    let healthy = storage && cache;
    json(if healthy { 200 } else { 503 }, &Value::Object(results))
}

/// The worker's backend checks for `__heartbeat__` (the permission backend shares the storage's
/// connection, so one check serves both).
pub struct Probes {
    storage: Probe,
    cache: Probe,
}

impl Probes {
    pub fn new(backend: Arc<dyn Backend>, cache: Arc<dyn Cache>) -> Probes {
        Probes {
            storage: Probe::new(Arc::new(move || backend.ping())),
            cache: Probe::new(Arc::new(move || cache.ping())),
        }
    }
}

type Check = Arc<dyn Fn() -> bool + Send + Sync>;

/// One backend check run by a thread kept for it (started at the first check, so in the worker
/// after fork), so that a hung backend makes the check time out, never the request, without a
/// thread spawned per heartbeat. Checks asked while one runs share its result.
struct Probe {
    check: Check,
    queue: std::sync::Mutex<Option<mpsc::Sender<mpsc::Sender<bool>>>>,
}

impl Probe {
    fn new(check: Check) -> Probe {
        Probe {
            check,
            queue: std::sync::Mutex::new(None),
        }
    }

    /// Asks for a check; the answer arrives on the returned receiver (none if it cannot run).
    fn start(&self) -> Option<mpsc::Receiver<bool>> {
        let (reply, answer) = mpsc::channel();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let sender = queue.get_or_insert_with(|| {
            let (sender, requests) = mpsc::channel::<mpsc::Sender<bool>>();
            let check = Arc::clone(&self.check);
            // Should the spawn fail, the closure and its receiver are dropped: the send below
            // fails and the check reports a failure.
            let _ = std::thread::Builder::new()
                .name("heartbeat".into())
                .spawn(move || {
                    while let Ok(first) = requests.recv() {
                        let waiting: Vec<_> =
                            std::iter::once(first).chain(requests.try_iter()).collect();
                        let ok = check();
                        for reply in waiting {
                            let _ = reply.send(ok);
                        }
                    }
                });
            sender
        });
        if sender.send(reply).is_err() {
            // The thread could not start or is gone: try a new one next time.
            *queue = None;
            return None;
        }
        Some(answer)
    }

    fn wait(answer: Option<mpsc::Receiver<bool>>, deadline: std::time::Instant) -> bool {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        answer.is_some_and(|a| a.recv_timeout(left).unwrap_or(false))
    }
}

/// `GET /v1/__api__`: an OpenAPI 2.0 description of the resource endpoints.
pub fn openapi(ctx: &Ctx) -> Response {
    let settings = &ctx.cfg.settings;
    let host = ctx
        .base_url()
        .split_once("://")
        .map(|(_, h)| h.to_string())
        .unwrap_or_default();
    let mut paths = Map::new();
    let object_ops = json!({"get": {"responses": {"200": {"description": "The object"}}},
        "put": {"responses": {"200": {"description": "Replaced"}, "201": {"description": "Created"}}},
        "patch": {"responses": {"200": {"description": "Modified"}}},
        "delete": {"responses": {"200": {"description": "Deleted"}}}});
    let plural_ops = json!({"get": {"responses": {"200": {"description": "The list"}}},
        "post": {"responses": {"201": {"description": "Created"}, "200": {"description": "Existing"}}},
        "delete": {"responses": {"200": {"description": "Deleted"}}}});
    for (plural, object) in [
        ("/buckets", "/buckets/{bucket_id}"),
        (
            "/buckets/{bucket_id}/collections",
            "/buckets/{bucket_id}/collections/{collection_id}",
        ),
        (
            "/buckets/{bucket_id}/groups",
            "/buckets/{bucket_id}/groups/{group_id}",
        ),
        (
            "/buckets/{bucket_id}/collections/{collection_id}/records",
            "/buckets/{bucket_id}/collections/{collection_id}/records/{record_id}",
        ),
    ] {
        paths.insert(plural.into(), plural_ops.clone());
        paths.insert(object.into(), object_ops.clone());
    }
    for utility in ["/", "/__heartbeat__", "/__lbheartbeat__", "/__version__"] {
        paths.insert(
            utility.into(),
            json!({"get": {"responses": {"200": {"description": "OK"}}}}),
        );
    }
    let mut security = Map::new();
    if ctx.cfg.auth.has_basicauth() {
        security.insert("basicAuth".into(), json!({"type": "basic"}));
    }
    json(
        200,
        &json!({
            "swagger": "2.0",
            "info": {"title": settings.project_name, "version": settings.http_api_version},
            "basePath": "/v1",
            "host": host,
            "schemes": [ctx.base_url().split("://").next().unwrap_or("http")],
            "securityDefinitions": security,
            "produces": ["application/json"],
            "paths": paths,
        }),
    )
}

/// `GET /v1/contribute.json`.
pub fn contribute() -> Response {
    json(
        200,
        &json!({
            "name": "kinto",
            "description": "Kinto is a minimalist JSON storage service with synchronisation and sharing abilities. It is meant to be easy to use and easy to self-host.",
            "repository": {
                "url": "https://github.com/Kinto/kinto",
                "license": "Apache License 2.0",
                "tests": "https://github.com/Kinto/kinto/actions"
            },
            "participate": {
                "home": "https://github.com/Kinto/kinto",
                "docs": "https://kinto.readthedocs.io/en/latest/",
                "irc": "irc://irc.freenode.net/#kinto",
                "irc-contacts": ["leplatrem", "n1k0", "Natim", "almet", "alexis"]
            },
            "bugs": {
                "list": "https://github.com/Kinto/kinto/issues",
                "report": "https://github.com/Kinto/kinto/issues/new"
            },
            "keywords": ["python", "pyramid", "json", "storage", "sync", "rust"]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Instant;

    #[test]
    fn a_hung_check_times_out_and_later_checks_share_one_run() {
        let hung = Arc::new(AtomicBool::new(true));
        let runs = Arc::new(AtomicUsize::new(0));
        let probe = Probe::new({
            let (hung, runs) = (hung.clone(), runs.clone());
            Arc::new(move || {
                runs.fetch_add(1, Ordering::SeqCst);
                while hung.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                true
            })
        });
        let started = Instant::now();
        let deadline = started + Duration::from_millis(200);
        assert!(!Probe::wait(probe.start(), deadline));
        // Asked while the first still hangs: queued, not a second thread.
        let (a, b) = (probe.start(), probe.start());
        assert!(!Probe::wait(a, Instant::now() + Duration::from_millis(100)));
        assert!(started.elapsed() < Duration::from_secs(2));
        hung.store(false, Ordering::SeqCst);
        assert!(Probe::wait(b, Instant::now() + Duration::from_secs(5)));
        // The two queued requests were answered by one run after the hung one.
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(Probe::wait(
            probe.start(),
            Instant::now() + Duration::from_secs(5)
        ));
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
