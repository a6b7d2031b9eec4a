//! The one table of Kinto settings: name, default, kind and a one-line doc. Defaults, validation,
//! environment overrides and `docs/settings.md` all come from it, so they cannot drift apart.

/// How a setting's value is read and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any text.
    Str,
    /// `true/false/yes/no/on/off/1/0` (any case), or JSON `true`/`false`.
    Bool,
    /// A signed integer.
    Int,
    /// A non-negative integer.
    Count,
    /// Words split on whitespace and newlines (or a JSON array of strings).
    List,
    /// A backend implementation name (`kinto.core.storage.postgresql`, `sqlite`, ...).
    Backend,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "text",
            Kind::Bool => "boolean",
            Kind::Int => "integer",
            Kind::Count => "integer ≥ 0",
            Kind::List => "list",
            Kind::Backend => "backend",
        }
    }
}

/// One registered setting. `default: None` means "unset" (Kinto's `None`).
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub kind: Kind,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    default: Option<&'static str>,
    kind: Kind,
    doc: &'static str,
) -> Def {
    Def {
        name,
        default,
        kind,
        doc,
    }
}

use Kind::*;

/// Every setting with a default in Kinto 26.5.0 (API.md 9.2), plus the older names still found in
/// production files. Settings named by patterns (`<resource>_read_principals`, ...) are not listed:
/// they are read from `Settings::raw`.
pub const SETTINGS: &[Def] = &[
    def("project_name", Some("kinto"), Str, "Name in the root view, StatsD prefix and the `Logger` field of JSON logs."),
    def("project_version", Some(env!("CARGO_PKG_VERSION")), Str, "Version shown in the root view (defaults to the software version)."),
    def("project_docs", Some("https://kinto.readthedocs.io/"), Str, "Documentation URL in the root view and default `Alert` URL."),
    def("http_api_version", Some("1.23"), Str, "HTTP API version in the root view."),
    def("error_info_link", Some("https://github.com/Kinto/kinto/issues/"), Str, "`info` link of 500 errors."),
    def("version_json_path", Some("version.json"), Str, "File served by `/__version__`."),
    def("http_scheme", None, Str, "Forces the scheme of URLs in responses (`url`, `Next-Page`, `Location`)."),
    def("http_host", None, Str, "Forces the host[:port] of URLs in responses."),
    def("includes", Some(""), List, "Plugins: `kinto.plugins.accounts`, `kinto.plugins.default_bucket`, `kinto.plugins.flush`, `kinto.plugins.history`, ..."),
    def("readonly", Some("false"), Bool, "Refuses every write (405); the root view becomes cacheable."),
    def("explicit_permissions", Some("true"), Bool, "The creator of an object gets `write` on it explicitly."),
    def("batch_max_requests", Some("25"), Count, "Maximum number of sub-requests in one `POST /batch`."),
    def("paginate_by", None, Count, "Maximum page size of plural endpoints (unset: `storage_max_fetch_size`)."),
    def("storage_max_fetch_size", Some("10000"), Count, "Maximum number of objects read in one storage query."),
    def("pagination_token_validity_seconds", Some("600"), Count, "Lifetime of a `_token` pagination token."),
    def("id_generator", Some("kinto.core.storage.generators.UUID4"), Str, "Default id generator."),
    def("bucket_id_generator", Some("kinto.views.NameGenerator"), Str, "Id generator of buckets (8-character names)."),
    def("collection_id_generator", Some("kinto.views.NameGenerator"), Str, "Id generator of collections."),
    def("group_id_generator", Some("kinto.views.NameGenerator"), Str, "Id generator of groups."),
    def("record_id_generator", Some("kinto.views.RelaxedUUID"), Str, "Id generator of records (UUID4; any valid id accepted)."),
    def("trailing_slash_redirect_enabled", Some("true"), Bool, "Redirects URLs with a trailing slash to the URL without it."),
    def("trailing_slash_redirect_ttl_seconds", Some("3600"), Int, "`Cache-Control: max-age` of that redirect (-1: none)."),
    def("version_prefix_redirect_enabled", Some("true"), Bool, "Redirects URLs without `/v1` to `/v1/...`."),
    def("version_prefix_redirect_ttl_seconds", Some("-1"), Int, "`Cache-Control: max-age` of that redirect (-1: none)."),
    def("heartbeat_timeout_seconds", Some("10"), Count, "Time limit of each `/__heartbeat__` check."),
    def("root_cache_expires_seconds", Some("86400"), Int, "`Cache-Control: max-age` of the root view in read-only mode."),
    def("backoff", None, Str, "Value of the `Backoff` header on every response."),
    def("backoff_percentage", None, Count, "Percentage of responses carrying the `Backoff` header."),
    def("retry_after_seconds", Some("3"), Count, "`Retry-After` of 503 responses."),
    def("eos", None, Str, "End-of-service date (`Alert` header; 410 after the date)."),
    def("eos_message", None, Str, "Message of the end-of-service `Alert` header."),
    def("eos_url", None, Str, "URL of the end-of-service `Alert` header."),
    def("cors_origins", Some("*"), List, "Origins allowed by CORS."),
    def("cors_max_age_seconds", Some("3600"), Int, "`Access-Control-Max-Age` of preflight responses."),
    def("userid_hmac_secret", Some(""), Str, "Secret of the user ids of `basicauth` and of the account cache keys (set it in production)."),
    def("default_bucket_hmac_secret", Some(""), Str, "Secret of the personal bucket ids."),
    def("multiauth.policies", Some(""), List, "Authentication policies, in order (`multiauth.policy.<name>.use` configures each)."),
    def("multiauth.authorization_policy", Some("kinto.authorization.AuthorizationPolicy"), Str, "Built in; accepted for compatibility."),
    def("multiauth.groupfinder", Some("kinto.core.authorization.groupfinder"), Str, "Built in; accepted for compatibility."),
    def("bucket_create_principals", Some("system.Authenticated"), List, "Principals allowed to create buckets."),
    def("permissions_read_principals", Some("system.Everyone"), List, "Principals allowed to read `/permissions`."),
    def("account_cache_ttl_seconds", Some("30"), Count, "Lifetime of a verified account password in the cache."),
    def("account_local_cache_seconds", Some("1"), Count, "kinto-rs: how long a worker trusts a password it verified without reading the cache (`0`: always read it; never longer than `account_cache_ttl_seconds`)."),
    def("account_bcrypt_cost", Some("12"), Count, "bcrypt cost of new account passwords (4 to 31; Kinto's is 12)."),
    def("experimental_collection_schema_validation", Some("false"), Bool, "Validates records against their collection's JSON schema."),
    def("experimental_permissions_endpoint", Some("false"), Bool, "Serves `GET /permissions`."),
    def("flush_endpoint_enabled", Some("false"), Bool, "Older switch for `POST /__flush__` (same as `kinto.plugins.flush` in `includes`)."),
    def("storage_backend", Some("kinto.core.storage.memory"), Backend, "Storage backend: `kinto.core.storage.postgresql`, `sqlite`, or memory (SQLite in memory, one process only)."),
    def("storage_url", Some(""), Str, "`postgresql://user:pass@host:port/db`, or `sqlite:///file.db` (relative to the ini file)."),
    def("storage_pool_size", Some("25"), Count, "Database connections per worker process."),
    def("storage_pool_maxconn", None, Count, "Older name of `storage_pool_size` (used when `storage_pool_size` is not set)."),
    def("storage_max_overflow", Some("10"), Count, "Extra connections beyond the pool size (accepted; the pool is fixed-size)."),
    def("storage_pool_recycle", Some("-1"), Int, "Recycle connections after N seconds (-1: never)."),
    def("storage_pool_timeout", Some("30"), Count, "Seconds to wait for a free connection before answering 503."),
    def("storage_max_backlog", Some("-1"), Int, "Maximum waiters for a connection (-1: unbounded)."),
    def("permission_backend", Some("kinto.core.permission.memory"), Backend, "Permission backend; must use the storage database (one transaction carries both)."),
    def("permission_url", Some(""), Str, "Database URL of the permission backend (same as `storage_url`)."),
    def("permission_pool_size", Some("25"), Count, "Connections per worker process for permissions (shared with storage)."),
    def("permission_pool_maxconn", None, Count, "Older name of `permission_pool_size`."),
    def("permission_pool_timeout", Some("30"), Count, "Seconds to wait for a free permission connection."),
    def("cache_backend", Some("kinto.core.cache.memory"), Backend, "Cache backend: `kinto.core.cache.postgresql`, `sqlite`, or memory (one process only)."),
    def("cache_url", Some(""), Str, "Database URL of the cache backend."),
    def("cache_prefix", Some(""), Str, "Prefix of every cache key."),
    def("cache_max_size_bytes", Some("524288"), Count, "Size limit of the memory cache."),
    def("cache_pool_size", Some("25"), Count, "Cache database connections per worker process."),
    def("cache_pool_maxconn", None, Count, "Older name of `cache_pool_size`."),
    def("cache_pool_timeout", Some("30"), Count, "Seconds to wait for a free cache connection."),
    def("transaction_per_request", Some("true"), Bool, "One database transaction per request (per batch)."),
    def("statsd_url", None, Str, "`udp://host:port` of the StatsD server (with `kinto.plugins.statsd` in `includes`)."),
    def("statsd_prefix", Some("kinto.core"), Str, "StatsD prefix, used only when `project_name` is empty."),
    def("statsd_backend", Some("kinto.core.statsd"), Str, "Built in; accepted for compatibility."),
    def("metrics_matchdict_fields", Some("bucket_id collection_id group_id record_id"), List, "URL parts used as metric labels."),
    def("logging_renderer", None, Str, "Older log format switch (`cliquet.logs.MozillaHekaRenderer`: JSON lines)."),
    def("event_listeners", Some(""), List, "Event listeners (not supported: ignored)."),
    def("sentry_dsn", None, Str, "Accepted for compatibility; no effect."),
    def("newrelic_config", None, Str, "Accepted for compatibility; no effect."),
    def("profiler_enabled", Some("false"), Bool, "Accepted for compatibility; no effect."),
];

/// The registered setting of that (unprefixed) name.
pub fn find(name: &str) -> Option<&'static Def> {
    SETTINGS.iter().find(|d| d.name == name)
}

/// The Markdown page `docs/settings.md`, generated from [`SETTINGS`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Settings\n\n\
         Generated from `src/settings/registry.rs` (a test checks this file matches it).\n\n\
         Settings are read from the `[app:main]` section, with or without the `kinto.` (or older\n\
         `cliquet.`) prefix. The environment overrides them: `KINTO_<NAME>` wins over `<NAME>`, which\n\
         wins over the file (`NAME` is the setting name upper-cased, `.` and `-` replaced by `_`).\n\
         Settings named by patterns (`<resource>_<permission>_principals`, `multiauth.policy.<name>.*`,\n\
         `<bid>.record_cache_expires_seconds`, `{plural,object}_<resource>_<method>_enabled`, ...)\n\
         are read as written.\n\n\
         | Setting | Kind | Default | Effect |\n|---|---|---|---|\n",
    );
    for d in SETTINGS {
        let default = match d.default {
            None => "unset".to_string(),
            Some("") => "empty".to_string(),
            Some(v) => format!("`{v}`"),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            d.name,
            d.kind.describe(),
            default,
            d.doc.replace('|', "\\|")
        ));
    }
    out
}
