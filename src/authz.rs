//! Authorization: Kinto's permission inheritance tree (which ACEs grant which permission on
//! which object) and the settings-based principals (`<resource>_<perm>_principals`). The ACE
//! check itself runs in the storage backend, folded into the query reading the object.

use crate::settings::Settings;
use std::collections::{BTreeMap, BTreeSet};

pub const EVERYONE: &str = "system.Everyone";
pub const AUTHENTICATED: &str = "system.Authenticated";

/// The resource types of the object hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Bucket,
    Collection,
    Group,
    Record,
    /// Accounts of the accounts plugin (`/accounts/<id>`, each its own parent).
    Account,
    /// History entries of the history plugin (`/buckets/<bid>/history`, plural only).
    History,
}

impl Kind {
    /// Kinto's `resource_name`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Bucket => "bucket",
            Kind::Collection => "collection",
            Kind::Group => "group",
            Kind::Record => "record",
            Kind::Account => "account",
            Kind::History => "history",
        }
    }

    /// Whether `id` is acceptable as an id of this kind (accounts also allow `.`, `@`, `+`).
    pub fn valid_id(self, id: &str) -> bool {
        let extra: &[char] = match self {
            Kind::Account => &['_', '-', '+', '.', '@'],
            _ => &['_', '-'],
        };
        let mut chars = id.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    }

    /// The URL segment of the plural endpoint.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Bucket => "buckets",
            Kind::Collection => "collections",
            Kind::Group => "groups",
            Kind::Record => "records",
            Kind::Account => "accounts",
            Kind::History => "history",
        }
    }

    /// Permissions that can be granted on an object of this kind (section 2.1), in the order
    /// Kinto lists them in error messages.
    pub fn permissions(self) -> &'static [&'static str] {
        match self {
            Kind::Bucket => &["read", "write", "collection:create", "group:create"],
            Kind::Collection => &["read", "write", "record:create"],
            Kind::Group | Kind::Record | Kind::Account | Kind::History => &["read", "write"],
        }
    }

    /// The permission to create an object of this kind in its parent.
    pub fn create_permission(self) -> &'static str {
        match self {
            Kind::Bucket => "bucket:create",
            Kind::Collection => "collection:create",
            Kind::Group => "group:create",
            Kind::Record => "record:create",
            Kind::Account => "account:create",
            Kind::History => "history:create",
        }
    }

    /// The kind of the parent object (`None` for buckets: the root).
    pub fn parent(self) -> Option<Kind> {
        match self {
            Kind::Bucket | Kind::Account => None,
            Kind::Collection | Kind::Group | Kind::History => Some(Kind::Bucket),
            Kind::Record => Some(Kind::Collection),
        }
    }
}

/// The URIs of an object and its ancestors (`/buckets/b`, `/buckets/b/collections/c`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub bucket: Option<String>,
    pub collection: Option<String>,
    pub group: Option<String>,
    pub record: Option<String>,
    pub account: Option<String>,
}

impl Chain {
    pub fn uri(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Bucket => self.bucket.as_deref(),
            Kind::Collection => self.collection.as_deref(),
            Kind::Group => self.group.as_deref(),
            Kind::Record => self.record.as_deref(),
            Kind::Account => self.account.as_deref(),
            Kind::History => None,
        }
    }
}

/// The pseudo permission of reading an object itself (bucket or collection attributes), which
/// more rights imply than reading its children's list.
pub const READ_ATTRIBUTES: &str = "read:attributes";

/// Kinto's `PERMISSIONS_INHERITANCE_TREE`: the (object kind, permissions) pairs that grant
/// `perm` on an object of kind `target`.
fn inheritance(target: Kind, perm: &str) -> &'static [(Kind, &'static [&'static str])] {
    use Kind::*;
    match (target, perm) {
        (Bucket, "write") => &[(Bucket, &["write"])],
        (Bucket, "read") => &[(Bucket, &["write", "read"])],
        (Bucket, READ_ATTRIBUTES) => &[(
            Bucket,
            &["write", "read", "collection:create", "group:create"],
        )],
        (Bucket, "collection:create") => &[(Bucket, &["write", "collection:create"])],
        (Bucket, "group:create") => &[(Bucket, &["write", "group:create"])],
        (Group, "write") => &[(Bucket, &["write"]), (Group, &["write"])],
        (Group, "read") => &[(Bucket, &["write", "read"]), (Group, &["write", "read"])],
        (Collection, "write") => &[(Bucket, &["write"]), (Collection, &["write"])],
        (Collection, "read") => &[
            (Bucket, &["write", "read"]),
            (Collection, &["write", "read"]),
        ],
        (Collection, READ_ATTRIBUTES) => &[
            (Bucket, &["write", "read"]),
            (Collection, &["write", "read", "record:create"]),
        ],
        (Collection, "record:create") => &[
            (Bucket, &["write"]),
            (Collection, &["write", "record:create"]),
        ],
        (Record, "write") => &[
            (Bucket, &["write"]),
            (Collection, &["write"]),
            (Record, &["write"]),
        ],
        (Record, "read") => &[
            (Bucket, &["write", "read"]),
            (Collection, &["write", "read"]),
            (Record, &["write", "read"]),
        ],
        (Account, "write") => &[(Account, &["write"])],
        (Account, "read") => &[(Account, &["write", "read"])],
        _ => &[],
    }
}

/// The `(object URI, permission)` pairs granting `perm` on the `target` object of `chain`.
pub fn bound_permissions(chain: &Chain, target: Kind, perm: &str) -> Vec<(String, String)> {
    let mut bound = Vec::new();
    for (kind, perms) in inheritance(target, perm) {
        if let Some(uri) = chain.uri(*kind) {
            for p in *perms {
                bound.push((uri.to_string(), p.to_string()));
            }
        }
    }
    bound
}

/// The object-level permissions through which an object of `kind` shows in a restricted plural
/// view (read: the object row of its read permission; write for plural DELETE).
pub fn shared_permissions(kind: Kind, write: bool) -> &'static [&'static str] {
    if write {
        return &["write"];
    }
    match kind {
        Kind::Bucket => &["write", "read", "collection:create", "group:create"],
        Kind::Collection => &["write", "read", "record:create"],
        Kind::Group | Kind::Record | Kind::Account | Kind::History => &["write", "read"],
    }
}

/// The principals granted by settings, per setting name, computed once.
#[derive(Debug, Clone, Default)]
pub struct SettingsGrants {
    by_setting: BTreeMap<String, BTreeSet<String>>,
}

impl SettingsGrants {
    pub fn new(settings: &Settings) -> Self {
        let mut by_setting: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        by_setting.insert(
            "bucket_create_principals".into(),
            [AUTHENTICATED.to_string()].into(),
        );
        by_setting.insert(
            "permissions_read_principals".into(),
            [EVERYONE.to_string()].into(),
        );
        for (name, value) in &settings.raw {
            if name.ends_with("_principals") {
                // Kinto splits on whitespace only: a comma stays part of the principal.
                let principals: BTreeSet<String> =
                    value.split_whitespace().map(str::to_string).collect();
                by_setting.insert(name.clone(), principals);
            }
        }
        SettingsGrants { by_setting }
    }

    /// The principals of one setting (empty when unset).
    pub fn principals(&self, setting: &str) -> Option<&BTreeSet<String>> {
        self.by_setting.get(setting)
    }

    /// Kinto's `RouteFactory.check_permission` settings part: for each bound permission `p`,
    /// the setting `<resource>_<p>_principals` (or `p` with `:` → `_` when `p` is already about
    /// `resource`, e.g. `record:create` → `record_create_principals`).
    pub fn allows(
        &self,
        resource: &str,
        bound: &[(String, String)],
        principals: &BTreeSet<String>,
    ) -> bool {
        bound.iter().any(|(_, perm)| {
            let setting = if perm.starts_with(resource) {
                format!("{}_principals", perm.replace(':', "_"))
            } else {
                format!("{resource}_{perm}_principals")
            };
            self.by_setting
                .get(&setting)
                .is_some_and(|allowed| !allowed.is_disjoint(principals))
        })
    }
}
