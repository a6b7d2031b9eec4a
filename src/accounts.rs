//! Accounts of the accounts plugin outside request handling: `kinto create-user`, the plugin's
//! startup checks, and the bcrypt hashes Kinto stores (`$2b$`, cost 12, so accounts move between
//! Kinto and kinto-rs).

use crate::settings::Settings;
use crate::storage::{Backend, ListRef};
use serde_json::Value;

/// Kinto's `ACCOUNT_POLICY_NAME`: the prefix of account user ids, whatever the policy name.
pub const POLICY_PREFIX: &str = "account";

/// Hashes a password as Kinto stores it (`$2b$`, `account_bcrypt_cost` or 12).
pub fn hash_password(settings: &Settings, password: &str) -> Result<String, String> {
    hash_with_cost(password, crate::api::accounts::bcrypt_cost(settings))
}

/// A `$2b$` bcrypt hash of the given cost.
pub fn hash_with_cost(password: &str, cost: u32) -> Result<String, String> {
    bcrypt::hash_with_result(password.as_bytes(), cost)
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// True when `password` matches a stored bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
pub fn check_password(password: &str, hashed: &str) -> bool {
    bcrypt::verify(password.as_bytes(), hashed).unwrap_or(false)
}

/// The accounts plugin's startup checks (Kinto raises `ConfigurationError`): with
/// `kinto.plugins.accounts` in `includes`, a `multiauth.policy.<name>.use` must name the accounts
/// policy, `basicauth` must not come before it in `multiauth.policies`, and every principal of
/// `account_create_principals` but `system.Everyone` must be in `account_write_principals`.
/// The server should refuse to start on an error.
pub fn check_settings(settings: &Settings) -> Result<(), String> {
    if !settings
        .includes
        .iter()
        .any(|i| i.trim() == "kinto.plugins.accounts")
    {
        return Ok(());
    }
    let policy = settings.raw.iter().find_map(|(key, value)| {
        let name = key
            .strip_prefix("multiauth.policy.")?
            .strip_suffix(".use")?;
        let value = value.trim();
        (value.ends_with("AccountsPolicy") || value.ends_with("AccountsAuthenticationPolicy"))
            .then(|| name.to_string())
    });
    let Some(policy) = policy else {
        return Err("Account policy missing the 'multiauth.policy.*.use' setting. See \
                    AccountsPolicy in docs https://kinto.readthedocs.io/en/stable/api/1.x/accounts.html."
            .into());
    };
    let order = &settings.multiauth_policies;
    let position = |name: &str| order.iter().position(|p| p == name);
    if let (Some(basic), Some(account)) = (position("basicauth"), position(&policy)) {
        if basic < account {
            return Err(format!(
                "'basicauth' should not be mentioned before '{policy}' in \
                 'multiauth.policies' setting."
            ));
        }
    }
    let split = |name: &str| -> std::collections::BTreeSet<String> {
        settings
            .raw
            .get(name)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let admins = split("account_write_principals");
    let stuck: Vec<String> = split("account_create_principals")
        .into_iter()
        .filter(|p| p != "system.Everyone" && !admins.contains(p))
        .collect();
    if !stuck.is_empty() {
        return Err(format!(
            "Configuration has some principals in account_create_principals but not in \
             account_write_principals. These principals will only be able to create their own \
             accounts. This may not be what you want.\nIf you want these users to be able to \
             create accounts for other users, add them to account_write_principals.\n\
             Affected users: {stuck:?}"
        ));
    }
    Ok(())
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
    let hashed = hash_password(settings, password)?;
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
        let hashed = hash_with_cost("s3cret", 12).unwrap();
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
