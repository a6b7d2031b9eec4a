//! History snapshots (section 7.6): `GET /buckets/<bid>/snapshot/collections/<cid>@<ts>` rebuilds
//! a collection's records as they were at a timestamp, from the live records and the history
//! entries of those changed since.

use super::Ctx;
use crate::error::{ApiError, ApiResult, Location};
use crate::storage::{Filter, FilterOp, ListQuery, Object, Sort, Transaction};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use worker::Response;

/// `GET /buckets/<bid>/snapshot/collections/<cid>@<timestamp>`: the collection's records as
/// they were at that timestamp, rebuilt from the history.
pub fn get(
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
