//! The resource endpoints (buckets, collections, groups, records): method and content
//! negotiation, then the plural ([`plural`]) and object ([`object`]) handlers, with the
//! helpers they share (permissions of a chain, visibility, conditional headers, cascades,
//! group membership, client cache headers).

pub mod body;
pub mod object;
pub mod pagination;
pub mod patch;
pub mod plural;
pub mod query;

use super::http::{self, cache_headers};
use super::route::Target;
use super::{Config, Ctx};
use crate::api::route::valid_id;
use crate::authz::{self, Kind, AUTHENTICATED, EVERYONE};
use crate::error::{ApiError, ApiResult, Location};
use crate::permission::ObjectPermissions;
use crate::storage::{ListQuery, ListRef, Object, ReadRequest, Transaction};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use worker::Response;

/// The methods of a plural or object URL, minus those disabled by settings or readonly mode,
/// in the order of Kinto's `Allow` header.
pub fn allowed_methods(cfg: &Config, target: &Target, plural: bool) -> Vec<&'static str> {
    let all: &[&'static str] = if target.kind == Kind::History {
        &["HEAD", "GET", "DELETE", "OPTIONS"]
    } else if plural {
        &["HEAD", "GET", "POST", "DELETE", "OPTIONS"]
    } else {
        &["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"]
    };
    if cfg.disabled_methods.is_empty() && !cfg.settings.readonly {
        return all.to_vec();
    }
    let prefix = if plural { "plural" } else { "object" };
    all.iter()
        .copied()
        .filter(|m| {
            let write = !matches!(*m, "GET" | "HEAD" | "OPTIONS");
            if write && cfg.settings.readonly {
                return false;
            }
            let key = format!("{prefix}_{}_{}", target.kind.name(), m.to_ascii_lowercase());
            !cfg.disabled_methods.contains(&key)
        })
        .collect()
}

/// Entry point of the resource endpoints, inside the request's transaction.
pub fn handle(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    plural: bool,
) -> ApiResult<Response> {
    let method = ctx.request.method.to_ascii_uppercase();
    let allowed = allowed_methods(ctx.cfg, target, plural);
    if !allowed.contains(&method.as_str()) || method == "OPTIONS" {
        return Err(ApiError::MethodNotAllowed {
            allow: Some(allowed.join(", ")),
        });
    }
    if !http::accepts_json(ctx.request.header("Accept")) {
        return Err(http::not_acceptable());
    }
    let content_type = ctx.request.header("Content-Type");
    let mode = match method.as_str() {
        "POST" | "PUT" => Some(body::mode(content_type, false)?),
        "PATCH" => Some(body::mode(content_type, true)?),
        _ => None,
    };
    match (plural, method.as_str()) {
        (true, "GET") => plural::get(ctx, tx, target, false),
        (true, "HEAD") => plural::get(ctx, tx, target, true),
        (true, "POST") => plural::post(ctx, tx, target),
        (true, "DELETE") => plural::delete(ctx, tx, target),
        (false, "GET" | "HEAD") => object::get(ctx, tx, target),
        (false, "PUT") => object::put(ctx, tx, target),
        (false, "PATCH") => object::patch(ctx, tx, target, mode.unwrap_or(body::Mode::Json)),
        (false, "DELETE") => object::delete(ctx, tx, target),
        _ => Err(ApiError::MethodNotAllowed {
            allow: Some(allowed.join(", ")),
        }),
    }
}

/// The storage list of a target.
pub fn list_ref<'a>(target: &Target, parent_id: &'a str) -> ListRef<'a> {
    ListRef {
        resource_name: target.kind.name(),
        parent_id,
    }
}

/// What one [`read_access`] round trip tells about an object and its caller.
pub struct Access {
    pub principals: BTreeSet<String>,
    /// The live object, if any.
    pub object: Option<Object>,
    /// The object's own ACEs.
    pub own: ObjectPermissions,
    /// Whether the bound permissions are granted (settings or ACEs).
    pub allowed: bool,
    /// Whether the parent collection exists (records; `true` otherwise).
    pub parent_exists: bool,
}

/// Reads the object `id` of `target`'s list, its ACEs, the caller's principals, the check of
/// `bound` and, for records, the parent collection's existence, in one round trip where the
/// backend can.
pub fn read_access(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    id: &str,
    bound: &[(String, String)],
) -> ApiResult<Access> {
    read_access_locking(ctx, tx, target, id, bound, None)
}

/// [`read_access`], taking `lock`'s write lock first (in the same round trip where the backend
/// can): the read of a write request, which must hold until the write commits.
pub fn read_access_locking(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    id: &str,
    bound: &[(String, String)],
    lock: Option<ListRef>,
) -> ApiResult<Access> {
    let parent_id = target.list_parent(id);
    let uri = target.object_uri(id);
    let bucket_uri = format!("/buckets/{}", target.bucket);
    let collection_list = ListRef {
        resource_name: "collection",
        parent_id: &bucket_uri,
    };
    let parents: Vec<(ListRef, &str)> = if target.kind == Kind::Record {
        vec![(collection_list, target.collection.as_str())]
    } else {
        Vec::new()
    };
    let mut access = read_with(
        ctx,
        tx,
        list_ref(target, &parent_id),
        id,
        target.kind.valid_id(id),
        &uri,
        bound,
        &parents,
        lock,
    )?;
    access.allowed = access.allowed
        || ctx
            .cfg
            .grants
            .allows(target.kind.name(), bound, &access.principals);
    Ok(access)
}

/// The caller for a fused read: the user ids whose groups the database adds, and the
/// principals known without it (all of them once a previous read looked them up).
pub fn caller(ctx: &Ctx) -> (Vec<String>, BTreeSet<String>) {
    match (&ctx.principals, &ctx.user) {
        (Some(known), _) => (Vec::new(), known.clone()),
        (None, Some(user)) => (
            vec![user.id.clone(), AUTHENTICATED.to_string()],
            BTreeSet::from([
                EVERYONE.to_string(),
                AUTHENTICATED.to_string(),
                user.id.clone(),
            ]),
        ),
        (None, None) => (Vec::new(), BTreeSet::from([EVERYONE.to_string()])),
    }
}

/// One `read_object` round trip; `allowed` reflects ACEs only.
#[allow(clippy::too_many_arguments)]
fn read_with(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    list: ListRef,
    id: &str,
    id_valid: bool,
    uri: &str,
    bound: &[(String, String)],
    parents: &[(ListRef, &str)],
    lock: Option<ListRef>,
) -> ApiResult<Access> {
    let (user_ids, known) = caller(ctx);
    let parents_valid = parents.iter().all(|(_, p)| valid_id(p));
    let valid = id_valid && parents_valid;
    let request = ReadRequest {
        list,
        id,
        object_uri: uri,
        user_ids: &user_ids,
        principals: &known,
        bound_permissions: bound,
        parents,
        lock,
    };
    let result = tx.read_object(&request)?;
    ctx.principals = Some(result.principals.clone());
    Ok(Access {
        principals: result.principals,
        object: if valid { result.object } else { None },
        own: result.permissions,
        allowed: result.allowed,
        parent_exists: parents_valid && result.parents_exist.iter().all(|e| *e),
    })
}

/// For plural endpoints: reads the parent object of the list (collection of records, bucket of
/// collections and groups) with the check of `bound`; at the root only settings apply.
pub fn read_list_access(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    bound: &[(String, String)],
) -> ApiResult<Access> {
    let bucket_uri = format!("/buckets/{}", target.bucket);
    let mut access = match target.kind {
        Kind::Bucket | Kind::Account => {
            let principals = ctx.principals(tx)?;
            Access {
                principals,
                object: None,
                own: ObjectPermissions::new(),
                allowed: false,
                parent_exists: true,
            }
        }
        Kind::Collection | Kind::Group | Kind::History => {
            let list = ListRef {
                resource_name: "bucket",
                parent_id: "",
            };
            let mut access = read_with(
                ctx,
                tx,
                list,
                &target.bucket,
                valid_id(&target.bucket),
                &bucket_uri,
                bound,
                &[],
                None,
            )?;
            // Collections and groups do not require their bucket to exist.
            access.parent_exists = true;
            access
        }
        Kind::Record => {
            let list = ListRef {
                resource_name: "collection",
                parent_id: &bucket_uri,
            };
            let uri = target.parent_id();
            let mut access = read_with(
                ctx,
                tx,
                list,
                &target.collection,
                valid_id(&target.collection),
                &uri,
                bound,
                &[],
                None,
            )?;
            access.parent_exists = access.object.is_some() && valid_id(&target.bucket);
            access
        }
    };
    // Grants are those of the listed resource type (`record_read_principals`, ...).
    access.allowed = access.allowed
        || ctx
            .cfg
            .grants
            .allows(target.kind.name(), bound, &access.principals);
    Ok(access)
}

/// A further permission check (settings grants, then ACEs in the database).
pub fn check(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    bound: &[(String, String)],
    principals: &BTreeSet<String>,
) -> ApiResult<bool> {
    if ctx.cfg.grants.allows(target.kind.name(), bound, principals) {
        return Ok(true);
    }
    Ok(tx.check_permission(principals, bound)?)
}

/// The permission checked to read an object of `kind` itself.
pub fn read_permission(kind: Kind) -> &'static str {
    match kind {
        Kind::Bucket | Kind::Collection => authz::READ_ATTRIBUTES,
        Kind::Group | Kind::Record | Kind::Account | Kind::History => "read",
    }
}

/// Bound permissions of `perm` on the object `id` of the target.
pub fn object_bound(target: &Target, id: &str, perm: &str) -> Vec<(String, String)> {
    authz::bound_permissions(&target.chain(Some(id)), target.kind, perm)
}

/// Bound permissions of `perm` on the list (i.e. on its parent; at the root only settings apply):
/// `read` to list, `write` to delete the list, or the `<resource>:create` permission.
pub fn list_bound(target: &Target, perm: &str) -> Vec<(String, String)> {
    match target.kind.parent() {
        None => vec![(String::new(), perm.to_string())],
        Some(parent) => authz::bound_permissions(&target.chain(None), parent, perm),
    }
}

/// 404 errno 111 when a parent id in the path is not a valid id (after authorization).
pub fn check_parents(target: &Target) -> ApiResult<()> {
    if let Some((id, kind)) = target.invalid_parent() {
        return Err(ApiError::ParentNotFound {
            id: id.to_string(),
            resource_name: kind.name().into(),
        });
    }
    Ok(())
}

/// For records: the parent collection, or 404 errno 111.
pub fn parent_collection(tx: &mut dyn Transaction, target: &Target) -> ApiResult<Object> {
    let bucket_uri = format!("/buckets/{}", target.bucket);
    let list = ListRef {
        resource_name: "collection",
        parent_id: &bucket_uri,
    };
    let found = if crate::api::route::valid_id(&target.collection)
        && crate::api::route::valid_id(&target.bucket)
    {
        tx.get(list, &target.collection)?
    } else {
        None
    };
    found.ok_or_else(|| ApiError::ParentNotFound {
        id: target.collection.clone(),
        resource_name: "collection".into(),
    })
}

/// 400 "Invalid object id" (location path).
pub fn invalid_id() -> ApiError {
    ApiError::invalid(Location::Path, None, "Invalid object id")
}

/// The `permissions` of an object response: its own entries when the caller is in its own
/// `write` entry, `{}` otherwise (inherited rights do not count).
pub fn visible_permissions(perms: &ObjectPermissions, principals: &BTreeSet<String>) -> Value {
    let writer = perms
        .get("write")
        .is_some_and(|w| !w.is_disjoint(principals));
    let mut out = Map::new();
    if writer {
        for (perm, holders) in perms {
            if !holders.is_empty() {
                out.insert(
                    perm.clone(),
                    Value::Array(holders.iter().cloned().map(Value::String).collect()),
                );
            }
        }
    }
    Value::Object(out)
}

/// An object response with `ETag`/`Last-Modified`.
pub fn object_response(status: u16, data: Value, permissions: Option<Value>) -> Response {
    let timestamp = data
        .get("last_modified")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut body = Map::new();
    body.insert("data".into(), data);
    if let Some(permissions) = permissions {
        body.insert("permissions".into(), permissions);
    }
    let mut response = http::json(status, &Value::Object(body));
    response.headers.extend(http::timestamp_headers(timestamp));
    response
}

/// `304 Not Modified` with the compared timestamp.
pub fn not_modified(timestamp: i64) -> Response {
    let mut response = Response::new(304);
    response.headers.extend(http::timestamp_headers(timestamp));
    response
}

/// A parsed `If-Match` / `If-None-Match` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Any,
    Timestamp(i64),
}

/// The conditional headers of a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions {
    pub if_match: Option<Condition>,
    pub if_none_match: Option<Condition>,
}

/// Parses the conditional headers: only `"<digits>"` or `*` are accepted.
pub fn conditions(ctx: &Ctx) -> ApiResult<Conditions> {
    let parse = |name: &str| -> ApiResult<Option<Condition>> {
        let Some(raw) = ctx.request.header(name) else {
            return Ok(None);
        };
        let raw = raw.trim();
        if raw == "*" {
            return Ok(Some(Condition::Any));
        }
        raw.strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<i64>().ok())
            .map(|ts| Some(Condition::Timestamp(ts)))
            .ok_or_else(|| {
                ApiError::invalid(
                    Location::Header,
                    Some(name),
                    "The value should be integer between double quotes.",
                )
            })
    };
    Ok(Conditions {
        if_match: parse("If-Match")?,
        if_none_match: parse("If-None-Match")?,
    })
}

/// An object as sent in 412 `details.existing` (it has no permissions).
pub fn precondition_failed(existing: Option<&Object>, timestamp: Option<i64>) -> ApiError {
    ApiError::PreconditionFailed {
        existing: existing.cloned(),
        timestamp,
    }
}

/// Generates an id for a new object (`8-char name` or UUID4).
pub fn generate_id(kind: Kind) -> String {
    match kind {
        Kind::Record | Kind::Account | Kind::History => uuid::Uuid::new_v4().to_string(),
        Kind::Bucket | Kind::Collection | Kind::Group => {
            use rand::Rng;
            const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
            let mut rng = rand::thread_rng();
            let mut id = String::with_capacity(8);
            id.push(FIRST[rng.gen_range(0..FIRST.len())] as char);
            for _ in 0..7 {
                id.push(REST[rng.gen_range(0..REST.len())] as char);
            }
            id
        }
    }
}

/// Removes the children and ACEs of a deleted object (section 2.3).
pub fn cascade_delete(tx: &mut dyn Transaction, kind: Kind, uri: &str) -> ApiResult<()> {
    let everything = ListQuery::default();
    match kind {
        Kind::Bucket => {
            tx.delete_all("collection", uri, &everything, false)?;
            tx.delete_all("group", uri, &everything, false)?;
            tx.delete_all(
                "record",
                &format!("{uri}/collections/*"),
                &everything,
                false,
            )?;
            tx.delete_all("history", uri, &everything, false)?;
            tx.delete_object_permissions(&[uri.to_string(), format!("{uri}/*")])?;
        }
        Kind::Collection => {
            tx.delete_all("record", uri, &everything, false)?;
            tx.delete_object_permissions(&[uri.to_string(), format!("{uri}/*")])?;
        }
        Kind::Group => {
            tx.remove_principal(uri)?;
            tx.delete_object_permissions(&[uri.to_string()])?;
        }
        Kind::Record | Kind::Account | Kind::History => {
            tx.delete_object_permissions(&[uri.to_string()])?;
        }
    }
    Ok(())
}

/// The member strings of a group object.
fn members(object: Option<&Object>) -> BTreeSet<String> {
    object
        .and_then(|o| o.get("members"))
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps users' group principals in step with a group's `members` (section 2.4).
pub fn sync_members(
    tx: &mut dyn Transaction,
    group_uri: &str,
    old: Option<&Object>,
    new: &Object,
) -> ApiResult<()> {
    let before = members(old);
    let after = members(Some(new));
    for removed in before.difference(&after) {
        tx.remove_user_principal(removed, group_uri)?;
    }
    for added in after.difference(&before) {
        tx.add_user_principal(added, group_uri)?;
    }
    Ok(())
}

/// The principal a write adds to the object's `write` entry (6.4; accounts: 5.3).
pub fn owner(ctx: &Ctx, target: &Target, id: &str, principals: &BTreeSet<String>) -> String {
    match target.kind {
        Kind::Account => super::accounts::owner(ctx, id, principals),
        _ => ctx.writer(),
    }
}

/// The caller's principals plus the owner principal of a write: an account written by an
/// administrator or anonymously shows its permissions in the response, as in Kinto, where
/// the account becomes the writer.
pub fn with_owner(principals: &BTreeSet<String>, owner: &str) -> BTreeSet<String> {
    let mut all = principals.clone();
    all.insert(owner.to_string());
    all
}

/// Writes the ACEs of an object: `set` replaces the named permissions (an empty set removes
/// one); `owner` is added to `write` when `explicit_permissions` is on.
pub fn write_permissions(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    uri: &str,
    owner: &str,
    current: &ObjectPermissions,
    mut set: ObjectPermissions,
) -> ApiResult<ObjectPermissions> {
    if ctx.cfg.settings.explicit_permissions {
        let write = set
            .entry("write".into())
            .or_insert_with(|| current.get("write").cloned().unwrap_or_default());
        write.insert(owner.to_string());
    }
    // Only what changes is written (usually nothing on updates by the owner). Permissions the
    // object did not have yet are set in one statement; existing ones are edited principal by
    // principal, so that rows kept are never deleted and re-inserted.
    let mut fresh = ObjectPermissions::new();
    for (perm, holders) in &set {
        let before = current.get(perm).cloned().unwrap_or_default();
        if before == *holders {
            continue;
        }
        if before.is_empty() {
            fresh.insert(perm.clone(), holders.clone());
            continue;
        }
        for removed in before.difference(holders) {
            tx.remove_principal_from_ace(uri, perm, removed)?;
        }
        for added in holders.difference(&before) {
            tx.add_principal_to_ace(uri, perm, added)?;
        }
    }
    if !fresh.is_empty() {
        tx.replace_object_permissions(uri, &fresh)?;
    }
    let mut result = current.clone();
    for (perm, holders) in set {
        if holders.is_empty() {
            result.remove(&perm);
        } else {
            result.insert(perm, holders);
        }
    }
    Ok(result)
}

/// Tells the backend that the request's next object write is its last
/// (`Transaction::commit_with_next_write`) when nothing can follow it: the request has its
/// transaction to itself (not a batch), no history entry is recorded and no group members are
/// synced after the write.
pub fn commit_with_last_write(ctx: &Ctx, tx: &mut dyn Transaction, kind: Kind) {
    if ctx.own_transaction
        && !ctx.cfg.history.enabled
        && matches!(kind, Kind::Bucket | Kind::Collection | Kind::Record)
    {
        tx.commit_with_next_write();
    }
}

/// Client cache headers of GET/HEAD (section 7.5); `collection` is the parent collection of
/// records when known.
pub fn client_cache_headers(
    ctx: &Ctx,
    target: &Target,
    collection: Option<&Object>,
) -> Vec<(String, String)> {
    let no_cache = || {
        vec![(
            "Cache-Control".to_string(),
            "no-cache, no-store".to_string(),
        )]
    };
    if ctx.user.is_some() {
        return no_cache();
    }
    let settings: &BTreeMap<String, i64> = &ctx.cfg.cache_expires;
    let resource = target.kind.name();
    if target.kind != Kind::Record {
        return match settings.get(&format!("{resource}_cache_expires_seconds")) {
            Some(&seconds) if seconds != 0 => cache_headers(seconds),
            _ => no_cache(),
        };
    }
    let (b, c) = (&target.bucket, &target.collection);
    let candidates = [
        format!("{b}.{c}.record_cache_expires_seconds"),
        format!("{b}.record_cache_expires_seconds"),
        "record_cache_expires_seconds".to_string(),
        format!("{b}_{c}_record_cache_expires_seconds"),
        format!("{b}_record_cache_expires_seconds"),
    ];
    let from_settings = candidates.iter().find_map(|k| settings.get(k).copied());
    let from_collection = collection
        .and_then(|c| c.get("cache_expires"))
        .and_then(Value::as_i64);
    let effective = match (from_settings, from_collection) {
        (None, None) => None,
        (s, c) => {
            let s = s.filter(|v| *v != 0).unwrap_or(-1);
            Some(match c {
                Some(c) => s.max(c),
                None => s,
            })
        }
    };
    match effective {
        Some(seconds) if seconds >= 0 => cache_headers(seconds),
        _ => no_cache(),
    }
}

/// The data of an object without its server fields (`id`, `last_modified`).
pub fn user_fields(object: &Object) -> Map<String, Value> {
    let mut data = object.clone();
    data.remove("id");
    data.remove("last_modified");
    data
}

/// The `last_modified` replication hint of a write: kept only when it is an integer strictly
/// greater than the current object's (section 2.5 rule 1).
pub fn keep_timestamp_hint(data: &mut Map<String, Value>, existing: Option<&Object>) {
    let hint = data.get("last_modified").and_then(Value::as_i64);
    let current = existing
        .and_then(|e| e.get("last_modified"))
        .and_then(Value::as_i64);
    match (hint, current) {
        (Some(h), Some(c)) if h <= c => {
            data.remove("last_modified");
        }
        (None, _) => {
            data.remove("last_modified");
        }
        _ => {}
    }
}

/// Sets the object's `id`.
pub fn with_id(mut data: Map<String, Value>, id: &str) -> Object {
    data.insert("id".into(), Value::String(id.to_string()));
    data
}

/// The `permissions` value of the body as ACE changes: listed permissions replaced; `None`
/// values (JSON null) ignored.
pub fn listed_permissions(body: &body::BodyPermissions) -> ObjectPermissions {
    body.iter()
        .filter_map(|(perm, holders)| holders.as_ref().map(|h| (perm.clone(), h.clone())))
        .collect()
}

/// JSON-schema validation of a write (section 7.4), when enabled: records against their
/// collection's `schema` (then stamped with the collection's `last_modified`) and the bucket's
/// `record:schema`; collections and groups against the bucket's `collection:schema` and
/// `group:schema`.
pub fn validate_schemas(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    data: &mut serde_json::Map<String, Value>,
) -> ApiResult<()> {
    if !ctx.cfg.settings.experimental_collection_schema_validation {
        return Ok(());
    }
    let bucket_field = match target.kind {
        Kind::Record => "record:schema",
        Kind::Collection => "collection:schema",
        Kind::Group => "group:schema",
        _ => return Ok(()),
    };
    if target.kind == Kind::Record {
        let collection = parent_collection(tx, target)?;
        if let Some(schema) = collection.get("schema").filter(|s| s.is_object()) {
            super::schema::validate(data, schema).map_err(|f| f.into_error())?;
            if let Some(ts) = collection.get("last_modified") {
                data.insert("schema".into(), ts.clone());
            }
        }
    }
    let buckets = ListRef {
        resource_name: "bucket",
        parent_id: "",
    };
    if let Some(bucket) = tx.get(buckets, &target.bucket)? {
        if let Some(schema) = bucket.get(bucket_field).filter(|s| s.is_object()) {
            super::schema::validate(data, schema).map_err(|f| f.into_error())?;
        }
    }
    Ok(())
}
