//! The personal bucket plugin (`kinto.plugins.default_bucket`, section 7.1): `/buckets/default…`
//! is served as `/buckets/<uuid>…`, the uuid derived from the user id, after creating the bucket
//! (and the collection named in the path) when missing.

use super::route::{valid_id, Target};
use super::Ctx;
use crate::auth::hmac_hex;
use crate::authz::Kind;
use crate::error::{ApiError, ApiResult, Location};
use crate::permission::ObjectPermissions;
use crate::storage::{ListRef, Object, Transaction};
use serde_json::Value;
use worker::Request;

/// The personal bucket id: the first 32 hex digits of HMAC-SHA256(`secret`, user id), as a
/// UUID-shaped string (no version bits changed).
pub fn bucket_id(secret: &str, user_id: &str) -> String {
    let digest = hmac_hex(secret.as_bytes(), user_id.as_bytes());
    format!(
        "{}-{}-{}-{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

/// True when the target addresses the personal bucket or something under it.
pub fn addresses_default(target: &Target) -> bool {
    match target.kind {
        Kind::Bucket => target.id.as_deref() == Some("default"),
        _ => target.bucket == "default",
    }
}

/// The target and request with `default` replaced by the personal bucket id (in the path and
/// in a body `data.id`).
pub fn rewrite(request: &Request, target: &Target, bucket: &str) -> (Request, Target) {
    let mut target = target.clone();
    match target.kind {
        Kind::Bucket => target.id = Some(bucket.to_string()),
        _ => target.bucket = bucket.to_string(),
    }
    let mut rewritten = request.clone();
    let path = request.path();
    let new_path = path.replacen("/buckets/default", &format!("/buckets/{bucket}"), 1);
    rewritten.target = match request.query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    if let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&request.body) {
        let id = body
            .get("data")
            .and_then(|d| d.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let (Some(id), Some(Value::Object(data))) = (id, body.get_mut("data")) {
            if id.contains("default") {
                data.insert("id".into(), Value::String(id.replace("default", bucket)));
                rewritten.body = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
            }
        }
    }
    (rewritten, target)
}

/// Creates the bucket (and the collection of the path) when missing, owned by the caller,
/// except the very object a PUT is about to create.
pub fn ensure(ctx: &mut Ctx, tx: &mut dyn Transaction, target: &Target) -> ApiResult<()> {
    let put = ctx.request.method.eq_ignore_ascii_case("PUT");
    let bucket = match target.kind {
        Kind::Bucket => target.id.clone().unwrap_or_default(),
        _ => target.bucket.clone(),
    };
    let bucket_list = ListRef {
        resource_name: "bucket",
        parent_id: "",
    };
    let bucket_is_put = put && target.kind == Kind::Bucket;
    if !bucket_is_put {
        let bucket_target = Target {
            kind: Kind::Bucket,
            bucket: String::new(),
            collection: String::new(),
            id: Some(bucket.clone()),
        };
        create_missing(ctx, tx, &bucket_target, bucket_list, &bucket)?;
    }
    let collection = match (target.kind, &target.id) {
        (Kind::Record, _) => Some((target.collection.clone(), false)),
        (Kind::Collection, Some(id)) => Some((id.clone(), put)),
        _ => None,
    };
    if let Some((cid, is_put)) = collection {
        if !valid_id(&cid) {
            return Err(ApiError::invalid(
                Location::Path,
                None,
                "Invalid collection id",
            ));
        }
        if !is_put {
            let parent = format!("/buckets/{bucket}");
            let list = ListRef {
                resource_name: "collection",
                parent_id: &parent,
            };
            let collection_target = Target {
                kind: Kind::Collection,
                bucket: bucket.clone(),
                collection: String::new(),
                id: Some(cid.clone()),
            };
            create_missing(ctx, tx, &collection_target, list, &cid)?;
        }
    }
    Ok(())
}

/// Creates the object like a normal creation (owner gets `write`, history entry).
fn create_missing(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    target: &Target,
    list: ListRef,
    id: &str,
) -> ApiResult<()> {
    if tx.get(list, id)?.is_some() {
        return Ok(());
    }
    let mut object = Object::new();
    object.insert("id".into(), Value::String(id.to_string()));
    if let Ok(stored) = tx.create(list, object)? {
        let mut permissions = ObjectPermissions::new();
        permissions.insert("write".into(), [ctx.writer()].into());
        tx.replace_object_permissions(&target.object_uri(id), &permissions)?;
        super::history::record(ctx, tx, target, id, "create", &stored, &permissions)?;
    }
    Ok(())
}
