//! The accounts plugin over HTTP (section 5.3): `/accounts` and `/accounts/<id>`, with Kinto's
//! rules on who sees and writes which account (administrators from `account_write_principals`,
//! anonymous sign-up from `account_create_principals`), password hashing on every write that
//! carries one, and the shared verification cache dropped on changes. Also the request
//! authentication that consults accounts.

use super::plugin_list::{self, ListSpec};
use super::resource::body::{self, Mode};
use super::resource::{
    conditions, invalid_id, keep_timestamp_hint, object_response, patch, precondition_failed,
    Condition,
};
use super::{App, Ctx};
use crate::accounts::{hash_password, valid_account_id, POLICY_PREFIX};
use crate::auth::User;
use crate::error::{ApiError, ApiResult, Location};
use crate::permission::ObjectPermissions;
use crate::storage::{ListRef, Object, Transaction};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use worker::Response;

impl App {
    /// The request's user: the configured policies in order, accounts checked against storage
    /// and the shared verification cache.
    pub(crate) fn authenticate(&self, authorization: Option<&str>) -> Option<User> {
        let cfg = &self.cfg;
        cfg.auth
            .authenticate_with(authorization, &mut |username, password| {
                crate::accounts::verify(
                    &cfg.accounts,
                    &*self.backend,
                    &*self.cache,
                    username,
                    password,
                )
            })
    }
}

/// Who is calling, as the accounts resource sees it.
struct Caller {
    principals: BTreeSet<String>,
    admin: bool,
    /// The user id without its policy prefix (`None` for anonymous callers).
    selected: Option<String>,
}

fn caller(ctx: &mut Ctx, tx: &mut dyn Transaction) -> ApiResult<Caller> {
    let principals = ctx.principals(tx)?;
    let admin = ctx
        .cfg
        .grants
        .principals("account_write_principals")
        .is_some_and(|admins| !admins.is_disjoint(&principals));
    let selected = ctx
        .user
        .as_ref()
        .map(|u| u.id.split_once(':').map_or(u.id.as_str(), |(_, id)| id))
        .map(str::to_string);
    Ok(Caller {
        principals,
        admin,
        selected,
    })
}

fn uri(id: &str) -> String {
    format!("/accounts/{id}")
}

fn list(parent_id: &str) -> ListRef<'_> {
    ListRef {
        resource_name: "account",
        parent_id,
    }
}

/// Settings grants (`account_<perm>_principals`) then the account's own ACEs.
fn allowed(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    caller: &Caller,
    id: &str,
    perm: &str,
) -> ApiResult<bool> {
    let object = uri(id);
    let perms: &[&str] = if perm == "read" {
        &["write", "read"]
    } else {
        &["write"]
    };
    let bound: Vec<(String, String)> = perms
        .iter()
        .map(|p| (object.clone(), p.to_string()))
        .collect();
    if ctx.cfg.grants.allows("account", &bound, &caller.principals) {
        return Ok(true);
    }
    Ok(tx.check_permission(&caller.principals, &bound)?)
}

fn can_create(ctx: &Ctx, caller: &Caller) -> bool {
    ctx.cfg
        .grants
        .principals("account_create_principals")
        .is_some_and(|p| !p.is_disjoint(&caller.principals))
}

/// `401 {"code":401,"errno":999,"error":"Cannot read accounts."}`, without `WWW-Authenticate`.
fn cannot_read_accounts() -> Response {
    super::http::json(
        401,
        &json!({"code": 401, "errno": 999, "error": "Cannot read accounts."}),
    )
}

/// Entry point of `/accounts` (`id` is `None`) and `/accounts/<id>`.
pub fn handle(ctx: &mut Ctx, tx: &mut dyn Transaction, id: Option<&str>) -> ApiResult<Response> {
    if !super::http::accepts_json(ctx.request.header("Accept")) {
        return Err(super::http::not_acceptable());
    }
    let method = ctx.request.method.to_ascii_uppercase();
    let mode = match method.as_str() {
        "POST" | "PUT" => Some(body::mode(ctx.request.header("Content-Type"), false)?),
        "PATCH" => Some(body::mode(ctx.request.header("Content-Type"), true)?),
        _ => None,
    };
    let caller = caller(ctx, tx)?;
    match (id, method.as_str()) {
        (None, "GET" | "HEAD") => list_accounts(ctx, tx, &caller, method == "HEAD"),
        (None, "POST") => post(ctx, tx, &caller),
        (None, "DELETE") => delete_accounts(ctx, tx, &caller),
        (Some(id), "GET" | "HEAD") => get(ctx, tx, &caller, id),
        (Some(id), "PUT") => put(ctx, tx, &caller, id, None),
        (Some(id), "PATCH") => patch_account(ctx, tx, &caller, id, mode.unwrap_or(Mode::Json)),
        (Some(id), "DELETE") => delete(ctx, tx, &caller, id),
        _ => Err(ApiError::MethodNotAllowed { allow: None }),
    }
}

/// Where the caller's view of an account lives: administrators and anonymous callers address
/// any account, users only their own (Kinto's `get_parent_id`).
fn object_parent(caller: &Caller, id: &str) -> String {
    match (&caller.selected, caller.admin) {
        (Some(selected), false) => selected.clone(),
        _ => id.to_string(),
    }
}

fn get(ctx: &mut Ctx, tx: &mut dyn Transaction, caller: &Caller, id: &str) -> ApiResult<Response> {
    if !allowed(ctx, tx, caller, id, "read")? {
        return Err(ctx.deny());
    }
    if !valid_account_id(id) {
        return Err(invalid_id());
    }
    let parent = object_parent(caller, id);
    let Some(existing) = tx.get(list(&parent), id)? else {
        return Err(not_found(id));
    };
    let current = last_modified(&existing);
    let conditions = conditions(ctx)?;
    if let Some(Condition::Timestamp(ts)) = conditions.if_none_match {
        if ts == current {
            return Ok(super::resource::not_modified(current));
        }
    }
    if let Some(Condition::Timestamp(ts)) = conditions.if_match {
        if ts != current {
            return Err(precondition_failed(Some(&existing), Some(current)));
        }
    }
    let perms = account_permissions(tx, id)?;
    let mut response = object_response(
        200,
        Value::Object(existing),
        Some(visible(&perms, caller, None)),
    );
    response
        .headers
        .push(("Cache-Control".into(), "no-cache, no-store".into()));
    Ok(response)
}

fn not_found(id: &str) -> ApiError {
    ApiError::ObjectNotFound {
        id: id.to_string(),
        resource_name: "account".into(),
    }
}

fn last_modified(object: &Object) -> i64 {
    object
        .get("last_modified")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn account_permissions(tx: &mut dyn Transaction, id: &str) -> ApiResult<ObjectPermissions> {
    Ok(tx
        .get_objects_permissions(&[uri(id)])?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// The account's ACEs when the caller (or the principal writing on its behalf) holds `write`.
fn visible(perms: &ObjectPermissions, caller: &Caller, writer: Option<&str>) -> Value {
    let mut principals = caller.principals.clone();
    if let Some(writer) = writer {
        principals.insert(writer.to_string());
    }
    super::resource::visible_permissions(perms, &principals)
}

/// The principal that gets `write` on a written account: the account itself for anonymous
/// sign-ups and administrators, the caller otherwise.
fn writer(ctx: &Ctx, caller: &Caller, id: &str) -> String {
    if caller.admin || ctx.user.is_none() {
        format!("{POLICY_PREFIX}:{id}")
    } else {
        ctx.writer()
    }
}

/// Kinto's `process_object`: hash a given password, require an id, and make users write only
/// their own account.
fn process(caller: &Caller, data: &mut Map<String, Value>, password_given: bool) -> ApiResult<()> {
    if password_given {
        if let Some(Value::String(password)) = data.get("password") {
            let hashed = hash_password(password).map_err(ApiError::Internal)?;
            data.insert("password".into(), Value::String(hashed));
        }
    }
    let Some(id) = data.get("id").and_then(Value::as_str) else {
        return Err(ApiError::invalid(
            Location::Body,
            Some("data.id"),
            "Accounts must have an ID.",
        ));
    };
    if let (false, Some(selected)) = (caller.admin, &caller.selected) {
        if id != selected {
            return Err(ApiError::invalid(
                Location::Body,
                Some("data.id"),
                "Username and account ID do not match.",
            ));
        }
    }
    Ok(())
}

/// Validates `data.password` of a PUT/POST (required, a string).
fn check_password_field(data: &Map<String, Value>) -> ApiResult<()> {
    match data.get("password") {
        None => Err(ApiError::invalid(
            Location::Body,
            Some("data.password"),
            "Required",
        )),
        Some(Value::String(_)) => Ok(()),
        Some(other) => Err(ApiError::invalid(
            Location::Body,
            Some("data.password"),
            format!(
                "{} is not a string: {{'password': ''}}",
                body::python_repr(other)
            ),
        )),
    }
}

/// An account write body: `data`, the `permissions` to set, whether `permissions` was given.
type AccountBody = (Option<Map<String, Value>>, ObjectPermissions, bool);

/// The `{data, permissions}` envelope of an account write.
fn envelope(ctx: &Ctx) -> ApiResult<AccountBody> {
    let raw = body::parse_json(&ctx.request.body)?;
    let Value::Object(mut root) = raw else {
        return Err(ApiError::invalid(
            Location::Body,
            None,
            "Body should be a JSON object",
        ));
    };
    let data = match root.remove("data") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(other) => {
            return Err(ApiError::invalid(
                Location::Body,
                Some("data"),
                format!(
                    "{} is not a mapping type: Does not implement dict-like functionality.",
                    body::python_repr(&other)
                ),
            ))
        }
    };
    let given = root.contains_key("permissions");
    let mut perms = ObjectPermissions::new();
    if let Some(Value::Object(map)) = root.get("permissions") {
        for (perm, holders) in map {
            if !matches!(perm.as_str(), "read" | "write") {
                return Err(ApiError::invalid(
                    Location::Body,
                    Some(&format!("permissions.{perm}")),
                    format!("'{perm}' is not one of read, write"),
                ));
            }
            let set: BTreeSet<String> = holders
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            perms.insert(perm.clone(), set);
        }
    }
    Ok((data, perms, given))
}

/// Stores an account and its ACEs; returns the stored object and its permissions.
fn store(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    id: &str,
    data: Map<String, Value>,
    mut set: ObjectPermissions,
    writer: &str,
) -> ApiResult<(Object, ObjectPermissions)> {
    let stored = tx.update(list(id), id, data)?;
    if ctx.cfg.settings.explicit_permissions {
        let current = account_permissions(tx, id)?;
        let write = set
            .entry("write".into())
            .or_insert_with(|| current.get("write").cloned().unwrap_or_default());
        write.insert(writer.to_string());
    }
    if !set.is_empty() {
        tx.replace_object_permissions(&uri(id), &set)?;
    }
    let perms = account_permissions(tx, id)?;
    Ok((stored, perms))
}

/// `PUT /accounts/<id>` (also the creation step of `POST /accounts`, with `posted` = true).
fn put(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    caller: &Caller,
    id: &str,
    posted: Option<()>,
) -> ApiResult<Response> {
    let parent = object_parent(caller, id);
    let existing = if valid_account_id(id) {
        tx.get(list(&parent), id)?
    } else {
        None
    };
    let conditions = conditions(ctx)?;
    let permitted = if existing.is_some() && conditions.if_none_match != Some(Condition::Any) {
        allowed(ctx, tx, caller, id, "write")?
    } else {
        can_create(ctx, caller)
    };
    if !permitted {
        return Err(ctx.deny());
    }
    if !valid_account_id(id) {
        return Err(invalid_id());
    }
    let (data, set, _) = envelope(ctx)?;
    let mut data = data.unwrap_or_default();
    check_password_field(&data)?;
    if conditions.if_none_match == Some(Condition::Any) && existing.is_some() {
        return Err(precondition_failed(
            existing.as_ref(),
            existing.as_ref().map(last_modified),
        ));
    }
    if let Some(Condition::Timestamp(ts)) = conditions.if_match {
        match &existing {
            Some(e) if last_modified(e) == ts => {}
            _ => {
                return Err(precondition_failed(
                    existing.as_ref(),
                    existing.as_ref().map(last_modified),
                ))
            }
        }
    }
    match data.get("id") {
        None => {
            data.insert("id".into(), Value::String(id.to_string()));
        }
        Some(Value::String(given)) if given == id => {}
        Some(_) => {
            return Err(ApiError::invalid(
                Location::Body,
                Some("id"),
                "Object id does not match existing object",
            ))
        }
    }
    keep_timestamp_hint(&mut data, existing.as_ref());
    process(caller, &mut data, true)?;
    let writer = writer(ctx, caller, id);
    let (stored, perms) = store(ctx, tx, id, data, set, &writer)?;
    if existing.is_some() {
        invalidate(ctx, id);
    }
    let status = if existing.is_some() && posted.is_none() {
        200
    } else {
        201
    };
    Ok(object_response(
        status,
        Value::Object(stored),
        Some(visible(&perms, caller, Some(&writer))),
    ))
}

/// `POST /accounts`: `data.id` names the account.
fn post(ctx: &mut Ctx, tx: &mut dyn Transaction, caller: &Caller) -> ApiResult<Response> {
    let raw = body::parse_json(&ctx.request.body)?;
    let given = raw
        .get("data")
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = match (given, &caller.selected, caller.admin) {
        (Some(id), _, _) => id,
        (None, Some(_), false) => {
            return Err(ApiError::invalid(
                Location::Body,
                Some("data.id"),
                "Accounts must have an ID.",
            ))
        }
        (None, _, _) => {
            return Err(ApiError::invalid(
                Location::Body,
                Some("data.id"),
                "data.id in body: Required",
            ))
        }
    };
    let parent = object_parent(caller, &id);
    if valid_account_id(&id) {
        if let Some(existing) = tx.get(list(&parent), &id)? {
            if !allowed(ctx, tx, caller, &id, "read")? {
                return Err(ctx.deny());
            }
            let perms = account_permissions(tx, &id)?;
            return Ok(object_response(
                200,
                Value::Object(existing),
                Some(visible(&perms, caller, None)),
            ));
        }
    }
    if !can_create(ctx, caller) {
        return Err(ctx.deny());
    }
    if !valid_account_id(&id) {
        return Err(ApiError::invalid(
            Location::Body,
            Some("data.id"),
            "Invalid object id",
        ));
    }
    put(ctx, tx, caller, &id, Some(()))
}

fn patch_account(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    caller: &Caller,
    id: &str,
    mode: Mode,
) -> ApiResult<Response> {
    if !allowed(ctx, tx, caller, id, "write")? {
        return Err(ctx.deny());
    }
    if !valid_account_id(id) {
        return Err(invalid_id());
    }
    let parent = object_parent(caller, id);
    let existing = tx.get(list(&parent), id)?;
    let conditions = conditions(ctx)?;
    let raw = body::parse_json(&ctx.request.body)?;
    let Some(existing) = existing else {
        return Err(not_found(id));
    };
    if let Some(Condition::Timestamp(ts)) = conditions.if_match {
        if ts != last_modified(&existing) {
            return Err(precondition_failed(
                Some(&existing),
                Some(last_modified(&existing)),
            ));
        }
    }
    let mut set = ObjectPermissions::new();
    let (mut data, password_given) = match mode {
        Mode::JsonPatch => {
            let ops = patch::validate_operations(&raw)?;
            let mut doc = json!({"data": existing.clone(), "permissions": {}});
            patch::apply_json_patch(&mut doc, &ops)?;
            let data = match doc.get("data") {
                Some(Value::Object(map)) => map.clone(),
                _ => {
                    return Err(ApiError::invalid(
                        Location::Body,
                        None,
                        "JSON Patch operation failed: data is not an object",
                    ))
                }
            };
            let changed = data.get("password") != existing.get("password");
            (data, changed)
        }
        Mode::Json | Mode::MergePatch => {
            let (changes, perms, given) = envelope(ctx)?;
            if changes.is_none() && !given {
                return Err(ApiError::invalid(
                    Location::Body,
                    Some("data"),
                    "Provide at least one of data or permissions",
                ));
            }
            set = perms;
            let changes = changes.unwrap_or_default();
            let given_password = changes.contains_key("password");
            if given_password {
                check_password_field(&changes)?;
            }
            let mut doc = Value::Object(existing.clone());
            if mode == Mode::MergePatch {
                patch::merge_patch(&mut doc, &Value::Object(changes));
            } else if let Value::Object(map) = &mut doc {
                for (k, v) in changes {
                    map.insert(k, v);
                }
            }
            let data = match doc {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            (data, given_password)
        }
    };
    if data.get("id").and_then(Value::as_str) != Some(id) {
        return Err(ApiError::invalid(
            Location::Body,
            Some("id"),
            "Object id does not match existing object",
        ));
    }
    keep_timestamp_hint(&mut data, Some(&existing));
    process(caller, &mut data, password_given)?;
    let writer = writer(ctx, caller, id);
    let (stored, perms) = store(ctx, tx, id, data, set, &writer)?;
    invalidate(ctx, id);
    Ok(object_response(
        200,
        Value::Object(stored),
        Some(visible(&perms, caller, Some(&writer))),
    ))
}

/// Forgets an account's verified logins (password change, deletion) in the shared cache, so
/// that every worker checks the password again. Deferred to the commit like every cache write
/// (an already expired entry is an absent one).
fn invalidate(ctx: &mut Ctx, id: &str) {
    let key = ctx.cfg.accounts.cache_key(id);
    ctx.cache_writes.push((key, Value::Null, Some(-1.0)));
}

/// Removes a deleted account's ACEs and verified logins.
fn forget(ctx: &mut Ctx, tx: &mut dyn Transaction, id: &str) -> ApiResult<()> {
    tx.delete_object_permissions(&[uri(id)])?;
    invalidate(ctx, id);
    Ok(())
}

fn delete(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    caller: &Caller,
    id: &str,
) -> ApiResult<Response> {
    if !allowed(ctx, tx, caller, id, "write")? {
        return Err(ctx.deny());
    }
    if !valid_account_id(id) {
        return Err(invalid_id());
    }
    let parent = object_parent(caller, id);
    let Some(existing) = tx.get(list(&parent), id)? else {
        return Err(not_found(id));
    };
    if let Some(Condition::Timestamp(ts)) = conditions(ctx)?.if_match {
        if ts != last_modified(&existing) {
            return Err(precondition_failed(
                Some(&existing),
                Some(last_modified(&existing)),
            ));
        }
    }
    let tombstone = tx
        .delete(list(&parent), id, true, None)?
        .ok_or_else(|| not_found(id))?;
    forget(ctx, tx, id)?;
    Ok(object_response(200, Value::Object(tombstone), None))
}

/// The accounts a plural request covers: everything (administrators, `account_*_principals`)
/// or the accounts the caller holds an ACE on.
fn plural_spec<'a>(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    caller: &'a Caller,
    write: bool,
) -> ApiResult<ListSpec<'a>> {
    let parent: &'a str = match (&caller.selected, caller.admin) {
        (_, true) => "*",
        (Some(selected), false) => selected.as_str(),
        (None, false) => "*",
    };
    let perm = if write { "write" } else { "read" };
    let full = ctx.cfg.grants.allows(
        "account",
        &[(String::new(), perm.to_string())],
        &caller.principals,
    );
    let only_ids = if full {
        None
    } else {
        let perms: &[&str] = if write {
            &["write"]
        } else {
            &["write", "read"]
        };
        let bound: Vec<(String, String)> = perms
            .iter()
            .map(|p| ("/accounts/*".to_string(), p.to_string()))
            .collect();
        let accessible = tx.get_accessible_objects(&caller.principals, &bound)?;
        let ids: Vec<String> = accessible
            .keys()
            .filter_map(|u| u.strip_prefix("/accounts/"))
            .map(str::to_string)
            .collect();
        if ids.is_empty() && !can_create(ctx, caller) {
            return Err(ctx.deny());
        }
        Some(ids)
    };
    Ok(ListSpec {
        resource_name: "account",
        parent_id: parent,
        only_ids,
        schema: None,
    })
}

fn list_accounts(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    caller: &Caller,
    head: bool,
) -> ApiResult<Response> {
    if ctx.user.is_none() {
        return Ok(cannot_read_accounts());
    }
    let spec = plural_spec(ctx, tx, caller, false)?;
    plugin_list::get(ctx, tx, &spec, head)
}

fn delete_accounts(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    caller: &Caller,
) -> ApiResult<Response> {
    if ctx.user.is_none() {
        return Ok(cannot_read_accounts());
    }
    let spec = plural_spec(ctx, tx, caller, true)?;
    let (response, tombstones) = plugin_list::delete(ctx, tx, &spec)?;
    for tombstone in &tombstones {
        if let Some(id) = tombstone.get("id").and_then(Value::as_str) {
            forget(ctx, tx, id)?;
        }
    }
    Ok(response)
}
