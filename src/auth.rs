//! Authentication: the ordered `multiauth.policies`, each turning an `Authorization` header into a
//! prefixed user id (`basicauth:<hmac>`), and the `WWW-Authenticate` challenges of a 401.
//!
//! A request is never rejected here: credentials that no policy accepts make it anonymous.

use crate::error::ApiResult;
use crate::settings::Settings;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The implementation behind one configured policy name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PolicyKind {
    /// `kinto.core.authentication.BasicAuthAuthenticationPolicy`: any user:password pair.
    BasicAuth,
    /// `kinto.plugins.accounts.AccountsPolicy`: `Basic` credentials checked against the
    /// accounts of the accounts plugin.
    Accounts,
}

#[derive(Debug, Clone)]
struct Policy {
    name: String,
    kind: PolicyKind,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Prefixed user id, e.g. `basicauth:fddf…`.
    pub id: String,
    /// The policy name that accepted the credentials (`authn_type` in logs).
    pub policy: String,
}

/// The configured policies, built once per worker.
#[derive(Debug, Clone)]
pub struct Authenticator {
    policies: Vec<Policy>,
    hmac_secret: String,
}

impl Authenticator {
    pub fn new(settings: &Settings) -> Self {
        let policies =
            settings
                .multiauth_policies
                .iter()
                .filter_map(|name| {
                    let used = settings
                        .raw
                        .get(&format!("multiauth.policy.{name}.use"))
                        .map(|s| s.trim().to_string());
                    let kind = match used.as_deref() {
                        None if name == "basicauth" => PolicyKind::BasicAuth,
                        Some("kinto.core.authentication.BasicAuthAuthenticationPolicy") => {
                            PolicyKind::BasicAuth
                        }
                        Some("kinto.plugins.accounts.AccountsPolicy")
                        | Some("kinto.plugins.accounts.AccountsAuthenticationPolicy")
                        | Some(
                            "kinto.plugins.accounts.authentication.AccountsAuthenticationPolicy",
                        ) => PolicyKind::Accounts,
                        _ => {
                            log::warn!("authentication policy {name:?} is not supported; ignored");
                            return None;
                        }
                    };
                    Some(Policy {
                        name: name.clone(),
                        kind,
                    })
                })
                .collect();
        Authenticator {
            policies,
            hmac_secret: settings.userid_hmac_secret.clone(),
        }
    }

    /// True when a policy of that name is configured (capabilities of the root view).
    pub fn has_basicauth(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.kind == PolicyKind::BasicAuth)
    }

    /// The `WWW-Authenticate` values of a 401, one per policy able to challenge, in order.
    pub fn challenges(&self) -> Vec<String> {
        self.policies
            .iter()
            .map(|_| "Basic realm=\"Realm\"".to_string())
            .collect()
    }

    /// True when the accounts policy is configured.
    pub fn has_accounts(&self) -> bool {
        self.policies.iter().any(|p| p.kind == PolicyKind::Accounts)
    }

    /// Tries the policies in order; the first that yields a user id wins. `verify_account`
    /// checks `(account id, password)` for the accounts policy (it needs the backends).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        verify_account: &mut dyn FnMut(&str, &str) -> ApiResult<bool>,
    ) -> ApiResult<Option<User>> {
        let Some(authorization) = authorization else {
            return Ok(None);
        };
        for policy in &self.policies {
            let found = match policy.kind {
                PolicyKind::BasicAuth => self
                    .basicauth(authorization)
                    .map(|id| format!("{}:{id}", policy.name)),
                // The accounts policy always prefixes with `account`, whatever its name.
                PolicyKind::Accounts => match basic_credentials(authorization) {
                    Some((id, password)) if verify_account(&id, &password)? => {
                        Some(format!("account:{id}"))
                    }
                    _ => None,
                },
            };
            if let Some(id) = found {
                return Ok(Some(User {
                    id,
                    policy: policy.name.clone(),
                }));
            }
        }
        Ok(None)
    }

    /// Kinto's basicauth: hex HMAC-SHA256 of `user:password` keyed with `userid_hmac_secret`.
    fn basicauth(&self, authorization: &str) -> Option<String> {
        let (username, password) = basic_credentials(authorization)?;
        Some(hmac_hex(
            self.hmac_secret.as_bytes(),
            format!("{username}:{password}").as_bytes(),
        ))
    }
}

/// Decodes `Basic <base64(user:password)>`; the username must not be empty.
pub fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let (scheme, encoded) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

/// Lower-case hex HMAC-SHA256.
pub fn hmac_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}
