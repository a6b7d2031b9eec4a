//! The permission role: access control entries per object URI and the principals of each user.
//! Mirrors `kinto.core.permission.PermissionBase`; implemented on a storage transaction.

use crate::storage::Result;
use std::collections::{BTreeMap, BTreeSet};

/// Permissions of one object: permission name → principals.
pub type ObjectPermissions = BTreeMap<String, BTreeSet<String>>;

pub trait Permission {
    fn add_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()>;
    fn remove_user_principal(&mut self, user_id: &str, principal: &str) -> Result<()>;
    /// Removes a principal from every user (a deleted group).
    fn remove_principal(&mut self, principal: &str) -> Result<()>;
    /// The principals of a user: its own rows plus those of `system.Authenticated`.
    fn get_user_principals(&mut self, user_id: &str) -> Result<BTreeSet<String>>;
    fn add_principal_to_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()>;
    fn remove_principal_from_ace(
        &mut self,
        object_id: &str,
        permission: &str,
        principal: &str,
    ) -> Result<()>;
    fn get_object_permission_principals(
        &mut self,
        object_id: &str,
        permission: &str,
    ) -> Result<BTreeSet<String>>;
    /// Permissions of several objects at once (one query), in the order asked.
    fn get_objects_permissions(&mut self, object_ids: &[String]) -> Result<Vec<ObjectPermissions>>;
    /// Replaces the given permissions of an object (permissions not named are kept; an empty set
    /// removes the permission).
    fn replace_object_permissions(
        &mut self,
        object_id: &str,
        permissions: &ObjectPermissions,
    ) -> Result<()>;
    /// Removes every ACE of objects whose id matches one of the patterns (`*` wildcards).
    fn delete_object_permissions(&mut self, patterns: &[String]) -> Result<()>;
    /// Objects (id matching one of the `(pattern, permission)` pairs) on which one of the principals
    /// holds the permission: object id → permissions held.
    fn get_accessible_objects(
        &mut self,
        principals: &BTreeSet<String>,
        bound_permissions: &[(String, String)],
    ) -> Result<BTreeMap<String, BTreeSet<String>>>;
    /// Principals holding any of the `(object_id, permission)` pairs.
    fn get_authorized_principals(
        &mut self,
        bound_permissions: &[(String, String)],
    ) -> Result<BTreeSet<String>>;
    /// True when one of the principals holds one of the `(object_id, permission)` pairs.
    fn check_permission(
        &mut self,
        principals: &BTreeSet<String>,
        bound_permissions: &[(String, String)],
    ) -> Result<bool>;
}

pub mod postgresql;
pub mod sqlite;
