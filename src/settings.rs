//! Kinto settings from `[app:main]`: one registry of names, defaults and docs, parsed once into a
//! typed struct, with `kinto.`/`cliquet.` prefixes and `KINTO_*` environment overrides.

pub mod ini;
pub mod registry;

use ini::Ini;
use registry::Kind;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

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

/// A configuration error: one line naming the file, the section, the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

/// The section Kinto's settings live in (PasteDeploy's application section).
pub const SECTION: &str = "app:main";

/// Prefixes a setting may be written with: Kinto's `settings_prefix`, and the older `cliquet.`.
const PREFIXES: [&str; 2] = ["kinto.", "cliquet."];

/// Where a value came from, for error messages.
#[derive(Debug, Clone)]
enum Source {
    /// The key as written in the file.
    File(String),
    /// The environment variable.
    Env(String),
    Default,
}

#[derive(Debug, Clone)]
struct Value {
    text: String,
    source: Source,
}

/// The unprefixed name of a key as written.
fn unprefixed(key: &str) -> &str {
    PREFIXES
        .iter()
        .find_map(|p| key.strip_prefix(p))
        .unwrap_or(key)
}

/// The environment variable spelling of a setting name (`multiauth.policies` → `MULTIAUTH_POLICIES`).
pub fn env_name(name: &str) -> String {
    name.to_uppercase().replace(['.', '-'], "_")
}

/// Kinto's `native_value`, kept as text: a JSON string loses its quotes; anything else is kept.
fn native(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::String(s)) => s,
        _ => text.to_string(),
    }
}

/// Pyramid's `asbool` word lists, plus JSON booleans.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "t" | "y" => Some(true),
        "false" | "no" | "off" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A list: a JSON array of strings, or words split on whitespace and newlines (Pyramid's `aslist`).
pub fn parse_list(text: &str) -> Vec<String> {
    if text.trim_start().starts_with('[') {
        if let Ok(items) = serde_json::from_str::<Vec<String>>(text) {
            return items;
        }
    }
    text.split_whitespace().map(str::to_string).collect()
}

/// Reads `[app:main]` into checked values: prefixes merged, environment applied, defaults filled.
struct Loader {
    /// The ini path as shown in messages.
    file: String,
    dir: PathBuf,
    values: BTreeMap<String, Value>,
}

impl Loader {
    fn error(&self, name: &str, message: impl fmt::Display) -> SettingsError {
        let place = match self.values.get(name).map(|v| &v.source) {
            Some(Source::File(key)) => key.clone(),
            Some(Source::Env(var)) => format!("{name} (from environment variable {var})"),
            _ => name.to_string(),
        };
        SettingsError(format!("{}: [{SECTION}] {place}: {message}", self.file))
    }

    fn read(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Loader, SettingsError> {
        let file = path.display().to_string();
        let parsed = Ini::parse(text, &["DEFAULT", SECTION]).map_err(|e| {
            let section = e.section.map(|s| format!("[{s}] ")).unwrap_or_default();
            SettingsError(format!("{file}: line {}: {section}{}", e.line, e.message))
        })?;
        if !parsed.has_section(SECTION) {
            return Err(SettingsError(format!(
                "{file}: no [{SECTION}] section (Kinto's settings live there)"
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let defaults = BTreeMap::from([
            ("here".to_string(), dir.display().to_string()),
            ("__file__".to_string(), file.clone()),
        ]);
        let default_keys: Vec<&str> = parsed
            .entries("DEFAULT")
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        let mut loader = Loader {
            file: file.clone(),
            dir,
            values: BTreeMap::new(),
        };
        // Keys as written, grouped by unprefixed name, in the order `name`, `kinto.name`, `cliquet.name`.
        let mut written: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for entry in parsed.entries(SECTION) {
            let key = entry.key.as_str();
            // PasteDeploy: `use` picks the application, `set x` writes a global; DEFAULT keys
            // repeated in the section are globals too. None of them is a setting.
            if key == "use" || key.starts_with("set ") || default_keys.contains(&key) {
                continue;
            }
            let value = parsed
                .get(SECTION, key, &defaults)
                .map_err(|e| SettingsError(format!("{file}: [{SECTION}] {key}: {}", e.message)))?;
            let value = value.unwrap_or_default();
            // PasteDeploy's `get x = name`: the value of `name` in [DEFAULT].
            let (key, value) = match key.strip_prefix("get ") {
                Some(name) => {
                    let name = name.trim();
                    let global = parsed
                        .get("DEFAULT", &value, &defaults)
                        .map_err(|e| {
                            SettingsError(format!("{file}: [DEFAULT] {value}: {}", e.message))
                        })?
                        .ok_or_else(|| {
                            SettingsError(format!(
                                "{file}: [{SECTION}] {key}: no {value:?} in [DEFAULT]"
                            ))
                        })?;
                    (name.to_string(), global)
                }
                None => (key.to_string(), value),
            };
            written
                .entry(unprefixed(&key).to_string())
                .or_default()
                .push((key, value));
        }
        for (name, mut keys) in written {
            let rank = |k: &str| {
                PREFIXES
                    .iter()
                    .position(|p| k.starts_with(p))
                    .map_or(0, |i| i + 1)
            };
            keys.sort_by_key(|(k, _)| rank(k));
            let mut distinct: Vec<String> = keys.iter().map(|(_, v)| native(v)).collect();
            distinct.dedup();
            if distinct.len() > 1 {
                let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
                return Err(SettingsError(format!(
                    "{file}: [{SECTION}] Settings '{}' are in conflict.",
                    names.join("', '")
                )));
            }
            let (key, text) = keys.swap_remove(0);
            loader.values.insert(
                name,
                Value {
                    text,
                    source: Source::File(key),
                },
            );
        }
        // Environment overrides, for settings with a default or present in the file.
        let names: Vec<String> = registry::SETTINGS
            .iter()
            .map(|d| d.name.to_string())
            .chain(loader.values.keys().cloned())
            .collect();
        for name in names {
            let var = env_name(&name);
            let prefixed = format!("KINTO_{var}");
            let found = env(&prefixed)
                .map(|v| (prefixed, v))
                .or_else(|| env(&var).map(|v| (var, v)));
            if let Some((var, text)) = found {
                loader.values.insert(
                    name,
                    Value {
                        text,
                        source: Source::Env(var),
                    },
                );
            }
        }
        for d in registry::SETTINGS {
            if let (Some(default), false) = (d.default, loader.values.contains_key(d.name)) {
                loader.values.insert(
                    d.name.to_string(),
                    Value {
                        text: default.to_string(),
                        source: Source::Default,
                    },
                );
            }
        }
        Ok(loader)
    }

    /// The value as text (JSON strings unquoted); `None` when unset, empty or JSON `null`.
    fn text(&self, name: &str) -> Option<String> {
        debug_assert!(registry::find(name).is_some(), "{name} is not registered");
        let text = native(self.values.get(name)?.text.trim());
        (!text.is_empty() && text != "null").then_some(text)
    }

    fn string(&self, name: &str) -> String {
        self.text(name).unwrap_or_default()
    }

    /// Empty reads as false, as Pyramid's `asbool("")` does.
    fn bool(&self, name: &str) -> Result<bool, SettingsError> {
        let Some(text) = self.text(name) else {
            return Ok(false);
        };
        parse_bool(&text).ok_or_else(|| {
            self.error(
                name,
                format!("invalid boolean {text:?} (expected true/false, yes/no, on/off, 1/0)"),
            )
        })
    }

    fn opt_int(&self, name: &str) -> Result<Option<i64>, SettingsError> {
        let Some(text) = self.text(name) else {
            return Ok(None);
        };
        let value: i64 = text
            .parse()
            .map_err(|_| self.error(name, format!("invalid integer {text:?}")))?;
        if registry::find(name).map(|d| d.kind) == Some(Kind::Count) && value < 0 {
            return Err(self.error(name, format!("must be 0 or more, not {value}")));
        }
        Ok(Some(value))
    }

    fn int(&self, name: &str) -> Result<i64, SettingsError> {
        Ok(self.opt_int(name)?.unwrap_or(0))
    }

    fn count(&self, name: &str) -> Result<u64, SettingsError> {
        Ok(self.int(name)? as u64)
    }

    fn opt_count(&self, name: &str) -> Result<Option<u64>, SettingsError> {
        Ok(self.opt_int(name)?.map(|v| v as u64))
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.text(name).map(|t| parse_list(&t)).unwrap_or_default()
    }

    /// Checks every registered setting against its kind (also those the struct does not hold).
    fn validate(&self) -> Result<(), SettingsError> {
        for d in registry::SETTINGS {
            match d.kind {
                Kind::Bool => {
                    self.bool(d.name)?;
                }
                Kind::Int | Kind::Count => {
                    self.opt_int(d.name)?;
                }
                Kind::Str | Kind::List | Kind::Backend => {}
            }
        }
        Ok(())
    }

    /// A backend role: implementation name, database URL and pool size.
    /// An empty URL of the same kind as `storage` means the storage database.
    fn backend(
        &self,
        role: &str,
        storage: Option<&BackendSettings>,
    ) -> Result<BackendSettings, SettingsError> {
        let key = format!("{role}_backend");
        let name = self.string(&key);
        let implementation = match name.as_str() {
            "postgresql" | "postgres" => "postgresql",
            "sqlite" => "sqlite",
            "memory" => "memory",
            other => [format!("kinto.core.{role}."), format!("cliquet.{role}.")]
                .iter()
                .find_map(|p| other.strip_prefix(p.as_str()))
                .filter(|rest| matches!(*rest, "postgresql" | "memory"))
                .unwrap_or(""),
        };
        let url_key = format!("{role}_url");
        let url = self.string(&url_key);
        let inherited = |kind: BackendKind| {
            storage
                .filter(|s| url.is_empty() && s.kind == kind && s.url != MEMORY)
                .map(|s| s.url.clone())
        };
        let (kind, url) = match implementation {
            "postgresql" => match inherited(BackendKind::PostgreSql) {
                Some(url) => (BackendKind::PostgreSql, url),
                None => (
                    BackendKind::PostgreSql,
                    self.postgresql_url(&url_key, &url)?,
                ),
            },
            "sqlite" => match inherited(BackendKind::Sqlite) {
                Some(url) => (BackendKind::Sqlite, url),
                None => (BackendKind::Sqlite, self.sqlite_path(&url_key, &url)?),
            },
            "memory" => (BackendKind::Sqlite, MEMORY.to_string()),
            _ => {
                return Err(self.error(
                    &key,
                    format!(
                        "unknown {role} backend {name:?} (expected kinto.core.{role}.postgresql, \
                         kinto.core.{role}.memory, postgresql, sqlite or memory)"
                    ),
                ))
            }
        };
        let pool_size_key = format!("{role}_pool_size");
        let explicit = |k: &str| {
            self.values
                .get(k)
                .is_some_and(|v| !matches!(v.source, Source::Default))
        };
        let maxconn_key = format!("{role}_pool_maxconn");
        let pool_key = if !explicit(&pool_size_key) && explicit(&maxconn_key) {
            maxconn_key
        } else {
            pool_size_key
        };
        let pool_size = self.count(&pool_key)?;
        if pool_size == 0 {
            return Err(self.error(&pool_key, "must be at least 1"));
        }
        Ok(BackendSettings {
            kind,
            url,
            pool_size: u32::try_from(pool_size).map_err(|_| self.error(&pool_key, "too large"))?,
            pool_timeout: self.count(&format!("{role}_pool_timeout"))?,
        })
    }

    /// `postgresql://...` (SQLAlchemy's `postgresql+driver://` and `postgres://` accepted).
    fn postgresql_url(&self, key: &str, url: &str) -> Result<String, SettingsError> {
        let rest = url.split_once("://").and_then(|(scheme, rest)| {
            let base = scheme.split('+').next().unwrap_or(scheme);
            matches!(base, "postgresql" | "postgres").then_some(rest)
        });
        match rest {
            Some(rest) => {
                let url = format!("postgresql://{rest}");
                // Parsed here so that a malformed URL stops the master, not every worker.
                match url.parse::<postgres::Config>() {
                    Ok(_) => Ok(url),
                    Err(e) => Err(self.error(key, format!("invalid PostgreSQL URL {:?}: {e}", redact(&url)))),
                }
            }
            None if url.is_empty() => Err(self.error(
                key,
                "is empty; the postgresql backend needs postgresql://user:password@host:port/database",
            )),
            None => Err(self.error(key, format!("{url:?} is not a postgresql:// URL"))),
        }
    }

    /// `sqlite:///relative.db` (to the ini's directory), `sqlite:////absolute.db`, `sqlite://` or
    /// `:memory:` for memory, or a plain path.
    fn sqlite_path(&self, key: &str, url: &str) -> Result<String, SettingsError> {
        let path = match url.split_once("://") {
            Some(("sqlite", rest)) => rest.strip_prefix('/').unwrap_or(rest),
            Some((scheme, _)) => {
                return Err(self.error(
                    key,
                    format!("{url:?}: a {scheme}:// URL cannot be used with the sqlite backend"),
                ))
            }
            None if url.is_empty() => {
                return Err(self.error(key, "is empty; the sqlite backend needs sqlite:///file.db"))
            }
            None => url,
        };
        if path.is_empty() || path == MEMORY {
            return Ok(MEMORY.to_string());
        }
        Ok(self.dir.join(path).display().to_string())
    }
}

/// The URL of an in-memory SQLite database (Kinto's `memory` backends).
pub const MEMORY: &str = ":memory:";

impl Settings {
    /// Reads, checks and types the settings of an ini file, with the process environment.
    pub fn load(ini: &Path) -> Result<Settings, SettingsError> {
        let path = std::path::absolute(ini).unwrap_or_else(|_| ini.to_path_buf());
        let text = std::fs::read_to_string(&path).map_err(|e| {
            SettingsError(format!(
                "{}: cannot read the configuration file: {e}",
                path.display()
            ))
        })?;
        Settings::from_text(&path, &text, &|name| std::env::var(name).ok())
    }

    /// Same as [`Settings::load`] for a file already read and an explicit environment (tests).
    pub fn from_text(
        ini: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let path = std::path::absolute(ini).unwrap_or_else(|_| ini.to_path_buf());
        let l = Loader::read(&path, text, env)?;
        l.validate()?;
        let storage = l.backend("storage", None)?;
        let permission = l.backend("permission", Some(&storage))?;
        let cache = l.backend("cache", Some(&storage))?;
        // One transaction carries the storage and permission roles, so they share a database.
        if (permission.kind, &permission.url) != (storage.kind, &storage.url) {
            return Err(l.error(
                "permission_backend",
                format!(
                    "the permission backend must use the storage database ({}), not {} \
                     (permissions are kept in the storage transaction)",
                    describe(&storage),
                    describe(&permission)
                ),
            ));
        }
        let includes = l.list("includes");
        let flush = l.bool("flush_endpoint_enabled")?
            || includes.iter().any(|i| i == "kinto.plugins.flush");
        let raw = l
            .values
            .iter()
            .map(|(k, v)| (k.clone(), native(&v.text)))
            .collect();
        Ok(Settings {
            ini_path: path,
            project_name: l.string("project_name"),
            project_version: l.string("project_version"),
            project_docs: l.string("project_docs"),
            http_api_version: l.string("http_api_version"),
            error_info_link: l.string("error_info_link"),
            version_json_path: l.string("version_json_path"),
            http_scheme: l.text("http_scheme"),
            http_host: l.text("http_host"),
            includes,
            readonly: l.bool("readonly")?,
            explicit_permissions: l.bool("explicit_permissions")?,
            batch_max_requests: l.count("batch_max_requests")? as usize,
            paginate_by: l.opt_count("paginate_by")?.map(|v| v as usize),
            storage_max_fetch_size: l.count("storage_max_fetch_size")? as usize,
            pagination_token_validity_seconds: l.count("pagination_token_validity_seconds")?,
            trailing_slash_redirect_enabled: l.bool("trailing_slash_redirect_enabled")?,
            trailing_slash_redirect_ttl_seconds: l.int("trailing_slash_redirect_ttl_seconds")?,
            version_prefix_redirect_enabled: l.bool("version_prefix_redirect_enabled")?,
            version_prefix_redirect_ttl_seconds: l.int("version_prefix_redirect_ttl_seconds")?,
            heartbeat_timeout_seconds: l.count("heartbeat_timeout_seconds")?,
            root_cache_expires_seconds: l.int("root_cache_expires_seconds")?,
            backoff: l.text("backoff"),
            backoff_percentage: match l.opt_count("backoff_percentage")? {
                Some(p) if p > 100 => {
                    return Err(l.error(
                        "backoff_percentage",
                        format!("must be between 0 and 100, not {p}"),
                    ))
                }
                p => p.map(|p| p as u32),
            },
            retry_after_seconds: l.count("retry_after_seconds")?,
            eos: l.text("eos"),
            eos_message: l.text("eos_message"),
            eos_url: l.text("eos_url"),
            cors_origins: l.list("cors_origins"),
            cors_max_age_seconds: l.int("cors_max_age_seconds")?,
            userid_hmac_secret: l.string("userid_hmac_secret"),
            default_bucket_hmac_secret: l.string("default_bucket_hmac_secret"),
            multiauth_policies: l.list("multiauth.policies"),
            flush_endpoint_enabled: flush,
            experimental_permissions_endpoint: l.bool("experimental_permissions_endpoint")?,
            experimental_collection_schema_validation: l
                .bool("experimental_collection_schema_validation")?,
            storage,
            permission,
            cache,
            cache_prefix: l.string("cache_prefix"),
            statsd_url: l.text("statsd_url"),
            statsd_prefix: l.string("statsd_prefix"),
            logging_renderer: l.text("logging_renderer"),
            raw,
        })
    }

    /// Refuses the memory backends when several worker processes would each get their own empty
    /// database (Kinto's memory backends live inside one process).
    pub fn check_processes(&self, processes: usize) -> Result<(), SettingsError> {
        if processes <= 1 {
            return Ok(());
        }
        for (role, backend) in [
            ("storage", &self.storage),
            ("permission", &self.permission),
            ("cache", &self.cache),
        ] {
            if backend.url == MEMORY {
                return Err(SettingsError(format!(
                    "{}: [{SECTION}] {role}_backend: the memory backend keeps its data inside one process \
                     and cannot serve processes = {processes}; use sqlite (sqlite:///kinto.db) or postgresql",
                    self.ini_path.display()
                )));
            }
        }
        Ok(())
    }

    /// A setting as read (unprefixed name, environment applied, JSON strings unquoted).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw.get(name).map(String::as_str)
    }

    /// A setting read as a list of words (principals, policies); empty when unset.
    pub fn get_list(&self, name: &str) -> Vec<String> {
        self.get(name).map(parse_list).unwrap_or_default()
    }

    /// Whether a plugin is listed in `includes` (`kinto.plugins.accounts`, ...).
    pub fn has_plugin(&self, name: &str) -> bool {
        self.includes.iter().any(|i| i == name)
    }
}

fn describe(b: &BackendSettings) -> String {
    match (b.kind, b.url.as_str()) {
        (_, MEMORY) => "memory".to_string(),
        (BackendKind::Sqlite, path) => format!("sqlite {path}"),
        (BackendKind::PostgreSql, url) => format!("postgresql {}", redact(url)),
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str = "/etc/kinto/kinto.ini";

    fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_text(Path::new(INI), text, &|k| env.get(k).cloned())
    }

    fn load(app_main: &str) -> Result<Settings, SettingsError> {
        load_env(&format!("[app:main]\n{app_main}"), &[])
    }

    #[test]
    fn defaults_are_kintos() {
        let s = load("use = egg:kinto\n").unwrap();
        assert_eq!(s.project_name, "kinto");
        assert_eq!(s.http_api_version, "1.23");
        assert_eq!(s.batch_max_requests, 25);
        assert_eq!(s.paginate_by, None);
        assert_eq!(s.retry_after_seconds, 3);
        assert_eq!(s.version_prefix_redirect_ttl_seconds, -1);
        assert_eq!(s.cors_origins, vec!["*"]);
        assert!(s.explicit_permissions && !s.readonly && !s.flush_endpoint_enabled);
        assert_eq!(s.storage.url, MEMORY);
        assert_eq!(s.storage.pool_size, 25);
        assert_eq!(
            s.get("bucket_create_principals"),
            Some("system.Authenticated")
        );
        assert_eq!(s.get("use"), None);
        assert_eq!(s.ini_path, Path::new(INI));
    }

    #[test]
    fn prefixes_and_conflicts() {
        let s = load("kinto.paginate_by = 10\ncliquet.batch_max_requests = 7\n").unwrap();
        assert_eq!((s.paginate_by, s.batch_max_requests), (Some(10), 7));
        // The same value under two names is fine (also "10" against 10, as Kinto compares text).
        assert!(load("paginate_by = 10\nkinto.paginate_by = \"10\"\n").is_ok());
        let err = load("paginate_by = 10\nkinto.paginate_by = 20\n").unwrap_err();
        assert_eq!(
            err.0,
            "/etc/kinto/kinto.ini: [app:main] Settings 'paginate_by', 'kinto.paginate_by' are in conflict."
        );
        let err = load("cliquet.readonly = true\nkinto.readonly = false\n").unwrap_err();
        assert!(
            err.0
                .ends_with("Settings 'kinto.readonly', 'cliquet.readonly' are in conflict."),
            "{err}"
        );
    }

    #[test]
    fn environment_precedence() {
        let text = "[app:main]\npaginate_by = 10\nfxa-oauth.cache_ttl_seconds = 3600\n";
        let s = load_env(text, &[("PAGINATE_BY", "20")]).unwrap();
        assert_eq!(s.paginate_by, Some(20));
        let s = load_env(text, &[("PAGINATE_BY", "20"), ("KINTO_PAGINATE_BY", "30")]).unwrap();
        assert_eq!(s.paginate_by, Some(30));
        // Registered settings are looked up even when absent from the file; `.` and `-` become `_`.
        let s = load_env(
            text,
            &[
                ("KINTO_READONLY", "true"),
                ("FXA_OAUTH_CACHE_TTL_SECONDS", "60"),
                ("KINTO_MULTIAUTH_POLICIES", "basicauth account"),
            ],
        )
        .unwrap();
        assert!(s.readonly);
        assert_eq!(s.get("fxa-oauth.cache_ttl_seconds"), Some("60"));
        assert_eq!(s.multiauth_policies, vec!["basicauth", "account"]);
        // Unknown settings only known from the environment are ignored.
        let s = load_env(text, &[("KINTO_SOMETHING_ELSE", "1")]).unwrap();
        assert_eq!(s.get("something_else"), None);
        // A bad value from the environment names the variable.
        let err = load_env(text, &[("KINTO_PAGINATE_BY", "many")]).unwrap_err();
        assert_eq!(
            err.0,
            "/etc/kinto/kinto.ini: [app:main] paginate_by (from environment variable KINTO_PAGINATE_BY): invalid integer \"many\""
        );
    }

    #[test]
    fn booleans_lists_and_json() {
        for (text, expected) in [
            ("yes", true),
            ("On", true),
            ("1", true),
            ("TRUE", true),
            ("no", false),
            ("off", false),
            ("0", false),
            ("False", false),
        ] {
            assert_eq!(
                load(&format!("readonly = {text}\n")).unwrap().readonly,
                expected,
                "{text}"
            );
        }
        assert!(
            !load("explicit_permissions =\n")
                .unwrap()
                .explicit_permissions
        );
        let err = load("kinto.readonly = maybe\n").unwrap_err();
        assert!(
            err.0.starts_with(
                "/etc/kinto/kinto.ini: [app:main] kinto.readonly: invalid boolean \"maybe\""
            ),
            "{err}"
        );
        let s = load("cors_origins = https://a.example\n   https://b.example  https://c.example\nproject_name = \"quoted\"\nincludes = [\"kinto.plugins.flush\"]\n").unwrap();
        assert_eq!(
            s.cors_origins,
            vec![
                "https://a.example",
                "https://b.example",
                "https://c.example"
            ]
        );
        assert_eq!(s.project_name, "quoted");
        assert!(s.flush_endpoint_enabled && s.has_plugin("kinto.plugins.flush"));
        assert!(
            load("flush_endpoint_enabled = true\n")
                .unwrap()
                .flush_endpoint_enabled
        );
        let err = load("batch_max_requests = -1\n").unwrap_err();
        assert!(
            err.0
                .ends_with("batch_max_requests: must be 0 or more, not -1"),
            "{err}"
        );
        let err = load("account_local_cache_seconds = 0.5\n").unwrap_err();
        assert!(
            err.0
                .ends_with("account_local_cache_seconds: invalid integer \"0.5\""),
            "{err}"
        );
    }

    #[test]
    fn interpolation_uses_here() {
        let s = load_env(
            "[DEFAULT]\nname = data\n[app:main]\nstorage_backend = sqlite\nstorage_url = sqlite:///%(here)s/%(name)s.db\npermission_backend = sqlite\ncache_backend = sqlite\n",
            &[],
        )
        .unwrap();
        assert_eq!(s.storage.url, "/etc/kinto/data.db");
        // An empty URL of the same kind falls back to the storage database.
        assert_eq!(s.permission.url, "/etc/kinto/data.db");
        assert_eq!(s.cache.url, "/etc/kinto/data.db");
        let err = load("project_name = 100%\n").unwrap_err();
        assert!(
            err.0
                .starts_with("/etc/kinto/kinto.ini: [app:main] project_name: '%' must be followed"),
            "{err}"
        );
    }

    #[test]
    fn backends() {
        let pg = "kinto.storage_backend = kinto.core.storage.postgresql\n\
                  kinto.storage_url = postgresql+psycopg2://u:secret@db/kinto\n\
                  kinto.permission_backend = cliquet.permission.postgresql\n\
                  kinto.permission_url = postgres://u:secret@db/kinto\n\
                  kinto.cache_backend = postgresql\nkinto.cache_url = postgresql://u:secret@db/cache\n\
                  kinto.storage_pool_maxconn = 50\nkinto.cache_pool_size = 5\n";
        let s = load(pg).unwrap();
        assert_eq!(s.storage.kind, BackendKind::PostgreSql);
        assert_eq!(s.storage.url, "postgresql://u:secret@db/kinto");
        assert_eq!(s.permission.url, s.storage.url);
        assert_eq!(s.cache.url, "postgresql://u:secret@db/cache");
        assert_eq!(
            (
                s.storage.pool_size,
                s.cache.pool_size,
                s.storage.pool_timeout
            ),
            (50, 5, 30)
        );
        let err = load("storage_backend = kinto.core.storage.redis\n").unwrap_err();
        assert!(err.0.starts_with("/etc/kinto/kinto.ini: [app:main] storage_backend: unknown storage backend \"kinto.core.storage.redis\""), "{err}");
        let err = load("storage_backend = kinto.core.cache.postgresql\n").unwrap_err();
        assert!(err.0.contains("unknown storage backend"), "{err}");
        let err = load("storage_backend = postgresql\nstorage_url = postgresql://u:pw@h:port/db\n")
            .unwrap_err();
        assert!(err.0.starts_with("/etc/kinto/kinto.ini: [app:main] storage_url: invalid PostgreSQL URL \"postgresql://u:***@h:port/db\""), "{err}");
        let err = load("storage_backend = postgresql\n").unwrap_err();
        assert!(err.0.contains("storage_url: is empty"), "{err}");
        let err = load("storage_backend = sqlite\nstorage_url = /abs/k.db\n").unwrap_err();
        // Permission stays on memory: not the storage database.
        assert!(err.0.contains("permission_backend: the permission backend must use the storage database (sqlite /abs/k.db), not memory"), "{err}");
        let err = load("storage_backend = postgresql\nstorage_url = postgresql://u:pw@h/db\npermission_backend = postgresql\npermission_url = postgresql://u:pw@h/other\n").unwrap_err();
        assert!(
            err.0.contains("postgresql://u:***@h/db") && !err.0.contains("pw"),
            "{err}"
        );
        let s = load("storage_backend = sqlite\nstorage_url = sqlite:////var/k.db\npermission_backend = sqlite\ncache_backend = memory\n").unwrap();
        assert_eq!(
            (s.storage.url.as_str(), s.cache.url.as_str()),
            ("/var/k.db", MEMORY)
        );
    }

    #[test]
    fn memory_needs_one_process() {
        let s = load("").unwrap();
        assert!(s.check_processes(1).is_ok());
        let err = s.check_processes(2).unwrap_err();
        assert!(
            err.0.starts_with(
                "/etc/kinto/kinto.ini: [app:main] storage_backend: the memory backend"
            ),
            "{err}"
        );
    }

    #[test]
    fn file_errors_name_the_line() {
        let err = load_env("[uwsgi]\nprocesses = 1\n", &[]).unwrap_err();
        assert_eq!(
            err.0,
            "/etc/kinto/kinto.ini: no [app:main] section (Kinto's settings live there)"
        );
        let err = load("paginate_by = 1\nnot a setting line\n").unwrap_err();
        assert_eq!(err.0, "/etc/kinto/kinto.ini: line 3: [app:main] line \"not a setting line\" is neither `key = value` nor a section header");
    }

    #[test]
    fn seed_settings_load() {
        let s = load(
            "kinto.flush_endpoint_enabled = false\nkinto.http_scheme = https\nkinto.paginate_by = 100\n\
             kinto.batch_max_requests = 25\nkinto.storage_pool_maxconn = 50\nkinto.cache_pool_maxconn = 50\n\
             kinto.permission_pool_maxconn = 50\nfxa-oauth.cache_ttl_seconds = 3600\n\
             kinto.bucket_read_principals = system.Authenticated\nkinto.statsd_url = udp://carbon.server:8125\n\
             kinto.logging_renderer = cliquet.logs.MozillaHekaRenderer\n",
        )
        .unwrap();
        assert_eq!(s.http_scheme.as_deref(), Some("https"));
        assert_eq!(s.paginate_by, Some(100));
        assert_eq!(s.storage.pool_size, 50);
        assert_eq!(s.get("fxa-oauth.cache_ttl_seconds"), Some("3600"));
        assert_eq!(
            s.get_list("bucket_read_principals"),
            vec!["system.Authenticated"]
        );
        assert_eq!(s.statsd_url.as_deref(), Some("udp://carbon.server:8125"));
        assert_eq!(
            s.logging_renderer.as_deref(),
            Some("cliquet.logs.MozillaHekaRenderer")
        );
    }

    #[test]
    fn repository_kinto_ini_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kinto.ini");
        let text = std::fs::read_to_string(&path).unwrap();
        let s = Settings::from_text(&path, &text, &|_| None).unwrap();
        let db = path.parent().unwrap().join("kinto.db");
        assert_eq!(s.storage.kind, BackendKind::Sqlite);
        assert_eq!(Path::new(&s.storage.url), db);
        assert_eq!(s.cache.url, s.storage.url);
        assert!(s.check_processes(2).is_ok());
        assert!(s.has_plugin("kinto.plugins.accounts"));
    }

    #[test]
    fn docs_match_the_registry() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/settings.md");
        let generated = registry::markdown();
        if std::env::var_os("KINTO_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "docs/settings.md is out of date: run `KINTO_UPDATE_DOCS=1 cargo test --lib docs_match_the_registry`"
        );
    }
}
