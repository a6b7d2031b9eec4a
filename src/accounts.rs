//! Accounts of the accounts plugin, outside HTTP: bcrypt password hashing compatible with
//! Kinto's (`$2b$`, cost 12), login verification with the shared-cache shortcut Kinto uses (so
//! that every worker process sees password changes at once), and `kinto create-user`.

use crate::auth::hmac_hex;
use crate::cache::Cache;
use crate::settings::Settings;
use crate::storage::{Backend, ListRef};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Kinto's `ACCOUNT_POLICY_NAME`: the prefix of account user ids, whatever the policy name.
pub const POLICY_PREFIX: &str = "account";

/// bcrypt cost of new hashes (Python's `bcrypt.gensalt()` default).
const BCRYPT_COST: u32 = 12;

/// Bound of the per-worker memory of TTL refreshes (cleared when reached).
const MAX_REMEMBERED: usize = 10_000;

/// What account verification needs from the settings, parsed once, and this worker's memory of
/// when it last refreshed each verified login's TTL in the shared cache.
#[derive(Debug)]
pub struct AccountSettings {
    hmac_secret: String,
    /// `account_cache_ttl_seconds` (default 30).
    pub cache_ttl_seconds: f64,
    /// Cache key → when this worker last set or refreshed it. Only saves TTL-refresh writes: the
    /// shared entry is read on every login, so a password change is seen by every worker at once.
    refreshed: Mutex<HashMap<String, Instant>>,
}

impl AccountSettings {
    pub fn new(settings: &Settings) -> Self {
        let cache_ttl_seconds = settings
            .raw
            .get("account_cache_ttl_seconds")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(30.0);
        AccountSettings {
            hmac_secret: settings.userid_hmac_secret.clone(),
            cache_ttl_seconds,
            refreshed: Mutex::new(HashMap::new()),
        }
    }

    /// True when the shared entry's TTL was refreshed by this worker less than half a TTL ago
    /// (refreshing again would only cost a write).
    fn recently_refreshed(&self, key: &str) -> bool {
        let half = Duration::from_secs_f64(self.cache_ttl_seconds.max(0.0) / 2.0);
        let refreshed = self.refreshed.lock().unwrap_or_else(|e| e.into_inner());
        refreshed.get(key).is_some_and(|at| at.elapsed() < half)
    }

    fn remember_refresh(&self, key: &str) {
        let mut refreshed = self.refreshed.lock().unwrap_or_else(|e| e.into_inner());
        if refreshed.len() >= MAX_REMEMBERED {
            refreshed.clear();
        }
        refreshed.insert(key.to_string(), Instant::now());
    }

    /// The cache key of a verified login: hex HMAC of `accounts:<id>:verified` (Kinto's
    /// `ACCOUNT_CACHE_KEY`); the cache backend adds `cache_prefix`.
    pub fn cache_key(&self, username: &str) -> String {
        hmac_hex(
            self.hmac_secret.as_bytes(),
            format!("accounts:{username}:verified").as_bytes(),
        )
    }
}

/// Hashes a password as Kinto stores it (`$2b$12$…`).
pub fn hash_password(password: &str) -> Result<String, String> {
    bcrypt::hash_with_result(password.as_bytes(), BCRYPT_COST)
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// True when `password` matches a stored bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
pub fn check_password(password: &str, hashed: &str) -> bool {
    bcrypt::verify(password.as_bytes(), hashed).unwrap_or(false)
}

/// Kinto's `account_check`: a login recently verified with the same password is accepted from
/// the shared cache (and its TTL refreshed, at most every half TTL per worker); otherwise the
/// stored bcrypt hash is checked and a success is cached. Backend failures count as "not
/// authenticated by this policy".
pub fn verify(
    accounts: &AccountSettings,
    backend: &dyn Backend,
    cache: &dyn Cache,
    username: &str,
    password: &str,
) -> bool {
    let key = accounts.cache_key(username);
    let proof = hmac_hex(key.as_bytes(), password.as_bytes());
    if let Ok(Some(Value::String(cached))) = cache.get(&key) {
        if cached == proof {
            if !accounts.recently_refreshed(&key)
                && cache.expire(&key, accounts.cache_ttl_seconds).is_ok()
            {
                accounts.remember_refresh(&key);
            }
            return true;
        }
    }
    let stored = match stored_hash(backend, username) {
        Ok(Some(hash)) => hash,
        Ok(None) => return false,
        Err(e) => {
            log::error!("cannot read account {username:?}: {e}");
            return false;
        }
    };
    if !check_password(password, &stored) {
        return false;
    }
    if let Err(e) = cache.set(
        &key,
        &Value::String(proof),
        Some(accounts.cache_ttl_seconds),
    ) {
        log::error!("cannot cache the login of {username:?}: {e:?}");
    } else {
        accounts.remember_refresh(&key);
    }
    true
}

/// The stored password hash of an account (its own short read-only transaction).
fn stored_hash(backend: &dyn Backend, username: &str) -> Result<Option<String>, String> {
    let mut tx = backend.begin().map_err(|e| format!("{e:?}"))?;
    let found = tx.get(
        ListRef {
            resource_name: "account",
            parent_id: username,
        },
        username,
    );
    let _ = tx.rollback();
    let found = found.map_err(|e| format!("{e:?}"))?;
    Ok(found.and_then(|account| {
        account
            .get("password")
            .and_then(Value::as_str)
            .map(str::to_string)
    }))
}

/// Kinto's account id pattern: `^[a-zA-Z0-9][+.@a-zA-Z0-9_-]*$`.
pub fn valid_account_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.@_-".contains(c))
}

/// `kinto create-user`: creates (or replaces) the account `username` with a bcrypt hash of
/// `password` and gives it `write` on itself, in one transaction. Errors are messages for the
/// command line (readonly server, plugin not included, invalid username, backend failure).
pub fn create_user(
    settings: &Settings,
    backend: &dyn Backend,
    username: &str,
    password: &str,
) -> Result<(), String> {
    if settings.readonly {
        return Err("Cannot create a user with a readonly server.".into());
    }
    if !settings
        .includes
        .iter()
        .any(|i| i.trim() == "kinto.plugins.accounts")
    {
        return Err("Cannot create a user when the accounts plugin is not installed.".into());
    }
    if !valid_account_id(username) {
        return Err(format!(
            "{username} is not a valid username. Username should match \
             ^[a-zA-Z0-9][+.@a-zA-Z0-9_-]*$"
        ));
    }
    let hashed = hash_password(password)?;
    let mut account = serde_json::Map::new();
    account.insert("id".into(), Value::String(username.into()));
    account.insert("password".into(), Value::String(hashed));
    let fail = |e: crate::storage::BackendError| format!("storage error: {e:?}");
    let mut tx = backend.begin().map_err(fail)?;
    let written = tx
        .update(
            ListRef {
                resource_name: "account",
                parent_id: username,
            },
            username,
            account,
        )
        .and_then(|_| {
            tx.add_principal_to_ace(
                &format!("/accounts/{username}"),
                "write",
                &format!("{POLICY_PREFIX}:{username}"),
            )
        });
    match written {
        Ok(()) => tx.commit().map_err(fail),
        Err(e) => {
            let _ = tx.rollback();
            Err(fail(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_kinto_compatible() {
        let hashed = hash_password("s3cret").unwrap();
        assert!(hashed.starts_with("$2b$12$"), "{hashed}");
        assert!(check_password("s3cret", &hashed));
        assert!(!check_password("wrong", &hashed));
    }

    #[test]
    fn verifies_a_hash_made_by_python_bcrypt() {
        // Made by the reference Kinto 26.5.0 (`PUT /accounts/pt-alice` with password `pa`).
        let kinto = "$2b$12$08XLYqnJJXdsUivW75eoceUFqoyWUn9Lm.Pp9cLhZOV6/dfFQAjdS";
        assert!(check_password("pa", kinto));
        assert!(!check_password("pb", kinto));
    }

    #[test]
    fn account_ids() {
        assert!(valid_account_id("a.b@c+d"));
        assert!(valid_account_id("alice_1-x"));
        assert!(!valid_account_id("bad id"));
        assert!(!valid_account_id(".alice"));
        assert!(!valid_account_id(""));
    }
}
