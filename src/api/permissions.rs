//! `GET /v1/permissions` (section 6.7, `experimental_permissions_endpoint`): every object on
//! which the caller holds a permission, through ACEs or settings, with the permissions it
//! implies on the same object. Filters, sorting and pagination run in memory on the entries.

use super::http::json;
use super::resource::{pagination, query};
use super::Ctx;
use crate::error::{ApiError, ApiResult, Location};
use crate::storage::{Filter, FilterOp, ListQuery, Sort, Transaction};
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use worker::Response;

const FIELDS: &[&str] = &[
    "uri",
    "resource_name",
    "permissions",
    "bucket_id",
    "collection_id",
    "group_id",
    "record_id",
    "id",
];

const GRANTABLE: &[&str] = &[
    "read",
    "write",
    "collection:create",
    "group:create",
    "record:create",
];

/// The resource name and id fields of an object URI; `None` for URIs that are not resources.
fn describe(uri: &str) -> Option<(&'static str, Vec<(&'static str, String)>)> {
    let parts: Vec<&str> = uri.trim_start_matches('/').split('/').collect();
    let owned = |s: &str| s.to_string();
    Some(match parts.as_slice() {
        ["buckets", b] => ("bucket", vec![("bucket_id", owned(b)), ("id", owned(b))]),
        ["buckets", b, "collections", c] => (
            "collection",
            vec![
                ("bucket_id", owned(b)),
                ("collection_id", owned(c)),
                ("id", owned(c)),
            ],
        ),
        ["buckets", b, "groups", g] => (
            "group",
            vec![
                ("bucket_id", owned(b)),
                ("group_id", owned(g)),
                ("id", owned(g)),
            ],
        ),
        ["buckets", b, "collections", c, "records", r] => (
            "record",
            vec![
                ("bucket_id", owned(b)),
                ("collection_id", owned(c)),
                ("record_id", owned(r)),
                ("id", owned(r)),
            ],
        ),
        ["accounts", a] => ("account", vec![("account_id", owned(a)), ("id", owned(a))]),
        _ => return None,
    })
}

/// The permissions a granted permission implies on the same object.
fn implied(resource: &str, perm: &str) -> &'static [&'static str] {
    match (resource, perm) {
        ("bucket", "write") => &[
            "write",
            "read",
            "read:attributes",
            "collection:create",
            "group:create",
        ],
        ("bucket", "read") | ("collection", "read") => &["read", "read:attributes"],
        ("bucket", "collection:create") => &["collection:create", "read:attributes"],
        ("bucket", "group:create") => &["group:create", "read:attributes"],
        ("collection", "write") => &["write", "read", "read:attributes", "record:create"],
        ("collection", "record:create") => &["record:create", "read:attributes"],
        (_, "write") => &["write", "read"],
        (_, "read") => &["read"],
        _ => &[],
    }
}

fn in_setting(ctx: &Ctx, setting: &str, principals: &BTreeSet<String>) -> bool {
    ctx.cfg
        .grants
        .principals(setting)
        .is_some_and(|allowed| !allowed.is_disjoint(principals))
}

/// Grants from settings on every existing object of a type.
fn settings_grants(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    principals: &BTreeSet<String>,
    granted: &mut BTreeMap<String, BTreeSet<String>>,
) -> ApiResult<()> {
    // (setting, resource whose objects get the permission, permission)
    let rules: &[(&str, &str, &str)] = &[
        ("bucket_read_principals", "bucket", "read"),
        ("bucket_write_principals", "bucket", "write"),
        (
            "collection_create_principals",
            "bucket",
            "collection:create",
        ),
        ("group_create_principals", "bucket", "group:create"),
        ("collection_read_principals", "collection", "read"),
        ("collection_write_principals", "collection", "write"),
        ("record_create_principals", "collection", "record:create"),
        ("group_read_principals", "group", "read"),
        ("group_write_principals", "group", "write"),
    ];
    let active: Vec<&(&str, &str, &str)> = rules
        .iter()
        .filter(|(setting, _, _)| in_setting(ctx, setting, principals))
        .collect();
    if active.is_empty() {
        return Ok(());
    }
    let everything = ListQuery::default();
    let ids = |objects: Vec<crate::storage::Object>| -> Vec<String> {
        objects
            .into_iter()
            .filter_map(|o| o.get("id").and_then(Value::as_str).map(str::to_string))
            .collect()
    };
    let buckets = ids(tx.list_all("bucket", "", &everything)?);
    for (_, resource, perm) in &active {
        for bucket in &buckets {
            let bucket_uri = format!("/buckets/{bucket}");
            let uris: Vec<String> = match *resource {
                "bucket" => vec![bucket_uri],
                child => ids(tx.list_all(child, &bucket_uri, &everything)?)
                    .into_iter()
                    .map(|id| format!("{bucket_uri}/{child}s/{id}"))
                    .collect(),
            };
            for uri in uris {
                granted.entry(uri).or_default().insert(perm.to_string());
            }
        }
    }
    Ok(())
}

/// The entries visible to the caller, before filtering.
fn entries(ctx: &mut Ctx, tx: &mut dyn Transaction) -> ApiResult<Vec<Map<String, Value>>> {
    let principals = ctx.principals(tx)?;
    if !in_setting(ctx, "permissions_read_principals", &principals) {
        return Err(ctx.deny());
    }
    let bound: Vec<(String, String)> = GRANTABLE
        .iter()
        .map(|p| ("*".to_string(), p.to_string()))
        .collect();
    let mut granted = tx.get_accessible_objects(&principals, &bound)?;
    settings_grants(ctx, tx, &principals, &mut granted)?;
    let mut out = Vec::new();
    for (uri, perms) in granted {
        let Some((resource, ids)) = describe(&uri) else {
            continue;
        };
        let mut all: BTreeSet<&str> = BTreeSet::new();
        for perm in &perms {
            all.extend(implied(resource, perm));
        }
        let mut entry = Map::new();
        entry.insert("uri".into(), json!(uri));
        entry.insert("resource_name".into(), json!(resource));
        entry.insert("permissions".into(), json!(all));
        for (key, value) in ids {
            entry.insert(key.into(), json!(value));
        }
        out.push(entry);
    }
    let mut root = Vec::new();
    if in_setting(ctx, "bucket_create_principals", &principals) {
        root.push("bucket:create");
    }
    if in_setting(ctx, "account_create_principals", &principals) {
        root.push("account:create");
    }
    if !root.is_empty() {
        let mut entry = Map::new();
        entry.insert("uri".into(), json!("/"));
        entry.insert("resource_name".into(), json!("root"));
        entry.insert("permissions".into(), json!(root));
        out.push(entry);
    }
    Ok(out)
}

/// Rank of a JSON type in PostgreSQL's JSONB order.
fn type_rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::String(_) => 1,
        Value::Number(_) => 2,
        Value::Bool(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => type_rank(a)
            .cmp(&type_rank(b))
            .then_with(|| a.to_string().cmp(&b.to_string())),
    }
}

/// Compares a (possibly absent) field with a value; absent sorts after everything.
fn compare_field(field: Option<&Value>, value: &Value) -> Ordering {
    match field {
        None => Ordering::Greater,
        Some(f) => compare(f, value),
    }
}

fn matches(entry: &Map<String, Value>, filter: &Filter) -> bool {
    let field = entry.get(&filter.field);
    if filter.is_missing() {
        return match filter.op {
            FilterOp::Eq => field.is_none(),
            FilterOp::Lt => field.is_some(),
            _ => false,
        };
    }
    let value = &filter.value;
    let items = || match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    match filter.op {
        FilterOp::Eq => field == Some(value),
        FilterOp::NotEq => field != Some(value),
        FilterOp::Lt => field.is_some() && compare_field(field, value) == Ordering::Less,
        FilterOp::Max => field.is_some() && compare_field(field, value) != Ordering::Greater,
        FilterOp::Gt => compare_field(field, value) == Ordering::Greater,
        FilterOp::Min => compare_field(field, value) != Ordering::Less,
        FilterOp::In => field.is_some_and(|f| items().contains(f)),
        FilterOp::NotIn => !field.is_some_and(|f| items().contains(f)),
        FilterOp::Has => field.is_some() == crate::storage::truthy(value),
        FilterOp::Like => {
            let pattern = value.as_str().unwrap_or_default().to_lowercase();
            let pattern = if pattern.contains('*') {
                pattern
            } else {
                format!("*{pattern}*")
            };
            let text = match field {
                Some(Value::String(s)) => s.to_lowercase(),
                Some(other) => other.to_string().to_lowercase(),
                None => return false,
            };
            super::cors::wildcard_match(&pattern, &text)
        }
        FilterOp::Contains | FilterOp::ContainsAny => {
            let Some(Value::Array(have)) = field else {
                return false;
            };
            let wanted = items();
            if filter.op == FilterOp::Contains {
                wanted.iter().all(|w| have.contains(w))
            } else {
                wanted.iter().any(|w| have.contains(w))
            }
        }
    }
}

fn sort_entries(entries: &mut [Map<String, Value>], sorting: &[Sort]) {
    entries.sort_by(|a, b| {
        for sort in sorting {
            let ordering = match (a.get(&sort.field), b.get(&sort.field)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => compare(x, y),
            };
            let ordering = if sort.descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
}

/// `GET`/`HEAD /v1/permissions`.
pub fn list(ctx: &mut Ctx, tx: &mut dyn Transaction) -> ApiResult<Response> {
    let mut entries = entries(ctx, tx)?;
    let parsed = query::parse(&ctx.query)?;
    let known = |field: &str| FIELDS.contains(&field) || field == "last_modified";
    for filter in &parsed.filters {
        if !known(&filter.field) {
            let name = filter.field.clone();
            return Err(ApiError::invalid(
                Location::Querystring,
                Some(&name),
                format!("Unknown filter field '{name}'"),
            ));
        }
    }
    let mut sorting: Vec<Sort> = Vec::new();
    for sort in &parsed.sorting {
        if sort.field == "last_modified" {
            continue;
        }
        if !known(&sort.field) {
            return Err(ApiError::invalid(
                Location::Querystring,
                None,
                format!("Unknown sort field '{}'", sort.field),
            ));
        }
        sorting.push(sort.clone());
    }
    if sorting.is_empty() {
        sorting.push(Sort {
            field: "uri".into(),
            descending: true,
        });
    }
    let filters: Vec<&Filter> = parsed
        .filters
        .iter()
        .filter(|f| f.field != "last_modified")
        .collect();
    entries.retain(|e| filters.iter().all(|f| matches(e, f)));
    let total = entries.len();
    sort_entries(&mut entries, &sorting);
    if let Some(token) = parsed.token.as_deref() {
        let token = pagination::decode_with(token, false)?;
        let rules = pagination::rules(&sorting, &token.last_object);
        entries.retain(|e| rules.iter().any(|rule| rule.iter().all(|f| matches(e, f))));
    }
    let settings = &ctx.cfg.settings;
    let size = pagination::page_size(
        parsed.limit,
        settings.paginate_by,
        settings.storage_max_fetch_size,
    );
    let mut response_headers = Vec::new();
    if entries.len() > size {
        entries.truncate(size);
        let last = entries.last().cloned().unwrap_or_default();
        let token = pagination::encode(&last, &sorting, size + 1, &pagination::new_nonce());
        response_headers.push((
            "Next-Page".to_string(),
            pagination::next_page_url(
                &ctx.base_url(),
                ctx.request.path(),
                &ctx.query,
                size,
                &token,
            ),
        ));
    }
    let data: Vec<Value> = match &parsed.fields {
        Some(fields) => entries.iter().map(|e| query::project(e, fields)).collect(),
        None => entries.into_iter().map(Value::Object).collect(),
    };
    let mut response = json(200, &json!({ "data": data }));
    response.headers.extend(response_headers);
    if ctx.request.method.eq_ignore_ascii_case("HEAD") {
        response
            .headers
            .push(("Total-Objects".into(), total.to_string()));
        response
            .headers
            .push(("Total-Records".into(), total.to_string()));
    }
    Ok(response)
}
