//! Kinto's plugins as enabled by `includes` (accounts, history, permissions endpoint): their
//! routes, their capabilities in the root view, and the dispatch of their endpoints inside the
//! request's (or the batch's) storage transaction.

use super::http::decode_segment;
use super::{accounts, history, permissions_endpoint, Config, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::settings::Settings;
use crate::storage::Transaction;
use serde_json::{json, Map, Value};
use worker::Response;

/// Which plugins are active, from `includes` (and the settings that enable some of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plugins {
    pub accounts: bool,
    pub history: bool,
    pub permissions_endpoint: bool,
}

impl Plugins {
    pub fn new(settings: &Settings) -> Self {
        let has = |name: &str| settings.includes.iter().any(|i| i.trim() == name);
        Plugins {
            accounts: has("kinto.plugins.accounts"),
            history: has("kinto.plugins.history"),
            permissions_endpoint: settings.experimental_permissions_endpoint
                || has("kinto.plugins.admin"),
        }
    }
}

/// The URLs added by plugins (ids decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginRoute {
    /// `/v1/accounts` (`id` is `None`) and `/v1/accounts/<id>`.
    Accounts { id: Option<String> },
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
    if plugins == Plugins::default() {
        return Ok(None);
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
    let mut methods: Vec<&'static str> = match route {
        PluginRoute::Accounts { id: None } => vec!["HEAD", "GET", "POST", "DELETE"],
        PluginRoute::Accounts { id: Some(_) } => vec!["GET", "HEAD", "PUT", "PATCH", "DELETE"],
        PluginRoute::History { .. } => vec!["HEAD", "GET", "DELETE"],
        PluginRoute::Snapshot { .. } | PluginRoute::Permissions => vec!["GET", "HEAD"],
    };
    if cfg.settings.readonly {
        methods.retain(|m| matches!(*m, "GET" | "HEAD"));
    }
    methods.push("OPTIONS");
    methods
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
        (true, "GET") => Exposed::PluralGet,
        (false, "GET" | "HEAD") if matches!(route, PluginRoute::Accounts { id: Some(_) }) => {
            Exposed::Object
        }
        _ => Exposed::Base,
    }
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

/// Answers a plugin URL inside `tx`.
pub fn handle(ctx: &mut Ctx, tx: &mut dyn Transaction, route: &PluginRoute) -> ApiResult<Response> {
    let method = ctx.request.method.to_ascii_uppercase();
    let allowed = allowed_methods(ctx.cfg, route);
    if method == "OPTIONS" || !allowed.contains(&method.as_str()) {
        return Err(ApiError::MethodNotAllowed {
            allow: Some(allowed.join(", ")),
        });
    }
    match route {
        PluginRoute::Accounts { id } => accounts::handle(ctx, tx, id.as_deref()),
        PluginRoute::History { bucket } => history::list(ctx, tx, bucket),
        PluginRoute::Snapshot {
            bucket,
            collection,
            timestamp,
        } => history::snapshot(ctx, tx, bucket, collection, timestamp),
        PluginRoute::Permissions => permissions_endpoint::get(ctx, tx),
    }
}
