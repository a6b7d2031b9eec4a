//! `GET /v1/permissions` (section 6.7): every object on which the caller's principals hold an
//! ACE, plus the objects granted by `<resource>_<perm>_principals` settings, each with the
//! permissions it implies on the same object; filtered, sorted and paginated in memory as
//! Kinto's memory backend does.

use super::http::{json, now_ms, timestamp_headers};
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

/// Every permission name an ACE may hold.
const ALL_PERMISSIONS: &[&str] = &[
    "read",
    "write",
    "collection:create",
    "group:create",
    "record:create",
];

/// The permissions a granted permission implies on the same object (Kinto's inverted
/// inheritance tree, restricted to the object itself). `None` for unknown permissions.
fn implied(resource: &str, perm: &str) -> Option<&'static [&'static str]> {
    Some(match (resource, perm) {
        ("bucket", "write") => &[
            "write",
            "read",
            "read:attributes",
            "collection:create",
            "group:create",
        ],
        ("bucket", "read") => &["read", "read:attributes"],
        ("bucket", "collection:create") => &["collection:create", "read:attributes"],
        ("bucket", "group:create") => &["group:create", "read:attributes"],
        ("collection", "write") => &["write", "read", "read:attributes", "record:create"],
        ("collection", "read") => &["read", "read:attributes"],
        ("collection", "record:create") => &["record:create", "read:attributes"],
        ("group" | "record" | "account", "write") => &["write", "read"],
        ("group" | "record" | "account", "read") => &["read"],
        ("root", "bucket:create") => &["bucket:create"],
        ("root", "account:create") => &["account:create"],
        _ => return None,
    })
}

/// `(resource_name, ids)` of an object URI (ids as `(key, value)` in path order).
fn lookup(uri: &str, accounts: bool) -> Option<(&'static str, Vec<(&'static str, String)>)> {
    let parts: Vec<&str> = uri.split('/').collect();
    let s = |v: &str| v.to_string();
    Some(match parts.as_slice() {
        ["", ""] => ("root", Vec::new()),
        ["", "buckets", b] => ("bucket", vec![("id", s(b))]),
        ["", "buckets", b, "collections", c] => {
            ("collection", vec![("bucket_id", s(b)), ("id", s(c))])
        }
        ["", "buckets", b, "groups", g] => ("group", vec![("bucket_id", s(b)), ("id", s(g))]),
        ["", "buckets", b, "collections", c, "records", r] => (
            "record",
            vec![("bucket_id", s(b)), ("collection_id", s(c)), ("id", s(r))],
        ),
        ["", "accounts", a] if accounts => ("account", vec![("id", s(a))]),
        _ => return None,
    })
}

/// Kinto's `allowed_from_settings`: resource → permissions granted to the caller by settings.
fn from_settings(ctx: &Ctx, principals: &BTreeSet<String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut known = vec!["bucket", "collection", "group", "record"];
    if ctx.cfg.plugins.accounts {
        known.push("account");
    }
    if ctx.cfg.plugins.history {
        known.push("history");
    }
    let mut names: BTreeSet<String> = ctx.cfg.settings.raw.keys().cloned().collect();
    names.insert("bucket_create_principals".into());
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in names {
        let Some(stem) = name.strip_suffix("_principals") else {
            continue;
        };
        let Some((resource, perm)) = stem.split_once('_') else {
            continue;
        };
        if !matches!(perm, "create" | "write" | "read") || !known.contains(&resource) {
            continue;
        }
        let granted = ctx
            .cfg
            .grants
            .principals(&name)
            .is_some_and(|p| !p.is_disjoint(principals));
        if !granted {
            continue;
        }
        let (on, perm) = if perm == "create" {
            let parent = match resource {
                "collection" | "group" => "bucket",
                "record" => "collection",
                _ => "root",
            };
            (parent.to_string(), format!("{resource}:create"))
        } else {
            (resource.to_string(), perm.to_string())
        };
        out.entry(on).or_default().insert(perm);
    }
    out
}

/// The entries of the caller, unfiltered.
fn entries(ctx: &mut Ctx, tx: &mut dyn Transaction) -> ApiResult<Vec<Map<String, Value>>> {
    let principals = ctx.principals(tx)?;
    let bound: Vec<(String, String)> = ALL_PERMISSIONS
        .iter()
        .map(|p| ("*".to_string(), p.to_string()))
        .collect();
    let mut by_uri: BTreeMap<String, BTreeSet<String>> =
        tx.get_accessible_objects(&principals, &bound)?;
    let settings = from_settings(ctx, &principals);
    if let Some(root) = settings.get("root") {
        by_uri
            .entry("/".into())
            .or_default()
            .extend(root.iter().cloned());
    }
    let expand: Vec<&str> = ["bucket", "collection", "group"]
        .into_iter()
        .filter(|r| settings.contains_key(*r))
        .collect();
    if !expand.is_empty() {
        let everything = ListQuery::default();
        for bucket in tx.list_all("bucket", "", &everything)? {
            let Some(bid) = bucket.get("id").and_then(Value::as_str) else {
                continue;
            };
            let bucket_uri = format!("/buckets/{bid}");
            for resource in &expand {
                let perms = &settings[*resource];
                if *resource == "bucket" {
                    by_uri
                        .entry(bucket_uri.clone())
                        .or_default()
                        .extend(perms.iter().cloned());
                    continue;
                }
                for child in tx.list_all(resource, &bucket_uri, &everything)? {
                    if let Some(id) = child.get("id").and_then(Value::as_str) {
                        by_uri
                            .entry(format!("{bucket_uri}/{resource}s/{id}"))
                            .or_default()
                            .extend(perms.iter().cloned());
                    }
                }
            }
        }
    }
    let mut out = Vec::with_capacity(by_uri.len());
    for (uri, perms) in by_uri {
        let Some((resource, ids)) = lookup(&uri, ctx.cfg.plugins.accounts) else {
            continue;
        };
        let mut all: BTreeSet<&str> = BTreeSet::new();
        for perm in &perms {
            if let Some(implied) = implied(resource, perm) {
                all.extend(implied.iter().copied());
            }
        }
        let mut entry = Map::new();
        entry.insert("uri".into(), json!(uri));
        entry.insert("resource_name".into(), json!(resource));
        entry.insert("permissions".into(), json!(all));
        for (key, value) in &ids {
            entry.insert(key.to_string(), json!(value));
        }
        if let Some((_, id)) = ids.iter().find(|(k, _)| *k == "id") {
            entry.insert(format!("{resource}_id"), json!(id));
        }
        out.push(entry);
    }
    Ok(out)
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Loose equality of a stored value and a querystring value (numbers given for string ids).
fn equals(a: &Value, b: &Value) -> bool {
    a == b
        || match (a, b) {
            (Value::String(s), Value::Number(n)) | (Value::Number(n), Value::String(s)) => {
                s == &n.to_string()
            }
            _ => false,
        }
}

fn like(pattern: &str, text: &str) -> bool {
    let pattern = if pattern.contains('*') {
        pattern.to_string()
    } else {
        format!("*{pattern}*")
    };
    super::cors::wildcard_match(&pattern.to_lowercase(), &text.to_lowercase())
}

fn matches(entry: &Map<String, Value>, filter: &Filter) -> bool {
    let value = entry.get(&filter.field);
    if filter.is_missing() {
        // Pagination after an entry without that field: absent fields sort first.
        return match filter.op {
            FilterOp::Eq => value.is_none(),
            FilterOp::Gt => value.is_some(),
            _ => false,
        };
    }
    let target = &filter.value;
    let list = |v: &Value| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
    match filter.op {
        FilterOp::Eq => value.is_some_and(|v| equals(v, target)),
        FilterOp::NotEq => !value.is_some_and(|v| equals(v, target)),
        FilterOp::In => value.is_some_and(|v| list(target).iter().any(|t| equals(v, t))),
        FilterOp::NotIn => !value.is_some_and(|v| list(target).iter().any(|t| equals(v, t))),
        FilterOp::Lt => value.and_then(|v| compare(v, target)) == Some(Ordering::Less),
        FilterOp::Gt => value.and_then(|v| compare(v, target)) == Some(Ordering::Greater),
        FilterOp::Min => value
            .and_then(|v| compare(v, target))
            .is_some_and(|o| o != Ordering::Less),
        FilterOp::Max => value
            .and_then(|v| compare(v, target))
            .is_some_and(|o| o != Ordering::Greater),
        FilterOp::Like => match (value, target) {
            (Some(Value::String(v)), Value::String(p)) => like(p, v),
            _ => false,
        },
        FilterOp::Has => {
            let wanted = !matches!(target, Value::Bool(false))
                && target.as_str() != Some("false")
                && target.as_i64() != Some(0);
            value.is_some() == wanted
        }
        FilterOp::Contains => match value {
            Some(Value::Array(items)) => list(target).iter().all(|t| items.contains(t)),
            _ => false,
        },
        FilterOp::ContainsAny => match value {
            Some(Value::Array(items)) => list(target).iter().any(|t| items.contains(t)),
            _ => false,
        },
    }
}

fn sort_entries(entries: &mut [Map<String, Value>], sorting: &[Sort]) {
    entries.sort_by(|a, b| {
        for key in sorting {
            let order = match (a.get(&key.field), b.get(&key.field)) {
                (Some(x), Some(y)) => compare(x, y).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Greater,
                (None, Some(_)) => Ordering::Less,
                (None, None) => Ordering::Equal,
            };
            let order = if key.descending {
                order.reverse()
            } else {
                order
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    });
}

/// The `last_object` of a `_token` (entries have no `last_modified`, unlike stored objects).
fn decode_token(token: &str) -> ApiResult<Map<String, Value>> {
    use base64::Engine;
    let invalid = || ApiError::invalid(Location::Querystring, None, "_token has invalid content");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| invalid())?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut map)) => match map.remove("last_object") {
            Some(Value::Object(last)) => Ok(last),
            _ => Err(invalid()),
        },
        _ => Err(invalid()),
    }
}

/// `GET`/`HEAD /v1/permissions`.
pub fn get(ctx: &mut Ctx, tx: &mut dyn Transaction) -> ApiResult<Response> {
    let principals = ctx.principals(tx)?;
    let readable = ctx
        .cfg
        .grants
        .principals("permissions_read_principals")
        .is_some_and(|p| !p.is_disjoint(&principals));
    if !readable {
        return Err(ctx.deny());
    }
    let parsed = query::parse(&ctx.query)?;
    let filters: Vec<Filter> = parsed
        .filters
        .iter()
        .filter(|f| f.field != "last_modified")
        .cloned()
        .collect();
    for filter in &filters {
        if !FIELDS.contains(&filter.field.as_str()) {
            return Err(ApiError::invalid(
                Location::Querystring,
                Some(&filter.field),
                format!("Unknown filter field '{}'", filter.field),
            ));
        }
    }
    let mut sorting: Vec<Sort> = parsed
        .sorting
        .iter()
        .filter(|s| s.field != "last_modified")
        .cloned()
        .collect();
    for sort in &sorting {
        if !FIELDS.contains(&sort.field.as_str()) {
            return Err(ApiError::invalid(
                Location::Querystring,
                None,
                format!("Unknown sort field '{}'", sort.field),
            ));
        }
    }
    if sorting.is_empty() {
        sorting.push(Sort {
            field: "uri".into(),
            descending: true,
        });
    }
    let rules = match parsed.token.as_deref() {
        Some(token) => pagination::rules(&sorting, &decode_token(token)?),
        None => Vec::new(),
    };
    let mut all = if parsed.always_empty {
        Vec::new()
    } else {
        entries(ctx, tx)?
    };
    all.retain(|e| filters.iter().all(|f| matches(e, f)));
    let total = all.len();
    sort_entries(&mut all, &sorting);
    if !rules.is_empty() {
        all.retain(|e| {
            rules
                .iter()
                .any(|group| group.iter().all(|f| matches(e, f)))
        });
    }
    let size = pagination::page_size(
        parsed.limit,
        ctx.cfg.settings.paginate_by,
        ctx.cfg.settings.storage_max_fetch_size,
    );
    let mut next_page = None;
    if all.len() > size {
        all.truncate(size);
        let last = all.last().expect("a non-empty page");
        let token = pagination::encode(last, &sorting, size + 1, &pagination::new_nonce());
        next_page = Some(pagination::next_page_url(
            &ctx.base_url(),
            ctx.request.path(),
            &ctx.query,
            size,
            &token,
        ));
    }
    let data: Vec<Value> = match &parsed.fields {
        Some(fields) => all.iter().map(|o| query::project(o, fields)).collect(),
        None => all.into_iter().map(Value::Object).collect(),
    };
    let mut response = json(200, &json!({ "data": data }));
    response.headers.extend(timestamp_headers(now_ms()));
    if let Some(url) = next_page {
        response.headers.push(("Next-Page".into(), url));
    }
    if ctx.request.method.eq_ignore_ascii_case("HEAD") {
        response
            .headers
            .push(("Total-Objects".into(), total.to_string()));
        response
            .headers
            .push(("Total-Records".into(), total.to_string()));
    }
    response
        .headers
        .push(("Cache-Control".into(), "no-cache, no-store".into()));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_implied_permissions() {
        assert_eq!(lookup("/", false).unwrap().0, "root");
        assert_eq!(lookup("/accounts/a", false), None);
        assert_eq!(lookup("/accounts/a", true).unwrap().0, "account");
        let (name, ids) = lookup("/buckets/b/collections/c/records/r", false).unwrap();
        assert_eq!(name, "record");
        assert_eq!(ids[1], ("collection_id", "c".to_string()));
        assert!(implied("collection", "write")
            .unwrap()
            .contains(&"record:create"));
        assert_eq!(implied("bucket", "unknown"), None);
    }

    #[test]
    fn in_memory_filters() {
        let entry: Map<String, Value> = serde_json::from_value(
            json!({"uri": "/buckets/b", "resource_name": "bucket", "permissions": ["read", "write"], "id": "b"}),
        )
        .unwrap();
        let f = |field: &str, op, value| Filter {
            field: field.into(),
            op,
            value,
        };
        assert!(matches(
            &entry,
            &f("resource_name", FilterOp::Eq, json!("bucket"))
        ));
        assert!(!matches(
            &entry,
            &f("resource_name", FilterOp::Eq, json!("record"))
        ));
        assert!(matches(
            &entry,
            &f("resource_name", FilterOp::In, json!(["x", "bucket"]))
        ));
        assert!(matches(
            &entry,
            &f("permissions", FilterOp::Contains, json!(["read"]))
        ));
        assert!(matches(&entry, &f("uri", FilterOp::Like, json!("bucket"))));
        assert!(!matches(
            &entry,
            &f("bucket_id", FilterOp::Has, json!(true))
        ));
    }
}
