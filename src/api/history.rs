//! The history plugin (`kinto.plugins.history`, section 7.6): every write of a bucket, group,
//! collection or record adds, in the same transaction, an entry to its bucket's history list,
//! readable by those who could read the object when it was written.

use super::route::Target;
use super::Ctx;
use crate::authz::Kind;
use crate::error::{ApiError, ApiResult, Location};
use crate::permission::ObjectPermissions;
use crate::settings::Settings;
use crate::storage::{ListRef, Object, Transaction};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The fields of a history entry: filters and sorts on anything else are refused.
const FIELDS: &[&str] = &[
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
    "id",
    "last_modified",
];

/// The plugin's settings, parsed once.
#[derive(Debug, Clone, Default)]
pub struct HistorySettings {
    pub enabled: bool,
    exclude_user_ids: BTreeSet<String>,
    exclude_resources: Vec<String>,
}

impl HistorySettings {
    pub fn new(settings: &Settings) -> Self {
        let list = |name: &str| -> Vec<String> {
            settings
                .raw
                .get(name)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        HistorySettings {
            enabled: settings
                .includes
                .iter()
                .any(|i| i == "kinto.plugins.history"),
            exclude_user_ids: list("history.exclude_user_ids").into_iter().collect(),
            exclude_resources: list("history.exclude_resources"),
        }
    }
}

/// Refuses filters and sorts on fields history entries do not have; numbers given for `*_id`
/// fields are compared as strings.
pub fn check_fields(filters: &mut [crate::storage::Filter], sorts: &[String]) -> ApiResult<()> {
    let known = |field: &str| FIELDS.contains(&field.split('.').next().unwrap_or(field));
    for filter in filters.iter_mut() {
        if filter.field.ends_with("_id") {
            if let Value::Number(n) = &filter.value {
                filter.value = Value::String(n.to_string());
            }
        }
        if !known(&filter.field) {
            let param = filter.field.clone();
            return Err(ApiError::invalid(
                Location::Querystring,
                Some(&param),
                format!("Unknown filter field '{param}'"),
            ));
        }
    }
    for field in sorts {
        if !known(field) {
            return Err(ApiError::invalid(
                Location::Querystring,
                None,
                format!("Unknown sort field '{field}'"),
            ));
        }
    }
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` for now (Python's `datetime.isoformat()` in UTC).
fn utc_now_iso() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
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

/// Records a change of the object `id` of `target` (`action`: create, update, delete).
pub fn record(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    id: &str,
    action: &str,
    object: &Object,
    permissions: &ObjectPermissions,
) -> ApiResult<()> {
    let settings = &ctx.cfg.history;
    let uri = target.object_uri(id);
    let user_id = ctx.user.as_ref().map(|u| u.id.clone());
    if !settings.enabled
        || matches!(target.kind, Kind::Account | Kind::History)
        || user_id
            .as_ref()
            .is_some_and(|u| settings.exclude_user_ids.contains(u))
        || settings
            .exclude_resources
            .iter()
            .any(|r| uri == *r || uri.starts_with(&format!("{r}/")))
    {
        return Ok(());
    }
    let bucket = match target.kind {
        Kind::Bucket => id.to_string(),
        _ => target.bucket.clone(),
    };
    // A deleted bucket takes its history with it.
    if target.kind == Kind::Bucket && action == "delete" {
        return Ok(());
    }
    let mut entry = Map::new();
    entry.insert("action".into(), json!(action));
    entry.insert("uri".into(), json!(uri));
    entry.insert("date".into(), json!(utc_now_iso()));
    entry.insert("user_id".into(), json!(user_id));
    entry.insert("resource_name".into(), json!(target.kind.name()));
    match target.kind {
        Kind::Bucket => {
            entry.insert("bucket_id".into(), json!(id));
        }
        Kind::Collection => {
            entry.insert("collection_id".into(), json!(id));
        }
        Kind::Group => {
            entry.insert("group_id".into(), json!(id));
        }
        Kind::Record => {
            entry.insert("collection_id".into(), json!(target.collection));
            entry.insert("record_id".into(), json!(id));
        }
        Kind::Account | Kind::History => {}
    }
    let perms_json: Map<String, Value> = permissions
        .iter()
        .filter(|(_, holders)| !holders.is_empty())
        .map(|(perm, holders)| (perm.clone(), json!(holders)))
        .collect();
    entry.insert(
        "target".into(),
        json!({"data": object, "permissions": perms_json}),
    );
    let entry_id = uuid::Uuid::new_v4().to_string();
    entry.insert("id".into(), json!(entry_id));
    let bucket_uri = format!("/buckets/{bucket}");
    let list = ListRef {
        resource_name: "history",
        parent_id: &bucket_uri,
    };
    // Readers of the entry: readers and writers of the object and of its parents.
    let mut readers: BTreeSet<String> = BTreeSet::new();
    if ctx.cfg.settings.explicit_permissions {
        let mut parents = vec![bucket_uri.clone()];
        if target.kind == Kind::Record {
            parents.push(target.parent_id());
        }
        let mut all = tx.get_objects_permissions(&parents)?;
        all.push(permissions.clone());
        for perms in &all {
            for perm in ["read", "write"] {
                if let Some(holders) = perms.get(perm) {
                    readers.extend(holders.iter().cloned());
                }
            }
        }
    }
    let _ = tx.create(list, entry)?;
    if !readers.is_empty() {
        let mut acl = ObjectPermissions::new();
        acl.insert("read".into(), readers);
        tx.replace_object_permissions(&format!("{bucket_uri}/history/{entry_id}"), &acl)?;
    }
    Ok(())
}

/// `GET /v1/buckets/{bid}/snapshot/collections/{cid}@{timestamp}`: the records of a collection
/// as they were at `timestamp`, replayed from the history (readers of the bucket or of the
/// collection, through ACEs).
pub fn snapshot(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    bucket: &str,
    collection: &str,
    raw_timestamp: &str,
) -> ApiResult<super::Response> {
    let timestamp = raw_timestamp
        .parse::<i64>()
        .ok()
        .filter(|t| *t >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                Location::Path,
                Some("timestamp"),
                format!("Invalid timestamp '{raw_timestamp}'"),
            )
        })?;
    let principals = ctx.principals(tx)?;
    let bucket_uri = format!("/buckets/{bucket}");
    let collection_uri = format!("{bucket_uri}/collections/{collection}");
    let bound: Vec<(String, String)> = [&bucket_uri, &collection_uri]
        .iter()
        .flat_map(|uri| ["read", "write"].map(|p| (uri.to_string(), p.to_string())))
        .collect();
    if !tx.check_permission(&principals, &bound)? {
        return Err(ctx.deny());
    }
    let eq = |field: &str, value: &str| crate::storage::Filter {
        field: field.into(),
        op: crate::storage::FilterOp::Eq,
        value: Value::String(value.into()),
    };
    let query = crate::storage::ListQuery {
        filters: vec![
            eq("resource_name", "record"),
            eq("collection_id", collection),
            crate::storage::Filter {
                field: "target.data.last_modified".into(),
                op: crate::storage::FilterOp::Max,
                value: Value::from(timestamp),
            },
        ],
        sorting: vec![crate::storage::Sort {
            field: "last_modified".into(),
            descending: false,
        }],
        ..Default::default()
    };
    let mut state: std::collections::BTreeMap<String, Option<Value>> = Default::default();
    for entry in tx.list_all("history", &bucket_uri, &query)? {
        let Some(uri) = entry.get("uri").and_then(Value::as_str) else {
            continue;
        };
        let data = entry.get("target").and_then(|t| t.get("data")).cloned();
        let deleted = entry.get("action") == Some(&json!("delete"));
        state.insert(uri.to_string(), if deleted { None } else { data });
    }
    let mut records: Vec<Value> = state.into_values().flatten().collect();
    records.sort_by_key(|r| {
        std::cmp::Reverse(r.get("last_modified").and_then(Value::as_i64).unwrap_or(0))
    });
    Ok(super::http::json(200, &json!({ "data": records })))
}
