//! Object URLs (`/buckets/b`, `…/records/r`): GET/HEAD, PUT (create or replace), PATCH (three
//! modes, `Response-Behavior`) and DELETE (tombstone and cascades), with the 401/403/404
//! decision of section 6.5 and the conditional-request matrix of section 3.6.

use super::body::{self, Mode};
use super::patch;
use super::*;
use crate::api::{accounts, history};
use crate::error::{ApiError, ApiResult, Location};
use crate::storage::{Object, Transaction};
use serde_json::{Map, Value};

/// The object of the URL, read with its ACEs, the caller's principals and one check.
struct Loaded {
    id: String,
    uri: String,
    access: Access,
}

impl Loaded {
    fn existing(&self) -> Option<&Object> {
        self.access.object.as_ref()
    }
}

/// Reads the target object; a write request reads it under its list's write lock (`lock`), so
/// that its checks (If-Match, PATCH merge) hold until the write commits. See `write_lock` for
/// the writes that read without it.
fn load(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    bound: &[(String, String)],
    lock: bool,
) -> ApiResult<Loaded> {
    let id = target.id.clone().unwrap_or_default();
    let parent_id = target.parent_id();
    let lock = lock.then(|| list_ref(target, &parent_id));
    let access = read_access_locking(ctx, tx, target, &id, bound, lock)?;
    Ok(Loaded {
        uri: target.object_uri(&id),
        id,
        access,
    })
}

/// Records need their collection: 404 errno 111 otherwise.
fn require_collection(target: &Target, loaded: &Loaded) -> ApiResult<()> {
    if target.kind == Kind::Record && !loaded.access.parent_exists {
        return Err(ApiError::ParentNotFound {
            id: target.collection.clone(),
            resource_name: "collection".into(),
        });
    }
    Ok(())
}

/// Whether a replacing write (PUT, PATCH) reads under the list's lock. A request alone in its
/// transaction first reads without it, decides, then writes only if the object is still as
/// read (`Transaction::update_if`): the lock is then held from the write to the commit only,
/// which go in one round trip. If the object changed meanwhile, the request runs again
/// (`App::in_transaction`), this time under the lock, so that a busy object is written at the
/// second run at the latest. In a batch, whose transaction is shared, the read takes the lock.
fn write_lock(ctx: &Ctx) -> bool {
    !ctx.own_transaction || ctx.attempt > 1
}

/// Writes the object of `loaded` if it is still as read; a conflict (the request runs again)
/// otherwise.
fn replace(
    tx: &mut dyn Transaction,
    target: &Target,
    loaded: &Loaded,
    data: Map<String, Value>,
) -> ApiResult<Object> {
    let parent_id = target.list_parent(&loaded.id);
    let read = loaded.existing().map(last_modified);
    tx.update_if(
        list_ref(target, &parent_id),
        &loaded.id,
        with_id(data, &loaded.id),
        read,
    )?
    .ok_or(ApiError::Conflict)
}

fn last_modified(object: &Object) -> i64 {
    object
        .get("last_modified")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn not_found(target: &Target, id: &str) -> ApiError {
    ApiError::ObjectNotFound {
        id: id.to_string(),
        resource_name: target.kind.name().into(),
    }
}

/// PATCH/DELETE authorization: `write` on the object (checked by [`load`]); on a missing
/// object, reading the parent list is enough to learn that it is missing (404, not 403).
fn authorize_write(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    loaded: &Loaded,
) -> ApiResult<()> {
    if loaded.access.allowed {
        return Ok(());
    }
    if loaded.existing().is_none()
        && check(
            ctx,
            tx,
            target,
            &list_bound(target, "read"),
            &loaded.access.principals,
        )?
    {
        return Ok(());
    }
    Err(ctx.deny())
}

/// `GET`/`HEAD` of an object.
pub fn get(ctx: &mut Ctx, tx: &mut dyn Transaction, target: &Target) -> ApiResult<Response> {
    let id = target.id.clone().unwrap_or_default();
    let bound = object_bound(target, &id, read_permission(target.kind));
    let loaded = load(ctx, tx, target, &bound, false)?;
    if !loaded.access.allowed {
        return Err(ctx.deny());
    }
    check_parents(target)?;
    if !target.kind.valid_id(&loaded.id) {
        return Err(invalid_id());
    }
    let conditions = conditions(ctx)?;
    // Object URLs only know `_fields`; other parameters are ignored.
    let fields = query::fields(&ctx.query);
    require_collection(target, &loaded)?;
    // Anonymous record reads need the collection for its `cache_expires`.
    let collection = if target.kind == Kind::Record && ctx.user.is_none() {
        Some(parent_collection(tx, target)?)
    } else {
        None
    };
    let principals = loaded.access.principals;
    let own = loaded.access.own;
    let Some(existing) = loaded.access.object else {
        return Err(not_found(target, &loaded.id));
    };
    let current = last_modified(&existing);
    if let Some(Condition::Timestamp(ts)) = conditions.if_none_match {
        if ts == current {
            return Ok(not_modified(current));
        }
    }
    if conditions.if_none_match == Some(Condition::Any) {
        return Err(precondition_failed(Some(&existing), Some(current)));
    }
    if let Some(Condition::Timestamp(ts)) = conditions.if_match {
        if ts != current {
            return Err(precondition_failed(Some(&existing), Some(current)));
        }
    }
    let mut response = match fields {
        Some(fields) => object_response(200, query::project(&existing, &fields), None),
        None => {
            let permissions = visible_permissions(&own, &principals);
            object_response(200, Value::Object(existing), Some(permissions))
        }
    };
    response
        .headers
        .extend(client_cache_headers(ctx, target, collection.as_ref()));
    Ok(response)
}

/// Common checks of writes on one object: `If-Match`/`If-None-Match` against the object.
fn check_write_conditions(
    conditions: &Conditions,
    existing: Option<&Object>,
    missing_is_not_found: Option<(&Target, &str)>,
) -> ApiResult<()> {
    let current = existing.map(last_modified);
    if conditions.if_none_match == Some(Condition::Any) && existing.is_some() {
        return Err(precondition_failed(existing, current));
    }
    match (conditions.if_match, existing) {
        (Some(Condition::Timestamp(ts)), Some(e)) if ts != last_modified(e) => {
            return Err(precondition_failed(existing, current))
        }
        (Some(_), None) => {
            if let Some((target, id)) = missing_is_not_found {
                return Err(not_found(target, id));
            }
            return Err(precondition_failed(None, None));
        }
        _ => {}
    }
    Ok(())
}

/// `PUT`: create (201) or replace (200) the object.
pub fn put(ctx: &mut Ctx, tx: &mut dyn Transaction, target: &Target) -> ApiResult<Response> {
    let conditions = conditions(ctx)?;
    let id = target.id.clone().unwrap_or_default();
    let lock = write_lock(ctx);
    let loaded = load(ctx, tx, target, &object_bound(target, &id, "write"), lock)?;
    require_collection(target, &loaded)?;
    // A user only sees their own account: another one is "missing" to them (Kinto's parent
    // scoping), so writing it needs the create permission and fails on the id check.
    let foreign = target.kind == Kind::Account
        && accounts::foreign(ctx, &loaded.id, &loaded.access.principals);
    let allowed = if loaded.existing().is_some()
        && !foreign
        && conditions.if_none_match != Some(Condition::Any)
    {
        loaded.access.allowed
    } else {
        let create = list_bound(target, target.kind.create_permission());
        check(ctx, tx, target, &create, &loaded.access.principals)?
    };
    if !allowed {
        return Err(ctx.deny());
    }
    check_parents(target)?;
    if !target.kind.valid_id(&loaded.id) {
        return Err(invalid_id());
    }
    let envelope = body::envelope(target.kind, body::parse_json(&ctx.request.body)?)?;
    check_write_conditions(&conditions, loaded.existing(), None)?;
    let existing = loaded.existing();
    let password_sent = envelope
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key("password"));
    let mut data = match (envelope.data, existing) {
        (Some(data), _) => data,
        (None, Some(existing)) => user_fields(existing),
        (None, None) => Map::new(),
    };
    check_id_matches(&data, &loaded.id)?;
    keep_timestamp_hint(&mut data, existing);
    body::check_data(target.kind, &mut data)?;
    validate_schemas(ctx, tx, target, &mut data)?;
    if target.kind == Kind::Account {
        let principals = loaded.access.principals.clone();
        accounts::prepare_write(ctx, &loaded.id, &principals, &mut data, password_sent)?;
    }
    let current = loaded.access.own.clone();
    let set: ObjectPermissions = match &envelope.permissions {
        Some(given) => {
            let listed = listed_permissions(given);
            target
                .kind
                .permissions()
                .iter()
                .map(|perm| {
                    let holders = listed.get(*perm).cloned().unwrap_or_default();
                    (perm.to_string(), holders)
                })
                .collect()
        }
        None => ObjectPermissions::new(),
    };
    let owner = owner(ctx, target, &loaded.id, &loaded.access.principals);
    // The ACEs before the object, so that the object's write can be the last (it needs nothing
    // of them, they nothing of it).
    let permissions = write_permissions(ctx, tx, &loaded.uri, &owner, &current, set)?;
    commit_with_last_write(ctx, tx, target.kind);
    let stored = replace(tx, target, &loaded, data)?;
    if target.kind == Kind::Group {
        sync_members(tx, &loaded.uri, existing, &stored)?;
    }
    let action = if existing.is_some() {
        "update"
    } else {
        "create"
    };
    history::record(ctx, tx, target, &loaded.id, action, &stored, &permissions)?;
    let status = if existing.is_some() { 200 } else { 201 };
    let visible = visible_permissions(&permissions, &with_owner(&loaded.access.principals, &owner));
    Ok(object_response(
        status,
        Value::Object(stored),
        Some(visible),
    ))
}

fn check_id_matches(data: &Map<String, Value>, id: &str) -> ApiResult<()> {
    match data.get("id") {
        Some(Value::String(given)) if given == id => Ok(()),
        None => Ok(()),
        Some(_) => Err(ApiError::invalid(
            Location::Body,
            Some("id"),
            "Object id does not match existing object",
        )),
    }
}

/// The `Response-Behavior` header of PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    Full,
    Light,
    Diff,
}

fn response_behavior(ctx: &Ctx) -> ApiResult<Behavior> {
    match ctx.request.header("Response-Behavior") {
        None => Ok(Behavior::Full),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(Behavior::Full),
            "light" => Ok(Behavior::Light),
            "diff" => Ok(Behavior::Diff),
            _ => Err(ApiError::invalid(
                Location::Header,
                Some("Response-Behavior"),
                format!("\"{v}\" is not one of full, light, diff"),
            )),
        },
    }
}

fn to_principal_sets(value: Option<&Value>) -> BTreeSet<String> {
    match value {
        Some(Value::Object(map)) => map
            .values()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// `PATCH` in one of the three modes.
pub fn patch(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    mode: Mode,
) -> ApiResult<Response> {
    let id = target.id.clone().unwrap_or_default();
    let lock = write_lock(ctx);
    let loaded = load(ctx, tx, target, &object_bound(target, &id, "write"), lock)?;
    require_collection(target, &loaded)?;
    authorize_write(ctx, tx, target, &loaded)?;
    check_parents(target)?;
    if !target.kind.valid_id(&loaded.id) {
        return Err(invalid_id());
    }
    let conditions = conditions(ctx)?;
    let behavior = response_behavior(ctx)?;
    let raw = body::parse_json(&ctx.request.body)?;
    // Validate the body before telling the object is missing, as the reference's schema does.
    enum Change {
        Envelope(body::Envelope),
        Operations(Vec<Map<String, Value>>),
    }
    let change = match mode {
        Mode::JsonPatch => Change::Operations(patch::validate_operations(&raw)?),
        Mode::Json | Mode::MergePatch => {
            let envelope = body::envelope(target.kind, raw)?;
            if envelope.data.is_none() && envelope.permissions.is_none() {
                return Err(ApiError::invalid(
                    Location::Body,
                    Some("data"),
                    "Provide at least one of data or permissions",
                ));
            }
            Change::Envelope(envelope)
        }
    };
    check_write_conditions(&conditions, loaded.existing(), Some((target, &loaded.id)))?;
    let Some(existing) = loaded.existing() else {
        return Err(not_found(target, &loaded.id));
    };
    let current_perms = loaded.access.own.clone();
    let mut requested: Map<String, Value> = Map::new();
    let (mut data, set) = match change {
        Change::Envelope(envelope) => {
            let mut data = existing.clone();
            let mut set = ObjectPermissions::new();
            if let Some(changes) = &envelope.data {
                requested = changes.clone();
                if mode == Mode::MergePatch {
                    let mut doc = Value::Object(data);
                    patch::merge_patch(&mut doc, &Value::Object(changes.clone()));
                    data = match doc {
                        Value::Object(map) => map,
                        _ => Map::new(),
                    };
                } else {
                    for (k, v) in changes {
                        data.insert(k.clone(), v.clone());
                    }
                }
            }
            if let Some(given) = &envelope.permissions {
                if mode == Mode::MergePatch {
                    // Merge into the entries as visible to the caller, then reset the others.
                    let mut merged: ObjectPermissions =
                        match visible_permissions(&current_perms, &loaded.access.principals) {
                            Value::Object(map) => map
                                .iter()
                                .map(|(k, v)| (k.clone(), to_principal_sets(Some(v))))
                                .collect(),
                            _ => ObjectPermissions::new(),
                        };
                    for (perm, holders) in given {
                        match holders {
                            Some(h) => merged.insert(perm.clone(), h.clone()),
                            None => merged.remove(perm),
                        };
                    }
                    for perm in target.kind.permissions() {
                        set.insert(
                            perm.to_string(),
                            merged.get(*perm).cloned().unwrap_or_default(),
                        );
                    }
                } else {
                    set = listed_permissions(given);
                }
            }
            (data, set)
        }
        Change::Operations(ops) => {
            let mut perms_doc = Map::new();
            for perm in ["read", "write"] {
                perms_doc.insert(perm.into(), Value::Object(Map::new()));
            }
            for (perm, holders) in &current_perms {
                let map: Map<String, Value> = holders
                    .iter()
                    .map(|p| (p.clone(), Value::String(p.clone())))
                    .collect();
                perms_doc.insert(perm.clone(), Value::Object(map));
            }
            let mut doc = serde_json::json!({"data": existing, "permissions": perms_doc});
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
            requested = data.clone();
            let mut set = ObjectPermissions::new();
            for perm in ["read", "write"] {
                set.insert(
                    perm.to_string(),
                    to_principal_sets(doc.get("permissions").and_then(|p| p.get(perm))),
                );
            }
            (data, set)
        }
    };
    check_id_matches(&data, &loaded.id)?;
    keep_timestamp_hint(&mut data, Some(existing));
    body::check_data(target.kind, &mut data)?;
    validate_schemas(ctx, tx, target, &mut data)?;
    if target.kind == Kind::Account {
        // Any new password value (also through JSON-Patch) is hashed.
        let password_sent = data.get("password") != existing.get("password");
        let principals = loaded.access.principals.clone();
        accounts::prepare_write(ctx, &loaded.id, &principals, &mut data, password_sent)?;
    }
    let owner = owner(ctx, target, &loaded.id, &loaded.access.principals);
    // As in `put`: the ACEs first, so that the object's write can be the last.
    let permissions = write_permissions(ctx, tx, &loaded.uri, &owner, &current_perms, set)?;
    commit_with_last_write(ctx, tx, target.kind);
    let stored = replace(tx, target, &loaded, data)?;
    if target.kind == Kind::Group {
        sync_members(tx, &loaded.uri, Some(existing), &stored)?;
    }
    history::record(ctx, tx, target, &loaded.id, "update", &stored, &permissions)?;
    let response = match behavior {
        Behavior::Full => {
            let visible =
                visible_permissions(&permissions, &with_owner(&loaded.access.principals, &owner));
            object_response(200, Value::Object(stored), Some(visible))
        }
        Behavior::Light | Behavior::Diff => {
            let mut partial = Map::new();
            for (key, sent) in &requested {
                let Some(new) = stored.get(key) else { continue };
                let keep = match behavior {
                    Behavior::Light => existing.get(key) != Some(new),
                    _ => sent != new,
                };
                if keep {
                    partial.insert(key.clone(), new.clone());
                }
            }
            let mut response = object_response(200, Value::Object(partial), None);
            let ts = last_modified(&stored);
            response
                .headers
                .retain(|(n, _)| n != "ETag" && n != "Last-Modified");
            response
                .headers
                .extend(crate::api::http::timestamp_headers(ts));
            response
        }
    };
    Ok(response)
}

/// `DELETE` of one object: a tombstone, its children and ACEs removed.
pub fn delete(ctx: &mut Ctx, tx: &mut dyn Transaction, target: &Target) -> ApiResult<Response> {
    let id = target.id.clone().unwrap_or_default();
    let loaded = load(ctx, tx, target, &object_bound(target, &id, "write"), true)?;
    require_collection(target, &loaded)?;
    authorize_write(ctx, tx, target, &loaded)?;
    check_parents(target)?;
    if !target.kind.valid_id(&loaded.id) {
        return Err(invalid_id());
    }
    let conditions = conditions(ctx)?;
    let mut hint = None;
    for (name, value) in &ctx.query {
        if name.trim() == "last_modified" {
            match value.trim().parse::<i128>() {
                Ok(n) if n >= 0 && n < i64::MAX as i128 => hint = Some(n as i64),
                Ok(n) if n < 0 => {
                    return Err(ApiError::invalid(
                        Location::Querystring,
                        Some("last_modified"),
                        format!("{n} is less than minimum value 0"),
                    ))
                }
                _ => {
                    return Err(ApiError::invalid(
                        Location::Querystring,
                        Some("last_modified"),
                        format!("\"{value}\" is not a number"),
                    ))
                }
            }
        }
    }
    check_write_conditions(&conditions, loaded.existing(), Some((target, &loaded.id)))?;
    let Some(existing) = loaded.existing() else {
        return Err(not_found(target, &loaded.id));
    };
    let hint = hint.filter(|h| *h > last_modified(existing));
    let parent_id = target.list_parent(&loaded.id);
    let tombstone = tx
        .delete(list_ref(target, &parent_id), &loaded.id, true, hint)?
        .ok_or_else(|| not_found(target, &loaded.id))?;
    cascade_delete(tx, target.kind, &loaded.uri)?;
    if target.kind == Kind::Account {
        accounts::forget_verification(ctx, &loaded.id);
    }
    let no_permissions = ObjectPermissions::new();
    history::record(
        ctx,
        tx,
        target,
        &loaded.id,
        "delete",
        &tombstone,
        &no_permissions,
    )?;
    Ok(object_response(200, Value::Object(tombstone), None))
}
