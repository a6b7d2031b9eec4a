//! The Kinto HTTP API: routing, utility endpoints, the resource endpoints and the plugins.
//!
//! A [`worker::Request`] is routed ([`route`]) to a [`route::Route`]; the [`worker::Handler`]
//! impl of [`App`] runs the steps common to every request (end of service, CORS preflight and
//! origin, readonly mode), then the endpoint's handler, a function of a [`Ctx`] (plus a storage
//! transaction for resources, one per request or per batch); finally the headers present on
//! every response are added. Settings that never change per request live in [`Config`], built
//! once in [`App::new`].
//!
//! Layout: [`resource`] (buckets, collections, groups, records and the plugin resources
//! accounts and history), [`utility`] (root, heartbeats, version, OpenAPI), [`batch`],
//! [`default_bucket`], [`accounts`] (and [`verified`], the accounts remembered by a worker),
//! [`history`], [`permissions`], [`user_data`], [`cors`],
//! [`schema`] (JSON-schema validation), [`signals`] (Backoff, end of service), [`http`]
//! (shared HTTP helpers).

pub mod accounts;
pub mod batch;
pub mod cors;
pub mod counters;
pub mod default_bucket;
pub mod history;
pub mod http;
pub mod observe;
pub mod permissions;
pub mod resource;
pub mod route;
pub mod schema;
pub mod signals;
pub mod user_data;
pub mod utility;
pub mod verified;

use crate::auth::{Authenticator, User};
use crate::authz::{SettingsGrants, AUTHENTICATED, EVERYONE};
use crate::cache::Cache;
use crate::error::{ApiError, ApiResult, ErrorSettings};
use crate::settings::Settings;
use crate::storage::{Backend, Transaction};
use cors::{Cors, Exposed};
use route::{RedirectKind, Route, RoutingSettings};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use worker::{Request, Response, Scheme};

/// Everything derived from the settings once per worker.
pub struct Config {
    pub settings: Arc<Settings>,
    pub errors: ErrorSettings,
    pub auth: Authenticator,
    pub grants: SettingsGrants,
    pub routing: RoutingSettings,
    pub cors: Cors,
    pub eos: Option<signals::EndOfService>,
    /// `{plural,object}_<resource>_<method>_enabled = false` settings, as `plural_bucket_delete`.
    pub disabled_methods: BTreeSet<String>,
    /// `<name>_cache_expires_seconds` and record cache settings, parsed.
    pub cache_expires: BTreeMap<String, i64>,
    /// The `config` object of the root view (hash of the ini file), computed once.
    pub hello_config: serde_json::Value,
    /// The root view's body, serialized once.
    pub hello: utility::HelloBody,
    /// The personal bucket plugin (`kinto.plugins.default_bucket`).
    pub default_bucket: bool,
    /// The history plugin.
    pub history: history::HistorySettings,
    /// The `/__version__` file, read once.
    pub version_file: Option<serde_json::Value>,
}

impl Config {
    pub fn new(settings: Arc<Settings>) -> Self {
        let errors = ErrorSettings {
            info_link: settings.error_info_link.clone(),
            retry_after_seconds: settings.retry_after_seconds,
        };
        let disabled_methods = settings
            .raw
            .iter()
            .filter(|(k, v)| {
                (k.starts_with("plural_") || k.starts_with("object_"))
                    && k.ends_with("_enabled")
                    && matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "false" | "no" | "off" | "0"
                    )
            })
            .map(|(k, _)| k.trim_end_matches("_enabled").to_ascii_lowercase())
            .collect();
        let cache_expires = settings
            .raw
            .iter()
            .filter(|(k, _)| k.ends_with("cache_expires_seconds"))
            .filter_map(|(k, v)| Some((k.clone(), v.trim().parse::<i64>().ok()?)))
            .collect();
        let mut config = Config {
            errors,
            auth: Authenticator::new(&settings),
            grants: SettingsGrants::new(&settings),
            routing: RoutingSettings {
                version_prefix_redirect: settings.version_prefix_redirect_enabled,
                trailing_slash_redirect: settings.trailing_slash_redirect_enabled,
                flush_enabled: settings.flush_endpoint_enabled
                    || settings.includes.iter().any(|i| i == "kinto.plugins.flush"),
                accounts_enabled: accounts::enabled(&settings),
                history_enabled: history::HistorySettings::new(&settings).enabled,
                permissions_enabled: settings.experimental_permissions_endpoint
                    || settings.includes.iter().any(|i| i == "kinto.plugins.admin"),
                counters_enabled: counters::enabled(&settings),
            },
            cors: Cors::new(&settings.cors_origins, settings.cors_max_age_seconds),
            eos: signals::EndOfService::new(
                settings.eos.as_deref(),
                settings.eos_message.as_deref(),
                settings.eos_url.as_deref(),
                &settings.project_docs,
            ),
            disabled_methods,
            cache_expires,
            history: history::HistorySettings::new(&settings),
            default_bucket: settings
                .includes
                .iter()
                .any(|i| i == "kinto.plugins.default_bucket"),
            hello_config: utility::config_summary(&settings),
            hello: utility::HelloBody::default(),
            version_file: utility::read_version_file(&settings.version_json_path),
            settings,
        };
        config.hello = utility::HelloBody::new(&config);
        config
    }
}

/// A cache write (`key`, `value` or `None` to delete, `ttl`) to run once the storage
/// transaction is committed.
pub type CacheWrite = (String, Option<serde_json::Value>, Option<f64>);

/// What one request hands to the next sub-request of a batch, and to the end of the batch.
#[derive(Debug, Default)]
pub struct Carry {
    /// The principals of the last caller: `(user id, principals)`.
    principals: Option<(Option<String>, BTreeSet<String>)>,
    /// Cache writes deferred until the commit (SQLite would block them during the transaction).
    cache_writes: Vec<CacheWrite>,
    /// The last authentication: `(Authorization header, user)`, reused by the next
    /// sub-request carrying the same header.
    authenticated: Option<(String, Option<User>)>,
}

/// Per-request state shared by the handlers.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub request: &'a Request,
    /// Decoded querystring, in order.
    pub query: Vec<(String, String)>,
    pub user: Option<User>,
    pub cache: &'a dyn Cache,
    /// The caller's principals, looked up once (once per batch).
    principals: Option<BTreeSet<String>>,
    /// An `Alert` to send (deprecated `_to`), set by handlers.
    pub alert: Option<String>,
    /// Cache writes to run after the commit.
    pub cache_writes: Vec<CacheWrite>,
    /// The request has its transaction to itself (not a batch's): its last write may carry
    /// the commit (`resource::commit_with_last_write`), and it may run again on a conflict.
    pub own_transaction: bool,
    /// Which run of the request this is (1 the first; see `App::in_transaction`).
    pub attempt: u32,
}

impl<'a> Ctx<'a> {
    /// `scheme://host` as seen by clients (`http_scheme`/`http_host` win over the request).
    pub fn base_url(&self) -> String {
        let settings = &self.cfg.settings;
        let scheme = settings.http_scheme.clone().unwrap_or_else(|| {
            match self.request.scheme {
                Scheme::Https => "https",
                Scheme::Http => "http",
            }
            .to_string()
        });
        let host = settings
            .http_host
            .clone()
            .or_else(|| self.request.header("Host").map(str::to_string))
            .unwrap_or_else(|| "localhost".to_string());
        format!("{scheme}://{host}")
    }

    /// The principal that writes get ownership for (the user id, or everyone when anonymous).
    pub fn writer(&self) -> String {
        match &self.user {
            Some(user) => user.id.clone(),
            None => EVERYONE.to_string(),
        }
    }

    /// The caller's principals: user id, `system.Everyone`, `system.Authenticated` and groups.
    pub fn principals(&mut self, tx: &mut dyn Transaction) -> ApiResult<BTreeSet<String>> {
        if let Some(principals) = &self.principals {
            return Ok(principals.clone());
        }
        let mut principals = BTreeSet::from([EVERYONE.to_string()]);
        if let Some(user) = &self.user {
            principals.extend(tx.get_user_principals(&user.id)?);
            principals.insert(user.id.clone());
            principals.insert(AUTHENTICATED.to_string());
        }
        self.principals = Some(principals.clone());
        Ok(principals)
    }

    /// Reuses the principals of a previous sub-request of the same caller.
    pub fn seed_principals(&mut self, carry: &Carry) {
        if let Some((user, principals)) = &carry.principals {
            if *user == self.user.as_ref().map(|u| u.id.clone()) {
                self.principals = Some(principals.clone());
            }
        }
    }

    /// Hands the principals looked up by this request to the next sub-request, and the
    /// pending cache writes to whoever commits.
    pub fn carry_over(&mut self, carry: &mut Carry) {
        if let Some(principals) = &self.principals {
            carry.principals = Some((self.user.as_ref().map(|u| u.id.clone()), principals.clone()));
        }
        carry.cache_writes.append(&mut self.cache_writes);
    }

    /// 401 for anonymous callers, 403 for authenticated ones.
    pub fn deny(&self) -> ApiError {
        match self.user {
            None => ApiError::Unauthorized {
                challenges: self.cfg.auth.challenges(),
            },
            Some(_) => ApiError::Forbidden,
        }
    }
}

/// Attempts of a request whose transaction meets conflicts (see `App::in_transaction`).
const TRANSACTION_ATTEMPTS: u32 = 3;

/// The application handed to the HTTP worker.
pub struct App {
    pub(crate) cfg: Config,
    backend: Arc<dyn Backend>,
    cache: Arc<dyn Cache>,
    metrics: crate::metrics::Metrics,
    /// The account verifications this worker remembers (no cache round trip on a hit).
    verified: verified::Verifications,
    probes: utility::Probes,
}

impl App {
    pub fn new(settings: Arc<Settings>, backend: Box<dyn Backend>, cache: Box<dyn Cache>) -> App {
        let cap = accounts::local_cache_cap(&settings);
        let backend: Arc<dyn Backend> = Arc::from(backend);
        let cache: Arc<dyn Cache> = Arc::from(cache);
        App {
            cfg: Config::new(settings),
            probes: utility::Probes::new(Arc::clone(&backend), Arc::clone(&cache)),
            backend,
            cache,
            metrics: crate::metrics::Metrics::disabled(),
            verified: verified::Verifications::new(verified::Epoch::process(), cap),
        }
    }

    /// Shares the accounts `epoch` (the one the master mapped before forking) instead of this
    /// process's: every worker holding it drops its remembered verifications when one moves it.
    pub fn with_accounts_epoch(mut self, epoch: verified::Epoch) -> App {
        let cap = accounts::local_cache_cap(&self.cfg.settings);
        self.verified = verified::Verifications::new(epoch, cap);
        self
    }

    /// Reports the requests and times the backend calls with `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> App {
        self.backend = crate::metrics::timed::timed_backend(self.backend, &metrics);
        self.cache = crate::metrics::timed::timed_cache(self.cache, &metrics);
        // The heartbeat's checks are timed like every other backend call.
        self.probes = utility::Probes::new(Arc::clone(&self.backend), Arc::clone(&self.cache));
        self.metrics = metrics;
        self
    }

    /// Runs `f` in one storage transaction: committed on success, rolled back on error. On a
    /// conflict (an object changed between the read and the write of the request, a
    /// serialisation failure) `f` runs again in a new transaction, a few times, before the 409.
    fn in_transaction<T>(
        &self,
        mut f: impl FnMut(&mut dyn Transaction) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut tx = self.backend.begin()?;
            match f(&mut *tx) {
                Ok(value) => {
                    tx.commit()?;
                    return Ok(value);
                }
                Err(e) => {
                    if let Err(rollback) = tx.rollback() {
                        log::error!("rollback failed: {rollback:?}");
                    }
                    if !matches!(e, ApiError::Conflict) || attempts == TRANSACTION_ATTEMPTS {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Routes and answers one request (without the headers common to every response).
    fn dispatch(
        &self,
        request: &Request,
        exposed: &mut Exposed,
        observed: &mut observe::Observation,
    ) -> ApiResult<(Response, Option<String>)> {
        if let Some(eos) = &self.cfg.eos {
            if eos.reached() {
                return Err(ApiError::Gone);
            }
        }
        if let Some(page) = observe::metrics_page(request, &self.metrics) {
            observed.routed_to(observe::METRICS_ENDPOINT);
            return Ok((page, None));
        }
        let route = route::route(request.path(), request.query(), self.cfg.routing)?;
        observed.routed(&route, self.cfg.default_bucket);
        let method = request.method.to_ascii_uppercase();
        *exposed = match (&route, method.as_str()) {
            (Route::Plural(_), "GET") => Exposed::PluralGet,
            (Route::Plural(_), "HEAD") => Exposed::PluralHead,
            (Route::Object(_), "GET" | "HEAD") => Exposed::Object,
            _ => Exposed::Base,
        };
        if method == "OPTIONS" {
            return self.preflight(request, &route).map(|r| (r, None));
        }
        self.cfg.cors.check_origin(request)?;
        let readonly_exempt = matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS");
        if self.cfg.settings.readonly && !readonly_exempt {
            return Err(ApiError::MethodNotAllowed { allow: None });
        }
        let mut carry = Carry::default();
        let served = self.serve(request, route, None, &mut carry);
        observed.authenticated(carry.authenticated.and_then(|(_, user)| user));
        served
    }

    /// Answers a routed request. `shared` is the transaction of the enclosing batch, if any
    /// (otherwise each storage access runs in its own transaction); `memo` carries the
    /// caller's principals from one sub-request to the next.
    fn serve(
        &self,
        request: &Request,
        route: Route,
        shared: Option<&mut dyn Transaction>,
        carry: &mut Carry,
    ) -> ApiResult<(Response, Option<String>)> {
        let method = request.method.to_ascii_uppercase();
        let utility_methods = |allowed: &[&str]| -> ApiResult<()> {
            if allowed.contains(&method.as_str()) {
                Ok(())
            } else {
                Err(ApiError::MethodNotAllowed {
                    allow: Some(format!("{}, OPTIONS", allowed.join(", "))),
                })
            }
        };
        match route {
            Route::Redirect { location, kind } => {
                Ok((self.redirect(request, &location, kind), None))
            }
            Route::VersionNotAvailable => Err(ApiError::VersionNotAvailable),
            Route::NotFound => Err(ApiError::UnknownUrl),
            Route::LbHeartbeat => {
                utility_methods(&["GET", "HEAD"])?;
                Ok((http::json(200, &serde_json::json!({})), None))
            }
            Route::Heartbeat => {
                utility_methods(&["GET", "HEAD"])?;
                Ok((utility::heartbeat(&self.cfg, &self.probes), None))
            }
            Route::Version => {
                utility_methods(&["GET", "HEAD"])?;
                utility::version(&self.cfg).map(|r| (r, None))
            }
            Route::OpenApi => {
                utility_methods(&["GET", "HEAD"])?;
                Ok((utility::openapi(&self.new_ctx(request, carry)?), None))
            }
            Route::Contribute => {
                utility_methods(&["GET", "HEAD"])?;
                Ok((utility::contribute(), None))
            }
            Route::Flush => {
                utility_methods(&["POST"])?;
                self.backend.flush()?;
                let flushed = self.cache.flush();
                self.verified.invalidate();
                flushed?;
                Ok((http::json(202, &serde_json::json!({})), None))
            }
            Route::Counters => {
                utility_methods(&["GET", "HEAD"])?;
                let response = match shared {
                    Some(tx) => counters::get(tx)?,
                    None => self.in_transaction(counters::get)?,
                };
                Ok((response, None))
            }
            Route::Batch => {
                utility_methods(&["POST"])?;
                if shared.is_some() {
                    // Validation forbids it; never nest transactions.
                    return Err(ApiError::UnknownUrl);
                }
                let mut batch_carry = Carry::default();
                let response =
                    self.in_transaction(|tx| batch::run(self, request, tx, &mut batch_carry))?;
                self.write_cache(&mut batch_carry)?;
                Ok((response, None))
            }
            Route::UserData(principal) => {
                utility_methods(&["DELETE"])?;
                let mut ctx = self.new_ctx(request, carry)?;
                ctx.seed_principals(carry);
                let fresh = shared.is_none();
                let response = match shared {
                    Some(tx) => user_data::delete(&mut ctx, tx, &principal)?,
                    None => {
                        self.in_transaction(|tx| user_data::delete(&mut ctx, tx, &principal))?
                    }
                };
                // Deleted accounts' verifications go (in a batch, with the batch's writes).
                ctx.carry_over(carry);
                if fresh {
                    self.write_cache(carry)?;
                }
                Ok((response, None))
            }
            Route::Snapshot {
                bucket,
                collection,
                timestamp,
            } => {
                utility_methods(&["GET", "HEAD"])?;
                let mut ctx = self.new_ctx(request, carry)?;
                ctx.seed_principals(carry);
                let run = |ctx: &mut Ctx, tx: &mut dyn Transaction| {
                    history::snapshot(ctx, tx, &bucket, &collection, &timestamp)
                };
                let response = match shared {
                    Some(tx) => run(&mut ctx, tx)?,
                    None => self.in_transaction(|tx| run(&mut ctx, tx))?,
                };
                Ok((response, None))
            }
            Route::Permissions => {
                utility_methods(&["GET", "HEAD"])?;
                let mut ctx = self.new_ctx(request, carry)?;
                ctx.seed_principals(carry);
                let response = match shared {
                    Some(tx) => permissions::list(&mut ctx, tx)?,
                    None => self.in_transaction(|tx| permissions::list(&mut ctx, tx))?,
                };
                Ok((response, None))
            }
            Route::Root => {
                utility_methods(&["GET", "HEAD"])?;
                let mut ctx = self.new_ctx(request, carry)?;
                let response = match (ctx.user.is_some(), shared) {
                    (false, _) => utility::hello(&mut ctx, None)?,
                    (true, Some(tx)) => utility::hello(&mut ctx, Some(tx))?,
                    (true, None) => self.in_transaction(|tx| utility::hello(&mut ctx, Some(tx)))?,
                };
                Ok((response, None))
            }
            Route::Plural(target) | Route::Object(target) => {
                if self.cfg.default_bucket && default_bucket::addresses_default(&target) {
                    if self.cfg.settings.readonly {
                        return Err(ApiError::MethodNotAllowed { allow: None });
                    }
                    let user = self.authenticate(request, carry)?.ok_or_else(|| {
                        ApiError::Unauthorized {
                            challenges: self.cfg.auth.challenges(),
                        }
                    })?;
                    let secret = &self.cfg.settings.default_bucket_hmac_secret;
                    let bucket = default_bucket::bucket_id(secret, &user.id);
                    let (rewritten, target) = default_bucket::rewrite(request, &target, &bucket);
                    return self.serve_resource(&rewritten, &target, shared, carry, true);
                }
                self.serve_resource(request, &target, shared, carry, false)
            }
        }
    }

    /// A resource endpoint; `personal` first creates the personal bucket and collection.
    fn serve_resource(
        &self,
        request: &Request,
        target: &route::Target,
        shared: Option<&mut dyn Transaction>,
        carry: &mut Carry,
        personal: bool,
    ) -> ApiResult<(Response, Option<String>)> {
        let plural = target.id.is_none();
        let mut ctx = self.new_ctx(request, carry)?;
        ctx.seed_principals(carry);
        let fresh = shared.is_none();
        ctx.own_transaction = fresh;
        let run = |ctx: &mut Ctx, tx: &mut dyn Transaction| {
            // What an attempt that ended in a conflict left is not kept (see `in_transaction`).
            ctx.alert = None;
            ctx.cache_writes.clear();
            ctx.attempt += 1;
            if personal {
                default_bucket::ensure(ctx, tx, target)?;
            }
            resource::handle(ctx, tx, target, plural)
        };
        let response = match shared {
            Some(tx) => run(&mut ctx, tx),
            None => self.in_transaction(|tx| run(&mut ctx, tx)),
        };
        ctx.carry_over(carry);
        if fresh && response.is_ok() {
            self.write_cache(carry)?;
        }
        Ok((response?, ctx.alert))
    }

    /// One sub-request of a batch, inside the batch's transaction: errors become their
    /// response, except server errors (5xx), which abort the whole batch.
    fn serve_sub(
        &self,
        request: &Request,
        tx: &mut dyn Transaction,
        carry: &mut Carry,
    ) -> ApiResult<Response> {
        let started = std::time::Instant::now();
        let served = route::route(request.path(), request.query(), self.cfg.routing)
            .and_then(|route| self.serve(request, route, Some(tx), carry));
        let (errno, response) = match served {
            Ok((mut response, alert)) => {
                if let Some(alert) = alert {
                    response.headers.push(("Alert".into(), alert));
                }
                (0, response)
            }
            Err(e) if e.status() >= 500 => return Err(e),
            Err(e) => (e.errno(), e.into_response(&self.cfg.errors)),
        };
        let user = carry
            .authenticated
            .as_ref()
            .and_then(|(_, user)| user.as_ref());
        observe::subrequest(request, &response, errno, started, user);
        Ok(response)
    }

    /// Runs the cache writes of a committed request (or batch). The deferred deletions are
    /// account verifications (password changed, account deleted): once the shared entry is gone,
    /// the epoch moves, so no worker of this master trusts its memory of the old password.
    fn write_cache(&self, carry: &mut Carry) -> ApiResult<()> {
        for (key, value, ttl) in carry.cache_writes.drain(..) {
            match value {
                Some(value) => self.cache.set(&key, &value, ttl)?,
                None => {
                    let deleted = self.cache.delete(&key);
                    self.verified.invalidate();
                    deleted?;
                }
            }
        }
        Ok(())
    }

    /// Authenticates the request, reusing the previous sub-request's result for the same
    /// `Authorization` header.
    fn authenticate(&self, request: &Request, carry: &mut Carry) -> ApiResult<Option<User>> {
        let header = request.header("Authorization");
        if let (Some(header), Some((seen, user))) = (header, &carry.authenticated) {
            if header == seen {
                return Ok(user.clone());
            }
        }
        let started = std::time::Instant::now();
        let user = self.cfg.auth.authenticate(header, &mut |id, password| {
            self.verify_account(id, password)
        })?;
        if let Some(user) = &user {
            let step = "authenticated_userid";
            self.metrics
                .authentication_step(&user.policy, step, started.elapsed());
        }
        if let Some(header) = header {
            carry.authenticated = Some((header.to_string(), user.clone()));
        }
        Ok(user)
    }

    /// The accounts policy check: a verification this worker remembers (no round trip), else
    /// one cached in the shared cache, else bcrypt against the stored account (then cached for
    /// `account_cache_ttl_seconds`, as Kinto does, and remembered).
    fn verify_account(&self, id: &str, password: &str) -> ApiResult<bool> {
        if !crate::authz::Kind::Account.valid_id(id) {
            return Ok(false);
        }
        let ttl = accounts::cache_ttl(&self.cfg.settings);
        let ttl_duration = std::time::Duration::try_from_secs_f64(ttl).unwrap_or_default();
        let key = accounts::cache_key(&self.cfg.settings.userid_hmac_secret, id);
        let expected = accounts::cache_value(&key, password);
        let now = std::time::Instant::now();
        if self.verified.hit(&key, &expected, ttl_duration, now) {
            return Ok(true);
        }
        let epoch = self.verified.epoch();
        if let Some(serde_json::Value::String(cached)) = self.cache.get(&key)? {
            if cached == expected {
                if self.verified.refresh_due(&key, ttl_duration, now) {
                    self.cache.expire(&key, ttl)?;
                }
                self.verified.remember(&key, expected, epoch, now);
                return Ok(true);
            }
        }
        let stored = {
            let mut tx = self.backend.begin()?;
            let list = crate::storage::ListRef {
                resource_name: "account",
                parent_id: id,
            };
            let stored = tx.get(list, id)?;
            let _ = tx.rollback();
            stored
        };
        let verified = stored
            .as_ref()
            .and_then(|account| account.get("password"))
            .and_then(serde_json::Value::as_str)
            .is_some_and(|hash| accounts::verify(password, hash));
        if verified {
            self.cache.set(
                &key,
                &serde_json::Value::String(expected.clone()),
                Some(ttl),
            )?;
            self.verified.refreshed(&key, now);
            self.verified.remember(&key, expected, epoch, now);
        }
        Ok(verified)
    }

    fn new_ctx<'a>(&'a self, request: &'a Request, carry: &mut Carry) -> ApiResult<Ctx<'a>> {
        Ok(Ctx {
            cfg: &self.cfg,
            request,
            query: http::parse_query(request.query())?,
            user: self.authenticate(request, carry)?,
            cache: &*self.cache,
            principals: None,
            alert: None,
            cache_writes: Vec::new(),
            own_transaction: false,
            attempt: 0,
        })
    }

    fn preflight(&self, request: &Request, route: &Route) -> ApiResult<Response> {
        let readonly = self.cfg.settings.readonly;
        let methods: Vec<&str> = match route {
            Route::NotFound => return Err(ApiError::UnknownUrl),
            Route::VersionNotAvailable => return Err(ApiError::VersionNotAvailable),
            Route::Plural(target) | Route::Object(target) => {
                resource::allowed_methods(&self.cfg, target, target.id.is_none())
            }
            Route::Flush if !readonly => vec!["POST", "OPTIONS"],
            Route::Redirect { .. } => {
                vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
            }
            _ => vec!["GET", "HEAD", "OPTIONS"],
        };
        let exposed = match route {
            Route::Plural(_) => Exposed::PluralHead,
            Route::Object(_) => Exposed::Object,
            _ => Exposed::Base,
        };
        self.cfg.cors.preflight(request, &methods, exposed)
    }

    /// A 307 to `location` (path and query of this server) with the redirect's cache headers.
    fn redirect(&self, request: &Request, location: &str, kind: RedirectKind) -> Response {
        let ctx_base = Ctx {
            cfg: &self.cfg,
            request,
            query: Vec::new(),
            user: None,
            cache: &*self.cache,
            principals: None,
            alert: None,
            cache_writes: Vec::new(),
            own_transaction: false,
            attempt: 0,
        }
        .base_url();
        let ttl = match kind {
            RedirectKind::VersionPrefix => self.cfg.settings.version_prefix_redirect_ttl_seconds,
            RedirectKind::TrailingSlash => self.cfg.settings.trailing_slash_redirect_ttl_seconds,
        };
        let target = format!("{ctx_base}{location}");
        let mut response = Response::new(307);
        response.headers.push(("Location".into(), target.clone()));
        response
            .headers
            .push(("Content-Type".into(), "text/html; charset=UTF-8".into()));
        response.headers.extend(http::cache_headers(ttl));
        response.body = format!(
            "<html>\n <head>\n  <title>307 Temporary Redirect</title>\n </head>\n <body>\n  \
             <h1>307 Temporary Redirect</h1>\n  The resource has been moved to {target}; \
             you should be redirected automatically.\n\n\n </body>\n</html>"
        )
        .into_bytes();
        response
    }

    /// Adds the headers present on every response (1.2, 4.5, 8).
    fn finish(
        &self,
        request: &Request,
        response: &mut Response,
        exposed: Exposed,
        alert: Option<String>,
    ) {
        let headers = &mut response.headers;
        headers.push((
            "Content-Security-Policy".into(),
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; ".into(),
        ));
        headers.push(("X-Content-Type-Options".into(), "nosniff".into()));
        headers.push((
            "Access-Control-Expose-Headers".into(),
            exposed.headers().join(", "),
        ));
        if let Some(origin) = request.header("Origin") {
            let already = headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Access-Control-Allow-Origin"));
            if !already && self.cfg.cors.allowed(origin) {
                headers.push((
                    "Access-Control-Allow-Origin".into(),
                    self.cfg.cors.allow_origin(origin),
                ));
            }
        }
        let settings = &self.cfg.settings;
        if let Some(backoff) =
            signals::backoff(settings.backoff.as_deref(), settings.backoff_percentage)
        {
            headers.push(("Backoff".into(), backoff));
        }
        if let Some(eos) = &self.cfg.eos {
            headers.push(("Alert".into(), eos.alert()));
        } else if let Some(alert) = alert {
            headers.push(("Alert".into(), alert));
        }
        // HEAD keeps the would-be body: the worker sends its `Content-Length` (as Kinto does)
        // and never the body itself.
    }
}

impl worker::Handler for App {
    fn handle(&mut self, request: &Request) -> Response {
        let mut observed = observe::Observation::start(request, &self.metrics);
        let mut exposed = Exposed::Base;
        let (mut response, alert) = match self.dispatch(request, &mut exposed, &mut observed) {
            Ok(answer) => answer,
            Err(error) => {
                observed.failed(request, &error);
                (error.into_response(&self.cfg.errors), None)
            }
        };
        self.finish(request, &mut response, exposed, alert);
        observed.finish(&self.metrics, request, &response);
        response
    }

    fn error_response(&mut self, status: u16) -> Response {
        let mut response = ApiError::Transport(status).into_response(&self.cfg.errors);
        response.headers.push((
            "Content-Security-Policy".into(),
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; ".into(),
        ));
        response
            .headers
            .push(("X-Content-Type-Options".into(), "nosniff".into()));
        response.headers.push((
            "Access-Control-Expose-Headers".into(),
            Exposed::Base.headers().join(", "),
        ));
        response
    }
}
