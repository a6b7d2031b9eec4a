//! Kinto settings from `[app:main]`: one registry of names, defaults and docs, parsed once into a
//! typed struct, with `kinto.`/`cliquet.` prefixes and `KINTO_*` environment overrides.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which implementation serves a backend role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Embedded SQLite (also what Kinto's `memory` backend names map to).
    Sqlite,
    PostgreSql,
}

/// One backend role's settings (`storage_*`, `permission_*`, `cache_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    pub kind: BackendKind,
    /// `postgresql://user:pass@host:port/db`, or `sqlite:///relative.db` / `sqlite:////abs.db`
    /// (resolved to a filesystem path; `:memory:` for the memory backend with one worker).
    pub url: String,
    /// `*_pool_size` / `*_pool_maxconn`: connections per worker process.
    pub pool_size: u32,
    /// `*_pool_timeout`: seconds to wait for a free connection before answering 503.
    pub pool_timeout: u64,
}

/// Every Kinto setting the server uses, validated. Field names are the setting names.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ini file the settings came from (reported by the root view).
    pub ini_path: PathBuf,
    pub project_name: String,
    pub project_version: String,
    pub project_docs: String,
    pub http_api_version: String,
    pub error_info_link: String,
    pub version_json_path: String,
    pub http_scheme: Option<String>,
    pub http_host: Option<String>,
    pub includes: Vec<String>,
    pub readonly: bool,
    pub explicit_permissions: bool,
    pub batch_max_requests: usize,
    pub paginate_by: Option<usize>,
    pub storage_max_fetch_size: usize,
    pub pagination_token_validity_seconds: u64,
    pub trailing_slash_redirect_enabled: bool,
    pub trailing_slash_redirect_ttl_seconds: i64,
    pub version_prefix_redirect_enabled: bool,
    pub version_prefix_redirect_ttl_seconds: i64,
    pub heartbeat_timeout_seconds: u64,
    pub root_cache_expires_seconds: i64,
    pub backoff: Option<String>,
    pub backoff_percentage: Option<u32>,
    pub retry_after_seconds: u64,
    pub eos: Option<String>,
    pub eos_message: Option<String>,
    pub eos_url: Option<String>,
    pub cors_origins: Vec<String>,
    pub cors_max_age_seconds: i64,
    pub userid_hmac_secret: String,
    pub default_bucket_hmac_secret: String,
    /// `multiauth.policies`, in order.
    pub multiauth_policies: Vec<String>,
    /// The older `flush_endpoint_enabled` switch (or `kinto.plugins.flush` in `includes`).
    pub flush_endpoint_enabled: bool,
    pub experimental_permissions_endpoint: bool,
    pub experimental_collection_schema_validation: bool,
    pub storage: BackendSettings,
    pub permission: BackendSettings,
    pub cache: BackendSettings,
    pub cache_prefix: String,
    pub statsd_url: Option<String>,
    pub statsd_prefix: String,
    pub logging_renderer: Option<String>,
    /// Every setting as read, unprefixed, after environment overrides: the source for settings
    /// whose names are patterns (`<resource>_read_principals`, `multiauth.policy.<n>.*`,
    /// `<bid>.record_cache_expires_seconds`, `{plural,object}_<resource>_<method>_enabled`).
    pub raw: BTreeMap<String, String>,
}
