//! Kinto's plugins as enabled by `includes` (accounts, default bucket, history, permissions
//! endpoint) plus the always-present batch endpoint: their routes, their capabilities in the root
//! view, and the dispatcher of every route answered inside a storage transaction, shared by plain
//! requests and batch sub-requests.

use super::http::decode_segment;
use super::resource;
use super::route::Route;
use super::{accounts, default_bucket, history, permissions_endpoint, utility};
use super::{App, Config, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::settings::Settings;
use crate::storage::Transaction;
use serde_json::{json, Map, Value};
use worker::Response;

/// Which plugins are active, from `includes` (and the settings that enable some of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plugins {
    pub accounts: bool,
    pub default_bucket: bool,
    pub history: bool,
    pub permissions_endpoint: bool,
}

impl Plugins {
    pub fn new(settings: &Settings) -> Self {
        let has = |name: &str| settings.includes.iter().any(|i| i.trim() == name);
        Plugins {
            accounts: has("kinto.plugins.accounts"),
            default_bucket: has("kinto.plugins.default_bucket"),
            history: has("kinto.plugins.history"),
            permissions_endpoint: settings.experimental_permissions_endpoint
                || has("kinto.plugins.admin"),
        }
    }
}

/// The URLs added by plugins (ids decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRoute {
    /// `POST /v1/batch` (always available).
    Batch,
    /// `/v1/accounts` (`id` is `None`) and `/v1/accounts/<id>`.
    Accounts { id: Option<String> },
    /// `/v1/buckets/default` and below; `rest` is the raw path after `/buckets/default`.
    DefaultBucket { rest: String },
    /// `/v1/buckets/<bid>/history`.
    History { bucket: String },
    /// `/v1/buckets/<bid>/snapshot/collections/<cid>@<timestamp>`.
    Snapshot {
        bucket: String,
        collection: String,
        timestamp: String,
    },
    /// `/v1/permissions`.
    Permissions,
}

/// Routes the raw path after `/v1/` to a plugin URL, if it is one of an enabled plugin.
pub fn route(inner: &str, plugins: Plugins) -> ApiResult<Option<PluginRoute>> {
    if plugins.default_bucket {
        if let Some(rest) = inner.strip_prefix("buckets/default") {
            if rest.is_empty() || rest.starts_with('/') {
                return Ok(Some(PluginRoute::DefaultBucket {
                    rest: rest.to_string(),
                }));
            }
        }
    }
    let raw: Vec<&str> = inner.split('/').collect();
    if raw.iter().any(|s| s.is_empty()) {
        return Ok(None);
    }
    let mut segments = Vec::with_capacity(raw.len());
    for segment in raw {
        match decode_segment(segment) {
            Some(s) => segments.push(s),
            None => return Err(ApiError::BadRequest("Invalid URL path.".into())),
        }
    }
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    Ok(match seg.as_slice() {
        ["batch"] => Some(PluginRoute::Batch),
        ["accounts"] if plugins.accounts => Some(PluginRoute::Accounts { id: None }),
        ["accounts", id] if plugins.accounts => Some(PluginRoute::Accounts {
            id: Some(id.to_string()),
        }),
        ["permissions"] if plugins.permissions_endpoint => Some(PluginRoute::Permissions),
        ["buckets", b, "history"] if plugins.history => Some(PluginRoute::History {
            bucket: b.to_string(),
        }),
        ["buckets", b, "snapshot", "collections", spec] if plugins.history => {
            spec.rsplit_once('@').map(|(c, ts)| PluginRoute::Snapshot {
                bucket: b.to_string(),
                collection: c.to_string(),
                timestamp: ts.to_string(),
            })
        }
        _ => None,
    })
}

/// The methods of a plugin URL (for `Allow` and CORS preflights).
pub fn allowed_methods(cfg: &Config, route: &PluginRoute) -> Vec<&'static str> {
    let readonly = cfg.settings.readonly;
    let mut methods: Vec<&'static str> = match route {
        PluginRoute::Batch => vec!["POST"],
        PluginRoute::Accounts { id: None } => vec!["HEAD", "GET", "POST", "DELETE"],
        PluginRoute::Accounts { id: Some(_) } => vec!["GET", "HEAD", "PUT", "PATCH", "DELETE"],
        PluginRoute::DefaultBucket { .. } => {
            vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        }
        PluginRoute::History { .. } => vec!["HEAD", "GET", "DELETE"],
        PluginRoute::Snapshot { .. } | PluginRoute::Permissions => vec!["GET", "HEAD"],
    };
    if readonly {
        methods.retain(|m| matches!(*m, "GET" | "HEAD"));
    }
    methods.push("OPTIONS");
    methods
}

/// 405 unless the method is one of the route's.
pub fn check_method(cfg: &Config, route: &PluginRoute, method: &str) -> ApiResult<()> {
    let allowed = allowed_methods(cfg, route);
    if method != "OPTIONS" && allowed.contains(&method) {
        return Ok(());
    }
    Err(ApiError::MethodNotAllowed {
        allow: Some(allowed.join(", ")),
    })
}

/// Adds the capabilities of the enabled plugins to the root view's.
pub fn capabilities(cfg: &Config, caps: &mut Map<String, Value>) {
    let plugins = cfg.plugins;
    if plugins.accounts {
        caps.insert(
            "accounts".into(),
            json!({
                "description": "Manage user accounts.",
                "url": "https://kinto.readthedocs.io/en/latest/api/1.x/accounts.html",
                "validation_enabled": false,
            }),
        );
    }
    if plugins.default_bucket {
        caps.insert(
            "default_bucket".into(),
            json!({
                "description": "The default bucket is an alias for a personal bucket where \
                                collections are created implicitly.",
                "url": "https://kinto.readthedocs.io/en/latest/api/1.x/buckets.html#personal-bucket-default",
            }),
        );
    }
    if plugins.history {
        caps.insert("history".into(), history::capability(cfg));
    }
    if plugins.permissions_endpoint {
        caps.insert(
            "permissions_endpoint".into(),
            json!({
                "description": "The permissions endpoint can be used to list all user objects permissions.",
                "url": "https://kinto.readthedocs.io/en/latest/configuration/settings.html#activating-the-permissions-endpoint",
            }),
        );
    }
}

/// Extra fields of the root view's `user` object (`bucket` with the default bucket plugin).
pub fn user_info(cfg: &Config, user_id: &str, user: &mut Map<String, Value>) {
    if cfg.plugins.default_bucket {
        user.insert(
            "bucket".into(),
            Value::String(default_bucket::bucket_id(&cfg.settings, user_id)),
        );
    }
}

/// True for the routes answered inside a storage transaction by [`App::in_tx`].
pub fn is_transactional(route: &Route) -> bool {
    match route {
        Route::Plural(_) | Route::Object(_) | Route::Root => true,
        Route::Plugin(p) => !matches!(p, PluginRoute::Batch),
        _ => false,
    }
}

impl App {
    /// Answers a transactional route (see [`is_transactional`]) inside `tx`: the resource
    /// endpoints (with the plugins' write hooks), the root view and the plugin endpoints.
    pub(crate) fn in_tx(
        &self,
        ctx: &mut Ctx,
        tx: &mut dyn Transaction,
        route: &Route,
    ) -> ApiResult<Response> {
        let method = ctx.request.method.to_ascii_uppercase();
        match route {
            Route::Root if matches!(method.as_str(), "GET" | "HEAD") => {
                utility::hello(ctx, Some(tx))
            }
            Route::Root => Err(ApiError::MethodNotAllowed {
                allow: Some("GET, HEAD, OPTIONS".into()),
            }),
            Route::Plural(target) | Route::Object(target) => {
                let plural = target.id.is_none();
                let response = resource::handle(ctx, tx, target, plural)?;
                if !matches!(method.as_str(), "GET" | "HEAD") && response.status < 300 {
                    history::after_write(ctx, tx, target, &method, &response)?;
                }
                Ok(response)
            }
            Route::Plugin(plugin) => {
                check_method(ctx.cfg, plugin, &method)?;
                match plugin {
                    PluginRoute::Accounts { id } => accounts::handle(ctx, tx, id.as_deref()),
                    PluginRoute::DefaultBucket { rest } => {
                        default_bucket::handle(self, ctx, tx, rest)
                    }
                    PluginRoute::History { bucket } => history::list(ctx, tx, bucket),
                    PluginRoute::Snapshot {
                        bucket,
                        collection,
                        timestamp,
                    } => history::snapshot(ctx, tx, bucket, collection, timestamp),
                    PluginRoute::Permissions => permissions_endpoint::get(ctx, tx),
                    PluginRoute::Batch => Err(ApiError::Internal("nested batch".into())),
                }
            }
            _ => Err(ApiError::Internal(format!(
                "route {route:?} does not run in a transaction"
            ))),
        }
    }
}

/// The `Access-Control-Expose-Headers` set of a GET/HEAD on a plugin URL.
pub fn exposed(route: &PluginRoute, method: &str) -> super::cors::Exposed {
    use super::cors::Exposed;
    let plural = matches!(
        route,
        PluginRoute::Accounts { id: None } | PluginRoute::History { .. } | PluginRoute::Permissions
    );
    match (plural, method) {
        (true, "HEAD") => Exposed::PluralHead,
        (true, _) => Exposed::PluralGet,
        (false, _) if matches!(route, PluginRoute::Accounts { id: Some(_) }) => Exposed::Object,
        _ => Exposed::Base,
    }
}
