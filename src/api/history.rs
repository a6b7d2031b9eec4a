//! The history plugin (section 7.6): every create/update/delete of a bucket, group, collection
//! or record adds, in the same transaction, an entry to its bucket's `history` list; the list is
//! served (filtered, paginated) at `/buckets/<bid>/history` and a collection can be rebuilt as it
//! was at a timestamp (`/snapshot/collections/<cid>@<ts>`). Deleting a bucket purges its history,
//! whether or not the plugin is enabled.

use super::plugin_list::{self, ListSpec};
use super::route::Target;
use super::{Config, Ctx};
use crate::authz::Kind;
use crate::error::{ApiError, ApiResult, Location};
use crate::permission::ObjectPermissions;
use crate::storage::{Filter, FilterOp, ListQuery, ListRef, Object, Sort, Transaction};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use worker::Response;

/// Fields of a history entry that filters and sorts may use (plus `id`, `last_modified`).
const SCHEMA: &[&str] = &[
    "user_id",
    "uri",
    "action",
    "date",
    "resource_name",
    "bucket_id",
    "collection_id",
    "group_id",
    "record_id",
    "target",
];

/// The `history.*` settings.
struct HistorySettings {
    exclude_user_ids: Vec<String>,
    exclude_resources: Vec<String>,
    auto_trim_max_count: i64,
    auto_trim_user_ids: Vec<String>,
    auto_trim_threshold: i64,
}

impl HistorySettings {
    fn new(cfg: &Config) -> Self {
        let raw = &cfg.settings.raw;
        let list = |name: &str| -> Vec<String> {
            raw.get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let int = |name: &str, default: i64| {
            raw.get(name)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        HistorySettings {
            exclude_user_ids: list("history.exclude_user_ids"),
            exclude_resources: list("history.exclude_resources"),
            auto_trim_max_count: int("history.auto_trim_max_count", -1),
            auto_trim_user_ids: list("history.auto_trim_user_ids"),
            auto_trim_threshold: int("history.auto_trim_threshold", 100),
        }
    }
}

/// The `history` capability of the root view.
pub fn capability(cfg: &Config) -> Value {
    let settings = HistorySettings::new(cfg);
    let mut cap = Map::new();
    cap.insert("description".into(), json!("Track changes on data."));
    cap.insert(
        "url".into(),
        json!("http://kinto.readthedocs.io/en/latest/api/1.x/history.html"),
    );
    if settings.auto_trim_max_count > 0 {
        cap.insert(
            "auto_trim_max_count".into(),
            json!(settings.auto_trim_max_count),
        );
    }
    if !settings.auto_trim_user_ids.is_empty() {
        cap.insert(
            "auto_trim_user_ids".into(),
            json!(settings.auto_trim_user_ids),
        );
    }
    if !settings.exclude_resources.is_empty() {
        let parts: Vec<Value> = settings
            .exclude_resources
            .iter()
            .map(|uri| {
                let p: Vec<&str> = uri.split('/').collect();
                match p.as_slice() {
                    ["", "buckets", b] => json!({"bucket": b}),
                    ["", "buckets", b, "collections", c] => json!({"bucket": b, "collection": c}),
                    ["", "buckets", b, "groups", g] => json!({"bucket": b, "group": g}),
                    ["", "buckets", b, "collections", c, "records", r] => {
                        json!({"bucket": b, "collection": c, "record": r})
                    }
                    _ => json!({}),
                }
            })
            .collect();
        cap.insert("excluded_resources".into(), Value::Array(parts));
    }
    Value::Object(cap)
}

/// One change to record.
pub struct Change {
    pub action: &'static str,
    pub kind: Kind,
    pub bucket: String,
    /// Collection id (records only).
    pub collection: Option<String>,
    /// The new version (tombstone for deletes).
    pub object: Object,
}

impl Change {
    fn id(&self) -> String {
        self.object
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    fn uri(&self) -> String {
        let id = self.id();
        match (self.kind, &self.collection) {
            (Kind::Bucket, _) => format!("/buckets/{id}"),
            (Kind::Collection, _) => format!("/buckets/{}/collections/{id}", self.bucket),
            (Kind::Group, _) => format!("/buckets/{}/groups/{id}", self.bucket),
            (Kind::Record, c) => format!(
                "/buckets/{}/collections/{}/records/{id}",
                self.bucket,
                c.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// The hook run after every successful write on a resource URL (inside its transaction).
pub fn after_write(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    method: &str,
    response: &Response,
) -> ApiResult<()> {
    let enabled = ctx.cfg.plugins.history;
    let deleting = method == "DELETE";
    if !(enabled || deleting && target.kind == Kind::Bucket) {
        return Ok(());
    }
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    let data = body.get("data");
    let objects: Vec<Object> = match data {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|o| o.as_object().cloned())
            .collect(),
        Some(Value::Object(o)) => vec![o.clone()],
        _ => Vec::new(),
    };
    if deleting && target.kind == Kind::Bucket {
        // Bucket deletions are not recorded: the bucket's history goes with it.
        for object in &objects {
            if let Some(id) = object.get("id").and_then(Value::as_str) {
                purge(tx, id)?;
            }
        }
        return Ok(());
    }
    let action = match (method, response.status) {
        ("DELETE", _) => "delete",
        ("PATCH", _) => "update",
        ("PUT", 200) => "update",
        ("PUT" | "POST", 201) => "create",
        _ => return Ok(()),
    };
    // Light and diff PATCH responses do not carry the whole object: read it back.
    let partial = method == "PATCH"
        && ctx
            .request
            .header("Response-Behavior")
            .is_some_and(|b| !b.trim().eq_ignore_ascii_case("full"));
    let mut changes = Vec::with_capacity(objects.len());
    for mut object in objects {
        if partial {
            let parent = target.parent_id();
            let id = target.id.clone().unwrap_or_default();
            let list = ListRef {
                resource_name: target.kind.name(),
                parent_id: &parent,
            };
            match tx.get(list, &id)? {
                Some(fresh) => object = fresh,
                None => continue,
            }
        }
        let bucket = match target.kind {
            Kind::Bucket => object
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => target.bucket.clone(),
        };
        changes.push(Change {
            action,
            kind: target.kind,
            bucket,
            collection: (target.kind == Kind::Record).then(|| target.collection.clone()),
            object,
        });
    }
    record(ctx, tx, changes)
}

/// Removes the history of a deleted bucket.
pub fn purge(tx: &mut dyn Transaction, bucket: &str) -> ApiResult<()> {
    let everything = ListQuery::default();
    tx.delete_all("history", &format!("/buckets/{bucket}"), &everything, false)?;
    tx.delete_object_permissions(&[format!("/buckets/{bucket}/history/*")])?;
    Ok(())
}

/// Writes the history entries of changes (all in one bucket), as Kinto's listener does.
pub fn record(ctx: &Ctx, tx: &mut dyn Transaction, changes: Vec<Change>) -> ApiResult<()> {
    if !ctx.cfg.plugins.history || changes.is_empty() {
        return Ok(());
    }
    let settings = HistorySettings::new(ctx.cfg);
    let user_id = ctx.user.as_ref().map(|u| u.id.clone());
    if let Some(user) = &user_id {
        if settings.exclude_user_ids.contains(user) {
            return Ok(());
        }
    }
    let mut targets = Vec::new();
    for change in changes {
        let bucket_uri = format!("/buckets/{}", change.bucket);
        let collection_uri = change
            .collection
            .as_ref()
            .map(|c| format!("{bucket_uri}/collections/{c}"));
        let uri = change.uri();
        let excluded = |u: &str| settings.exclude_resources.iter().any(|e| e == u);
        if excluded(&bucket_uri)
            || collection_uri.as_deref().is_some_and(excluded)
            || excluded(&uri)
        {
            continue;
        }
        targets.push((uri, bucket_uri, collection_uri, change));
    }
    let Some((_, bucket_uri, collection_uri, _)) = targets.first() else {
        return Ok(());
    };
    let (bucket_uri, collection_uri) = (bucket_uri.clone(), collection_uri.clone());
    let mut ids: Vec<String> = targets.iter().map(|(uri, ..)| uri.clone()).collect();
    ids.push(bucket_uri.clone());
    if let Some(c) = &collection_uri {
        ids.push(c.clone());
    }
    ids.sort();
    ids.dedup();
    let perms: BTreeMap<String, ObjectPermissions> = ids
        .iter()
        .cloned()
        .zip(tx.get_objects_permissions(&ids)?)
        .collect();
    let read_write = |uri: &str| -> BTreeSet<String> {
        perms
            .get(uri)
            .map(|p| {
                ["read", "write"]
                    .iter()
                    .filter_map(|k| p.get(*k))
                    .flatten()
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut readers = read_write(&bucket_uri);
    if let Some(c) = &collection_uri {
        readers.extend(read_write(c));
    }
    for (uri, bucket_uri, _, change) in targets {
        let object_perms: Map<String, Value> = perms
            .get(&uri)
            .map(|p| {
                p.iter()
                    .map(|(k, v)| (k.clone(), json!(v.iter().collect::<Vec<_>>())))
                    .collect()
            })
            .unwrap_or_default();
        let id = change.id();
        let entry_id = uuid::Uuid::new_v4().to_string();
        let mut entry = Map::new();
        entry.insert("id".into(), json!(entry_id));
        entry.insert("action".into(), json!(change.action));
        entry.insert("uri".into(), json!(uri));
        entry.insert("user_id".into(), json!(user_id));
        entry.insert("resource_name".into(), json!(change.kind.name()));
        if let Some(c) = &change.collection {
            entry.insert("collection_id".into(), json!(c));
        }
        entry.insert(format!("{}_id", change.kind.name()), json!(id));
        entry.insert("date".into(), json!(utc_now_iso()));
        entry.insert(
            "target".into(),
            json!({"data": change.object, "permissions": object_perms}),
        );
        let list = ListRef {
            resource_name: "history",
            parent_id: &bucket_uri,
        };
        if tx.create(list, entry)?.is_err() {
            return Err(ApiError::Internal("history entry id collision".into()));
        }
        trim(&settings, tx, &bucket_uri, change.kind.name(), &user_id)?;
        if ctx.cfg.settings.explicit_permissions {
            let mut entry_readers = readers.clone();
            entry_readers.extend(read_write(&uri));
            let entry_perms = ObjectPermissions::from([("read".to_string(), entry_readers)]);
            tx.replace_object_permissions(
                &format!("{bucket_uri}/history/{entry_id}"),
                &entry_perms,
            )?;
        }
    }
    Ok(())
}

/// `history.auto_trim_*`: keeps the newest entries per resource type (and user).
fn trim(
    settings: &HistorySettings,
    tx: &mut dyn Transaction,
    bucket_uri: &str,
    resource_name: &str,
    user_id: &Option<String>,
) -> ApiResult<()> {
    let max = settings.auto_trim_max_count;
    let by_user = !settings.auto_trim_user_ids.is_empty();
    if max <= 0 {
        return Ok(());
    }
    let user = user_id.clone().unwrap_or_default();
    if by_user && !settings.auto_trim_user_ids.contains(&user) {
        return Ok(());
    }
    let mut filters = vec![Filter {
        field: "resource_name".into(),
        op: FilterOp::Eq,
        value: json!(resource_name),
    }];
    if by_user {
        filters.push(Filter {
            field: "user_id".into(),
            op: FilterOp::Eq,
            value: json!(user),
        });
    }
    let count = tx.count_all("history", bucket_uri, &filters)? as i64;
    if count <= max + settings.auto_trim_threshold {
        return Ok(());
    }
    // The newest `max` entries stay; everything older goes.
    let newest = tx.list_all(
        "history",
        bucket_uri,
        &ListQuery {
            filters: filters.clone(),
            sorting: vec![Sort {
                field: "last_modified".into(),
                descending: true,
            }],
            limit: Some(max as usize),
            ..ListQuery::default()
        },
    )?;
    let Some(oldest_kept) = newest
        .last()
        .and_then(|o| o.get("last_modified"))
        .and_then(Value::as_i64)
    else {
        return Ok(());
    };
    filters.push(Filter {
        field: "last_modified".into(),
        op: FilterOp::Lt,
        value: json!(oldest_kept),
    });
    let query = ListQuery {
        filters,
        ..ListQuery::default()
    };
    tx.delete_all("history", bucket_uri, &query, false)?;
    Ok(())
}

/// Python's `datetime.now(timezone.utc).isoformat()`.
fn utc_now_iso() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// May the caller read (or write) the whole history of the bucket?
fn bucket_access(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    bucket: &str,
    write: bool,
) -> ApiResult<(BTreeSet<String>, bool)> {
    let principals = ctx.principals(tx)?;
    let bucket_uri = format!("/buckets/{bucket}");
    let perms: &[&str] = if write {
        &["write"]
    } else {
        &["write", "read"]
    };
    let bound: Vec<(String, String)> = perms
        .iter()
        .map(|p| (bucket_uri.clone(), p.to_string()))
        .collect();
    let full = ctx.cfg.grants.allows("history", &bound, &principals)
        || tx.check_permission(&principals, &bound)?;
    Ok((principals, full))
}

/// `GET`/`HEAD`/`DELETE /buckets/<bid>/history`.
pub fn list(ctx: &mut Ctx, tx: &mut dyn Transaction, bucket: &str) -> ApiResult<Response> {
    if !super::http::accepts_json(ctx.request.header("Accept")) {
        return Err(super::http::not_acceptable());
    }
    let method = ctx.request.method.to_ascii_uppercase();
    let write = method == "DELETE";
    let (principals, full) = bucket_access(ctx, tx, bucket, write)?;
    let bucket_uri = format!("/buckets/{bucket}");
    let only_ids = if full {
        None
    } else {
        let pattern = format!("{bucket_uri}/history/*");
        let perms: &[&str] = if write {
            &["write"]
        } else {
            &["write", "read"]
        };
        let bound: Vec<(String, String)> = perms
            .iter()
            .map(|p| (pattern.clone(), p.to_string()))
            .collect();
        let prefix = format!("{bucket_uri}/history/");
        let ids: Vec<String> = tx
            .get_accessible_objects(&principals, &bound)?
            .keys()
            .filter_map(|uri| uri.strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        if ids.is_empty() {
            return Err(ctx.deny());
        }
        Some(ids)
    };
    // Numeric values given for `*_id` filters are compared as strings.
    for (name, value) in ctx.query.iter_mut() {
        let is_id = ["record_id", "collection_id", "bucket_id"]
            .iter()
            .any(|f| name == f || name.ends_with(&format!("_{f}")));
        if is_id && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            *value = format!("\"{value}\"");
        }
    }
    let spec = ListSpec {
        resource_name: "history",
        parent_id: &bucket_uri,
        only_ids,
        schema: Some(SCHEMA),
    };
    if write {
        let (response, tombstones) = plugin_list::delete(ctx, tx, &spec)?;
        let uris: Vec<String> = tombstones
            .iter()
            .filter_map(|t| t.get("id").and_then(Value::as_str))
            .map(|id| format!("{bucket_uri}/history/{id}"))
            .collect();
        if !uris.is_empty() {
            tx.delete_object_permissions(&uris)?;
        }
        return Ok(response);
    }
    plugin_list::get(ctx, tx, &spec, method == "HEAD")
}

/// `GET /buckets/<bid>/snapshot/collections/<cid>@<timestamp>`: the collection's records as
/// they were at that timestamp, rebuilt from the history.
pub fn snapshot(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    bucket: &str,
    collection: &str,
    timestamp: &str,
) -> ApiResult<Response> {
    let at = timestamp
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|t| *t >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                Location::Path,
                Some("timestamp"),
                format!("Invalid timestamp '{timestamp}'"),
            )
        })?;
    let principals = ctx.principals(tx)?;
    let bucket_uri = format!("/buckets/{bucket}");
    let collection_uri = format!("{bucket_uri}/collections/{collection}");
    let bound: Vec<(String, String)> = [&bucket_uri, &collection_uri]
        .iter()
        .flat_map(|u| ["read", "write"].map(|p| (u.to_string(), p.to_string())))
        .collect();
    if !tx.check_permission(&principals, &bound)? {
        return Err(ctx.deny());
    }
    let all = tx.list_all(
        "record",
        &collection_uri,
        &ListQuery {
            include_deleted: true,
            ..ListQuery::default()
        },
    )?;
    let modified = |o: &Object| o.get("last_modified").and_then(Value::as_i64).unwrap_or(0);
    let mut result: Vec<Object> = all
        .iter()
        .filter(|r| modified(r) <= at && r.get("deleted") != Some(&Value::Bool(true)))
        .cloned()
        .collect();
    let changed: Vec<Value> = all
        .iter()
        .filter(|r| modified(r) > at)
        .filter_map(|r| r.get("id").cloned())
        .collect();
    if !changed.is_empty() {
        let entries = tx.list_all(
            "history",
            &bucket_uri,
            &ListQuery {
                filters: vec![
                    Filter {
                        field: "resource_name".into(),
                        op: FilterOp::Eq,
                        value: json!("record"),
                    },
                    Filter {
                        field: "collection_id".into(),
                        op: FilterOp::Eq,
                        value: json!(collection),
                    },
                    Filter {
                        field: "record_id".into(),
                        op: FilterOp::In,
                        value: Value::Array(changed.clone()),
                    },
                    Filter {
                        field: "target.data.last_modified".into(),
                        op: FilterOp::Max,
                        value: json!(at),
                    },
                ],
                sorting: vec![Sort {
                    field: "last_modified".into(),
                    descending: true,
                }],
                ..ListQuery::default()
            },
        )?;
        let mut latest: BTreeMap<String, Object> = BTreeMap::new();
        for entry in entries {
            let Some(rid) = entry.get("record_id").and_then(Value::as_str) else {
                continue;
            };
            if latest.contains_key(rid) {
                continue;
            }
            if let Some(Value::Object(data)) = entry.get("target").and_then(|t| t.get("data")) {
                latest.insert(rid.to_string(), data.clone());
            }
        }
        for rid in changed.iter().filter_map(Value::as_str) {
            if let Some(data) = latest.remove(rid) {
                result.push(data);
            }
        }
    }
    result.sort_by_key(|r| std::cmp::Reverse(modified(r)));
    let data: Vec<Value> = result.into_iter().map(Value::Object).collect();
    Ok(super::http::json(200, &json!({ "data": data })))
}
