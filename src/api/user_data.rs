//! `DELETE /v1/__user_data__/{principal}` (section 7.8): removes what belongs to a principal
//! (objects whose only writer it is, with their children), and the principal from every other
//! access-control entry and from its groups. Allowed to `user-data_delete_principals`.

use super::http::json;
use super::resource::cascade_delete;
use super::Ctx;
use crate::authz::Kind;
use crate::error::ApiResult;
use crate::storage::{ListRef, Transaction};
use serde_json::json;
use std::collections::BTreeSet;
use worker::Response;

const PERMISSIONS: &[&str] = &[
    "read",
    "write",
    "collection:create",
    "group:create",
    "record:create",
];

/// The storage list, id and kind of an object URI (`None` for URIs that are not objects).
fn locate(uri: &str) -> Option<(Kind, String, String)> {
    let parts: Vec<&str> = uri.trim_start_matches('/').split('/').collect();
    let (kind, id) = match parts.as_slice() {
        ["buckets", b] => (Kind::Bucket, *b),
        ["buckets", _, "collections", c] => (Kind::Collection, *c),
        ["buckets", _, "groups", g] => (Kind::Group, *g),
        ["buckets", _, "collections", _, "records", r] => (Kind::Record, *r),
        ["accounts", a] => (Kind::Account, *a),
        _ => return None,
    };
    let parent = match kind {
        Kind::Account => id.to_string(),
        _ => {
            let cut = uri.len() - id.len() - kind.plural().len() - 2;
            uri[..cut].to_string()
        }
    };
    Some((kind, parent, id.to_string()))
}

/// Deletes the principal's data.
pub fn delete(ctx: &mut Ctx, tx: &mut dyn Transaction, principal: &str) -> ApiResult<Response> {
    let principals = ctx.principals(tx)?;
    let allowed = ctx
        .cfg
        .grants
        .principals("user-data_delete_principals")
        .is_some_and(|p| !p.is_disjoint(&principals));
    if !allowed {
        return Err(ctx.deny());
    }
    let only = BTreeSet::from([principal.to_string()]);
    let writable = tx.get_accessible_objects(&only, &[("*".into(), "write".into())])?;
    // Parents first: their cascades remove the children.
    let mut uris: Vec<&String> = writable.keys().collect();
    uris.sort_by_key(|u| u.matches('/').count());
    let mut deleted: Vec<String> = Vec::new();
    for uri in uris {
        if deleted.iter().any(|d| uri.starts_with(&format!("{d}/"))) {
            continue;
        }
        if tx.get_object_permission_principals(uri, "write")? != only {
            continue;
        }
        let Some((kind, parent, id)) = locate(uri) else {
            continue;
        };
        let list = ListRef {
            resource_name: kind.name(),
            parent_id: &parent,
        };
        if tx.delete(list, &id, true, None)?.is_some() {
            if kind == Kind::Account {
                // As for `DELETE /accounts/{id}`: its password must stop working at once.
                super::accounts::forget_verification(ctx, &id);
            }
            cascade_delete(tx, kind, uri)?;
            deleted.push(uri.clone());
        }
    }
    let bound: Vec<(String, String)> = PERMISSIONS
        .iter()
        .map(|p| ("*".to_string(), p.to_string()))
        .collect();
    for (uri, perms) in tx.get_accessible_objects(&only, &bound)? {
        for perm in perms {
            tx.remove_principal_from_ace(&uri, &perm, principal)?;
        }
    }
    for group in tx.get_user_principals(principal)? {
        tx.remove_user_principal(principal, &group)?;
    }
    Ok(json(200, &json!({"data": {"principal": principal}})))
}
