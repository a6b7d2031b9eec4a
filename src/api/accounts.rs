//! The accounts plugin (`kinto.plugins.accounts`, section 5.3): bcrypt-hashed passwords on
//! `/accounts/<id>` objects, the rules on who may create which account, and the verification
//! of `Basic` credentials against them, cached in the shared cache like Kinto does.

use super::Ctx;
use crate::auth::hmac_hex;
use crate::error::{ApiError, ApiResult, Location};
use crate::settings::Settings;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Kinto's bcrypt cost factor.
const BCRYPT_COST: u32 = 12;

/// The bcrypt cost of new hashes: Kinto's 12, unless the kinto-rs setting
/// `account_bcrypt_cost` (4 to 31) says otherwise (tests use a low cost; hashes of any cost
/// verify).
pub fn bcrypt_cost(settings: &Settings) -> u32 {
    settings
        .raw
        .get("account_bcrypt_cost")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|c| (4..=31).contains(c))
        .unwrap_or(BCRYPT_COST)
}

pub fn enabled(settings: &Settings) -> bool {
    settings
        .includes
        .iter()
        .any(|i| i == "kinto.plugins.accounts")
}

/// `account_cache_ttl_seconds` (default 30).
pub fn cache_ttl(settings: &Settings) -> f64 {
    settings
        .raw
        .get("account_cache_ttl_seconds")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(30.0)
}

/// How long a worker trusts a verification it remembers: the kinto-rs setting
/// `account_local_cache_seconds` (default [`super::verified::LOCAL_CAP`], 0 disables), always
/// bounded by `account_cache_ttl_seconds`.
pub fn local_cache_cap(settings: &Settings) -> std::time::Duration {
    settings
        .raw
        .get("account_local_cache_seconds")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(super::verified::LOCAL_CAP)
}

/// The cache key of a verified account: hex HMAC(`userid_hmac_secret`, `accounts:<id>:verified`).
pub fn cache_key(secret: &str, id: &str) -> String {
    hmac_hex(
        secret.as_bytes(),
        format!("accounts:{id}:verified").as_bytes(),
    )
}

/// The cached value proving a password was verified: hex HMAC(cache key, password).
pub fn cache_value(key: &str, password: &str) -> String {
    hmac_hex(key.as_bytes(), password.as_bytes())
}

/// Checks a password against a stored bcrypt hash.
pub fn verify(password: &str, hash: &str) -> bool {
    crate::accounts::check_password(password, hash)
}

/// True when one of the principals is in `account_write_principals`.
pub fn is_admin(ctx: &Ctx, principals: &BTreeSet<String>) -> bool {
    ctx.cfg
        .grants
        .principals("account_write_principals")
        .is_some_and(|admins| !admins.is_disjoint(principals))
}

/// The principal given `write` on an account: `account:<id>` when an administrator or an
/// anonymous caller writes it, otherwise the caller (who may only write their own account).
pub fn owner(ctx: &Ctx, id: &str, principals: &BTreeSet<String>) -> String {
    if ctx.user.is_none() || is_admin(ctx, principals) {
        format!("account:{id}")
    } else {
        ctx.writer()
    }
}

/// True when an authenticated, non-administrator caller addresses an account that is not theirs.
pub fn foreign(ctx: &Ctx, id: &str, principals: &BTreeSet<String>) -> bool {
    match &ctx.user {
        Some(user) => {
            let own = user.id.split_once(':').map(|(_, i)| i).unwrap_or(&user.id);
            own != id && !is_admin(ctx, principals)
        }
        None => false,
    }
}

/// The rules of an account write: non-administrators may only write their own account, the
/// password is required, and a password sent is stored as a bcrypt hash.
pub fn prepare_write(
    ctx: &mut Ctx,
    id: &str,
    principals: &BTreeSet<String>,
    data: &mut Map<String, Value>,
    password_sent: bool,
) -> ApiResult<()> {
    if let Some(user) = &ctx.user {
        let own = user.id.split_once(':').map(|(_, i)| i).unwrap_or(&user.id);
        if own != id && !is_admin(ctx, principals) {
            return Err(ApiError::invalid(
                Location::Body,
                Some("data.id"),
                "Username and account ID do not match.",
            ));
        }
    }
    match data.get("password") {
        None => Err(ApiError::invalid(
            Location::Body,
            Some("data.password"),
            "Required",
        )),
        Some(Value::String(password)) if password_sent => {
            let hash = crate::accounts::hash_password(&ctx.cfg.settings, password)
                .map_err(ApiError::Internal)?;
            data.insert("password".into(), Value::String(hash));
            forget_verification(ctx, id);
            Ok(())
        }
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(ApiError::invalid(
            Location::Body,
            Some("data.password"),
            format!("{other} is not a string: {{'password': ''}}"),
        )),
    }
}

/// Drops the cached verification of an account (password changed, account deleted), once the
/// change is committed.
pub fn forget_verification(ctx: &mut Ctx, id: &str) {
    let key = cache_key(&ctx.cfg.settings.userid_hmac_secret, id);
    ctx.cache_writes.push((key, None, None));
}
