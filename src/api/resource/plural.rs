//! Plural URLs (`/buckets`, `…/records`): GET/HEAD (filters, sorting, pagination, `_fields`,
//! `Total-Objects`), POST (create, or 200 with an existing id) and DELETE (paginated bulk
//! delete with single-use tokens), including restricted views of shared objects (6.5 step 4).

use super::body;
use super::pagination;
use super::query::{self, PluralQuery};
use super::*;
use crate::api::{accounts, history};
use crate::authz::shared_permissions;
use crate::error::{ApiError, ApiResult, Location};
use crate::storage::{Filter, FilterOp, ListQuery, ListRequest, Object, PageObject, Transaction};
use serde_json::{json, Value};

/// What the caller may see (or delete) of a list.
enum View {
    /// The whole list.
    Full,
    /// Only these object ids (shared with the caller); possibly none.
    Only(Vec<String>),
}

/// Decides the view of a plural GET/HEAD (`write == false`) or DELETE (`write == true`), and
/// returns the parent collection of records (for its existence and `cache_expires`).
fn prepare(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    write: bool,
) -> ApiResult<(View, Option<Object>)> {
    let perm = if write { "write" } else { "read" };
    let access = read_list_access(ctx, tx, target, &list_bound(target, perm))?;
    let view = if access.allowed {
        View::Full
    } else {
        restricted_view(ctx, tx, target, &access.principals, write)?
    };
    check_parents(target)?;
    if !access.parent_exists {
        return Err(ApiError::ParentNotFound {
            id: target.collection.clone(),
            resource_name: "collection".into(),
        });
    }
    Ok((view, access.object.filter(|_| target.kind == Kind::Record)))
}

/// What the fused read of a plural GET computed besides the checks: the list timestamp, the
/// page (with its extra object) and, for HEAD, the count.
struct Fetched {
    timestamp: i64,
    objects: Vec<PageObject>,
    count: Option<usize>,
}

/// [`prepare`] for a plural GET, with the list timestamp and `page` read in the same
/// `read_list` round trip (PostgreSQL). The checks and their order are [`prepare`]'s. There is
/// no [`Fetched`] when the ACEs alone do not grant the whole list (settings grants, restricted
/// views): the caller then reads by parts, as before.
fn prepare_fused(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    page: &ListQuery,
    with_count: bool,
) -> ApiResult<(View, Option<Object>, Option<Fetched>)> {
    let bound = list_bound(target, "read");
    let bucket_uri = format!("/buckets/{}", target.bucket);
    let collections = ListRef {
        resource_name: "collection",
        parent_id: &bucket_uri,
    };
    // As in `read_list_access`: records need their collection (its `cache_expires` too);
    // collections and groups do not require their bucket to exist.
    let parents: Vec<(ListRef, &str)> = if target.kind == Kind::Record {
        vec![(collections, target.collection.as_str())]
    } else {
        Vec::new()
    };
    let parent_id = target.parent_id();
    let (user_ids, known) = caller(ctx);
    let request = ListRequest {
        resource_name: target.kind.name(),
        parent_id: &parent_id,
        query: page,
        with_count,
        user_ids: &user_ids,
        principals: &known,
        bound_permissions: &bound,
        parents: &parents,
    };
    let result = tx.read_list(&request)?;
    ctx.principals = Some(result.principals.clone());
    let allowed = result.allowed
        || ctx
            .cfg
            .grants
            .allows(target.kind.name(), &bound, &result.principals);
    let view = if allowed {
        View::Full
    } else {
        restricted_view(ctx, tx, target, &result.principals, false)?
    };
    check_parents(target)?;
    let mut found = result.parents;
    if found.iter().any(Option::is_none) {
        return Err(ApiError::ParentNotFound {
            id: target.collection.clone(),
            resource_name: "collection".into(),
        });
    }
    let collection = found.pop().flatten();
    // The page is the whole list's: only for a caller whose ACEs grant it.
    let fetched = match (result.allowed, result.timestamp) {
        (true, Some(timestamp)) => Some(Fetched {
            timestamp,
            objects: result.objects,
            count: result.count,
        }),
        _ => None,
    };
    Ok((view, collection, fetched))
}

/// Section 6.5 step 4: the objects shared with the caller, or an empty view for callers who
/// may create in the list, or a denial.
fn restricted_view(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    principals: &BTreeSet<String>,
    write: bool,
) -> ApiResult<View> {
    let plural_uri = target.plural_uri();
    let pattern = format!("{plural_uri}/*");
    let bound: Vec<(String, String)> = shared_permissions(target.kind, write)
        .iter()
        .map(|p| (pattern.clone(), p.to_string()))
        .collect();
    let prefix = format!("{plural_uri}/");
    let accessible = tx.get_accessible_objects(principals, &bound)?;
    let ids: Vec<String> = accessible
        .keys()
        .filter_map(|uri| uri.strip_prefix(&prefix))
        .filter(|id| !id.contains('/'))
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        return Ok(View::Only(ids));
    }
    let create = list_bound(target, target.kind.create_permission());
    if check(ctx, tx, target, &create, principals)? {
        return Ok(View::Only(Vec::new()));
    }
    Err(ctx.deny())
}

/// The storage query of a page: URL filters, the view restriction, the token's rules.
fn list_query(
    parsed: &PluralQuery,
    view: &View,
    token: Option<&pagination::Token>,
    limit: Option<usize>,
) -> ListQuery {
    let mut filters = parsed.filters.clone();
    if let View::Only(ids) = view {
        filters.push(Filter {
            field: "id".into(),
            op: FilterOp::In,
            value: Value::Array(ids.iter().cloned().map(Value::String).collect()),
        });
    }
    ListQuery {
        filters,
        sorting: parsed.sorting.clone(),
        pagination_rules: token
            .map(|t| pagination::rules(&parsed.sorting, &t.last_object))
            .unwrap_or_default(),
        limit,
        // Restricted views never show tombstones: their ACEs are gone.
        include_deleted: parsed.includes_deleted() && matches!(view, View::Full),
    }
}

fn is_empty_view(view: &View) -> bool {
    matches!(view, View::Only(ids) if ids.is_empty())
}

fn page_size(ctx: &Ctx, parsed: &PluralQuery) -> usize {
    let settings = &ctx.cfg.settings;
    pagination::page_size(
        parsed.limit,
        settings.paginate_by,
        settings.storage_max_fetch_size,
    )
}

/// The querystring; history entries have a fixed schema.
fn parse_query(ctx: &Ctx, target: &Target) -> ApiResult<PluralQuery> {
    let mut parsed = query::parse(&ctx.query)?;
    if target.kind == Kind::History {
        let sorts: Vec<String> = parsed.sorting.iter().map(|s| s.field.clone()).collect();
        history::check_fields(&mut parsed.filters, &sorts)?;
    }
    Ok(parsed)
}

/// `GET`/`HEAD` of a list.
pub fn get(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    head: bool,
) -> ApiResult<Response> {
    if target.kind == Kind::Account && ctx.user.is_none() {
        // Kinto quirk (replicated): 401 with errno 999 and no message nor challenge.
        return Err(ApiError::AccountsUnreadable);
    }
    // Parsed before reading, so that the page is read with the permission checks; their
    // errors are still raised after authorization (Kinto's order), by the slower path.
    let parsed = parse_query(ctx, target);
    let token = match &parsed {
        Ok(parsed) => parsed.token.as_deref().map(pagination::decode).transpose(),
        Err(_) => Ok(None),
    };
    let conditions = conditions(ctx);
    // The root lists (buckets, accounts) are granted by settings only: nothing to fuse.
    let fusable =
        !matches!(target.kind, Kind::Bucket | Kind::Account) && target.invalid_parent().is_none();
    let (view, collection, fetched) = match (&parsed, &token, &conditions) {
        (Ok(parsed), Ok(token), Ok(_)) if fusable => {
            let page = if parsed.always_empty {
                ListQuery {
                    limit: Some(0),
                    ..ListQuery::default()
                }
            } else {
                let size = page_size(ctx, parsed);
                list_query(parsed, &View::Full, token.as_ref(), Some(size + 1))
            };
            prepare_fused(ctx, tx, target, &page, head && !parsed.always_empty)?
        }
        _ => {
            let (view, collection) = prepare(ctx, tx, target, false)?;
            (view, collection, None)
        }
    };
    let parsed = parsed?;
    if parsed.deprecated_to {
        ctx.alert = Some(
            json!({
                "code": "soft-eol",
                "message": "_to is now deprecated, you should use _before instead",
                "url": "https://kinto.readthedocs.io/en/2.4.0/api/resource.html#list-of-available-url-parameters",
            })
            .to_string(),
        );
    }
    let token = token?;
    let conditions = conditions?;
    let parent_id = target.parent_id();
    let timestamp = match &fetched {
        Some(fetched) => fetched.timestamp,
        None => tx.resource_timestamp(list_ref(target, &parent_id))?,
    };
    if let Some(Condition::Timestamp(ts)) = conditions.if_none_match {
        if ts == timestamp {
            return Ok(not_modified(timestamp));
        }
    }
    if conditions.if_none_match == Some(Condition::Any) {
        return Err(precondition_failed(None, Some(timestamp)));
    }
    if let Some(Condition::Timestamp(ts)) = conditions.if_match {
        if ts != timestamp {
            return Err(precondition_failed(None, Some(timestamp)));
        }
    }
    let size = page_size(ctx, &parsed);
    let skip = parsed.always_empty || is_empty_view(&view);
    let (mut objects, counted) = match fetched {
        Some(fetched) => (fetched.objects, fetched.count),
        None if skip => (Vec::new(), None),
        None => {
            let page = list_query(&parsed, &view, token.as_ref(), Some(size + 1));
            let objects = tx.list_all(target.kind.name(), &parent_id, &page)?;
            (objects.into_iter().map(PageObject::Parsed).collect(), None)
        }
    };
    let mut next_page = None;
    if objects.len() > size {
        objects.truncate(size);
        let last = objects.last().expect("a non-empty page").to_object()?;
        let token = pagination::encode(&last, &parsed.sorting, size + 1, &pagination::new_nonce());
        next_page = Some(pagination::next_page_url(
            &ctx.base_url(),
            ctx.request.path(),
            &ctx.query,
            size,
            &token,
        ));
    }
    let mut body = Vec::with_capacity(64 + objects.len() * 512);
    body.extend_from_slice(b"{\"data\":[");
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        match &parsed.fields {
            Some(fields) => {
                let projected = query::project(&object.to_object()?, fields);
                let _ = serde_json::to_writer(&mut body, &projected);
            }
            None => object.write_json(&mut body),
        }
    }
    body.extend_from_slice(b"]}");
    let mut response = crate::api::http::json_bytes(200, body);
    response
        .headers
        .extend(crate::api::http::timestamp_headers(timestamp));
    if let Some(url) = next_page {
        response.headers.push(("Next-Page".into(), url));
    }
    if head {
        let total = match counted {
            _ if skip => 0,
            Some(total) => total,
            None => {
                let counted = list_query(&parsed, &view, None, None);
                tx.count_all(target.kind.name(), &parent_id, &counted.filters)?
            }
        };
        response
            .headers
            .push(("Total-Objects".into(), total.to_string()));
        response
            .headers
            .push(("Total-Records".into(), total.to_string()));
    }
    response
        .headers
        .extend(client_cache_headers(ctx, target, collection.as_ref()));
    Ok(response)
}

/// `POST` on a list: create, or answer 200 with the object an existing `data.id` names.
pub fn post(ctx: &mut Ctx, tx: &mut dyn Transaction, target: &Target) -> ApiResult<Response> {
    let raw = body::parse_json(&ctx.request.body);
    let given_id: Option<Value> = raw
        .as_ref()
        .ok()
        .and_then(|b| b.get("data"))
        .and_then(|d| d.get("id"))
        .cloned();
    let lookup_id = given_id
        .as_ref()
        .and_then(Value::as_str)
        .filter(|id| target.kind.valid_id(id))
        .map(str::to_string);
    let create = list_bound(target, target.kind.create_permission());
    // One round trip: the named object (read permission) or the parent (create permission).
    let (access, existing) = match &lookup_id {
        Some(id) => {
            let bound = object_bound(target, id, read_permission(target.kind));
            let mut access = read_access(ctx, tx, target, id, &bound)?;
            let mut existing = access.object.take();
            // Another user's account is "missing" to a non-administrator (Kinto's parent
            // scoping): the creation path then refuses the id.
            if target.kind == Kind::Account && accounts::foreign(ctx, id, &access.principals) {
                existing = None;
            }
            if existing.is_none() {
                access.allowed = check(ctx, tx, target, &create, &access.principals)?;
            }
            (access, existing)
        }
        None => (read_list_access(ctx, tx, target, &create)?, None),
    };
    if target.kind == Kind::Record && !access.parent_exists {
        return Err(ApiError::ParentNotFound {
            id: target.collection.clone(),
            resource_name: "collection".into(),
        });
    }
    if !access.allowed {
        return Err(ctx.deny());
    }
    let principals = access.principals;
    check_parents(target)?;
    let envelope = body::envelope(target.kind, raw?)?;
    let conditions = conditions(ctx)?;
    if let Some(existing) = &existing {
        let current = existing
            .get("last_modified")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let stale = match conditions.if_match {
            Some(Condition::Timestamp(ts)) => ts != current,
            _ => false,
        };
        if conditions.if_none_match == Some(Condition::Any) || stale {
            return Err(precondition_failed(Some(existing), Some(current)));
        }
        let visible = visible_permissions(&access.own, &principals);
        return Ok(object_response(
            200,
            Value::Object(existing.clone()),
            Some(visible),
        ));
    }
    if conditions.if_match.is_some() {
        // Kinto quirk (replicated): If-Match on a creation always fails.
        return Err(precondition_failed(None, None));
    }
    let generated = given_id.is_none();
    let id = match given_id {
        Some(Value::String(id)) if target.kind.valid_id(&id) => id,
        Some(_) => return Err(invalid_id()),
        // Accounts have no id generator: the id is the user name.
        None if target.kind == Kind::Account => {
            // Users posting for themselves get Kinto's later check's message.
            let description = if accounts::foreign(ctx, "", &principals) {
                "Accounts must have an ID."
            } else {
                "data.id in body: Required"
            };
            return Err(ApiError::invalid(
                Location::Body,
                Some("data.id"),
                description,
            ));
        }
        None => generate_id(target.kind),
    };
    let mut data = envelope.data.unwrap_or_default();
    keep_timestamp_hint(&mut data, None);
    body::check_data(target.kind, &mut data)?;
    validate_schemas(ctx, tx, target, &mut data)?;
    if target.kind == Kind::Account {
        let sent = data.contains_key("password");
        accounts::prepare_write(ctx, &id, &principals, &mut data, sent)?;
    }
    let uri = target.object_uri(&id);
    let list_parent = target.list_parent(&id);
    let set = envelope
        .permissions
        .as_ref()
        .map(listed_permissions)
        .unwrap_or_default();
    let owner = owner(ctx, target, &id, &principals);
    let none = ObjectPermissions::new();
    // Under a generated id the creation cannot meet an existing object: the ACEs can be written
    // first and the creation be the request's last write. A given id may be taken meanwhile
    // (answered below without writing any ACE).
    let mut permissions = None;
    if generated {
        permissions = Some(write_permissions(
            ctx,
            tx,
            &uri,
            &owner,
            &none,
            set.clone(),
        )?);
        commit_with_last_write(ctx, tx, target.kind);
    }
    let created = tx.create(list_ref(target, &list_parent), with_id(data, &id))?;
    let (status, stored) = match created {
        Ok(stored) => (201, stored),
        // Created meanwhile by someone else: answer as for an existing id.
        Err(existing) => {
            let visible = visible_permissions(&access.own, &principals);
            return Ok(object_response(200, Value::Object(existing), Some(visible)));
        }
    };
    let permissions = match permissions {
        Some(written) => written,
        None => write_permissions(ctx, tx, &uri, &owner, &none, set)?,
    };
    if target.kind == Kind::Group {
        sync_members(tx, &uri, None, &stored)?;
    }
    history::record(ctx, tx, target, &id, "create", &stored, &permissions)?;
    let visible = visible_permissions(&permissions, &with_owner(&principals, &owner));
    Ok(object_response(
        status,
        Value::Object(stored),
        Some(visible),
    ))
}

/// `DELETE` on a list: deletes one page of matching objects the caller may write.
pub fn delete(ctx: &mut Ctx, tx: &mut dyn Transaction, target: &Target) -> ApiResult<Response> {
    if target.kind == Kind::Account && ctx.user.is_none() {
        // Same quirk as the anonymous listing.
        return Err(ApiError::AccountsUnreadable);
    }
    let (view, _) = prepare(ctx, tx, target, true)?;
    let parsed = parse_query(ctx, target)?;
    let token = parsed
        .token
        .as_deref()
        .map(pagination::decode)
        .transpose()?;
    let conditions = conditions(ctx)?;
    if let Some(token) = &token {
        // DELETE tokens are single-use: their nonce is consumed from the shared cache.
        // The cache backend applies `cache_prefix` itself.
        let key = token.nonce.clone().unwrap_or_default();
        if token.nonce.is_none() || ctx.cache.delete(&key)?.is_none() {
            return Err(ApiError::invalid(
                Location::Querystring,
                None,
                "_token was already used or has expired.",
            ));
        }
    }
    let parent_id = target.parent_id();
    let timestamp = tx.resource_timestamp(list_ref(target, &parent_id))?;
    if conditions.if_none_match == Some(Condition::Any) {
        return Err(precondition_failed(None, Some(timestamp)));
    }
    if let Some(Condition::Timestamp(ts)) = conditions.if_match {
        if ts != timestamp {
            return Err(precondition_failed(None, Some(timestamp)));
        }
    }
    let size = page_size(ctx, &parsed);
    let skip = parsed.always_empty || is_empty_view(&view);
    let mut parsed = parsed;
    // Deletions never target tombstones.
    let mut page = list_query(&parsed, &view, token.as_ref(), Some(size + 1));
    page.include_deleted = false;
    let mut matching = if skip {
        Vec::new()
    } else {
        tx.list_all(target.kind.name(), &parent_id, &page)?
    };
    let more = matching.len() > size;
    matching.truncate(size);
    let tombstones = if matching.is_empty() {
        Vec::new()
    } else {
        // Delete exactly the objects of this page.
        let ids: Vec<Value> = matching
            .iter()
            .filter_map(|o| o.get("id").cloned())
            .collect();
        parsed.filters = vec![Filter {
            field: "id".into(),
            op: FilterOp::In,
            value: Value::Array(ids),
        }];
        let mut exact = list_query(&parsed, &View::Full, None, None);
        exact.include_deleted = false;
        tx.delete_all(target.kind.name(), &parent_id, &exact, true)?
    };
    for tombstone in &tombstones {
        if let Some(id) = tombstone.get("id").and_then(Value::as_str) {
            cascade_delete(tx, target.kind, &target.object_uri(id))?;
            if target.kind == Kind::Account {
                accounts::forget_verification(ctx, id);
            }
            let no_permissions = ObjectPermissions::new();
            history::record(ctx, tx, target, id, "delete", tombstone, &no_permissions)?;
        }
    }
    let etag = tombstones
        .iter()
        .filter_map(|t| t.get("last_modified").and_then(Value::as_i64))
        .max()
        .unwrap_or(timestamp);
    let mut response = crate::api::http::json(
        200,
        &json!({"data": tombstones.into_iter().map(Value::Object).collect::<Vec<_>>()}),
    );
    response
        .headers
        .extend(crate::api::http::timestamp_headers(etag));
    if more {
        let nonce = pagination::new_nonce();
        // Stored once the deletion is committed (before any storage write on SQLite).
        ctx.cache_writes.push((
            nonce.clone(),
            Some(Value::String(String::new())),
            Some(ctx.cfg.settings.pagination_token_validity_seconds as f64),
        ));
        let last = matching.last().expect("a non-empty page");
        let token = pagination::encode(last, &parsed.sorting, 0, &nonce);
        response.headers.push((
            "Next-Page".into(),
            pagination::next_page_url(
                &ctx.base_url(),
                ctx.request.path(),
                &ctx.query,
                size,
                &token,
            ),
        ));
    }
    Ok(response)
}
