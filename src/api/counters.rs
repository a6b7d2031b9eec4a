//! The counters plugin (`kinto.plugins.counters`, section 7.7): `GET /v1/__counters__`, without
//! authentication, counts the stored objects and tombstones of each resource type.

use super::http::json;
use crate::error::ApiResult;
use crate::settings::Settings;
use crate::storage::Transaction;
use serde_json::{json, Map, Value};
use worker::Response;

/// The resource types Kinto counts, in its order.
const RESOURCES: &[&str] = &[
    "account",
    "bucket",
    "group",
    "collection",
    "record",
    "history",
    "attachments",
];

pub fn enabled(settings: &Settings) -> bool {
    settings
        .includes
        .iter()
        .any(|i| i == "kinto.plugins.counters")
}

/// The `counters_endpoint` capability of the root view.
pub fn capability() -> Value {
    json!({
        "description": "The __counters__ endpoint exposes how many objects are stored.",
        "url": "https://kinto.readthedocs.io/en/latest/api/1.x/counters.html",
    })
}

/// `{"objects": {...}, "tombstones": {...}}`, zero counts omitted.
pub fn get(tx: &mut dyn Transaction) -> ApiResult<Response> {
    let mut objects = Map::new();
    let mut tombstones = Map::new();
    for resource in RESOURCES {
        let live = tx.count_all(resource, "*", &[])?;
        if live > 0 {
            objects.insert(resource.to_string(), json!(live));
        }
        let deleted = tx.count_tombstones(resource, "*")?;
        if deleted > 0 {
            tombstones.insert(resource.to_string(), json!(deleted));
        }
    }
    Ok(json(
        200,
        &json!({"objects": objects, "tombstones": tombstones}),
    ))
}
