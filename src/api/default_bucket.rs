//! The personal bucket `default` (section 7.1): `/buckets/default…` is the caller's own bucket,
//! whose id is derived from the user id with `default_bucket_hmac_secret`. The bucket (and the
//! collection named in the path) are created on first use, in the request's transaction (so
//! also inside a batch), then the request runs as if sent to the real bucket.

use super::history::{self, Change};
use super::route::{self, Route};
use super::{App, Ctx};
use crate::auth::hmac_hex;
use crate::authz::Kind;
use crate::error::{ApiError, ApiResult, Location};
use crate::permission::ObjectPermissions;
use crate::settings::Settings;
use crate::storage::{ListRef, Transaction};
use serde_json::{json, Map, Value};
use worker::{Request, Response};

/// The personal bucket id of a user: the first 32 hex digits of HMAC-SHA256 keyed with
/// `default_bucket_hmac_secret` over the user id, as a UUID (8-4-4-4-12).
pub fn bucket_id(settings: &Settings, user_id: &str) -> String {
    let digest = hmac_hex(
        settings.default_bucket_hmac_secret.as_bytes(),
        user_id.as_bytes(),
    );
    format!(
        "{}-{}-{}-{}-{}",
        &digest[0..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
}

/// Creates an object with the writer as owner unless it exists; records the creation.
fn ensure(
    ctx: &Ctx,
    tx: &mut dyn Transaction,
    kind: Kind,
    bucket: &str,
    id: &str,
) -> ApiResult<()> {
    let parent_id = match kind {
        Kind::Bucket => String::new(),
        _ => format!("/buckets/{bucket}"),
    };
    let list = ListRef {
        resource_name: kind.name(),
        parent_id: &parent_id,
    };
    if tx.get(list, id)?.is_some() {
        return Ok(());
    }
    let mut object = Map::new();
    object.insert("id".into(), json!(id));
    let created = match tx.create(list, object)? {
        Ok(created) => created,
        // Created meanwhile (concurrent first use): nothing to record.
        Err(_) => return Ok(()),
    };
    if ctx.cfg.settings.explicit_permissions {
        let uri = match kind {
            Kind::Bucket => format!("/buckets/{id}"),
            _ => format!("/buckets/{bucket}/{}/{id}", kind.plural()),
        };
        let owner = ObjectPermissions::from([("write".to_string(), [ctx.writer()].into())]);
        tx.replace_object_permissions(&uri, &owner)?;
    }
    history::record(
        ctx,
        tx,
        vec![Change {
            action: "create",
            kind,
            bucket: bucket.to_string(),
            collection: None,
            object: created,
        }],
    )
}

/// Answers a request under `/buckets/default` (`rest` is the raw path after it).
pub fn handle(
    app: &App,
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    rest: &str,
) -> ApiResult<Response> {
    let Some(user) = ctx.user.clone() else {
        return Err(ctx.deny());
    };
    if ctx.cfg.settings.readonly {
        return Err(ApiError::MethodNotAllowed { allow: None });
    }
    let method = ctx.request.method.to_ascii_uppercase();
    let bucket = bucket_id(&ctx.cfg.settings, &user.id);
    if !(method == "PUT" && rest.is_empty()) {
        ensure(ctx, tx, Kind::Bucket, &bucket, &bucket)?;
    }
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    if let ["", "collections", raw_cid, ..] = parts.as_slice() {
        let cid = super::http::decode_segment(raw_cid).unwrap_or_default();
        if !route::valid_id(&cid) {
            return Err(ApiError::invalid(
                Location::Path,
                None,
                "Invalid collection id",
            ));
        }
        let collection_put = method == "PUT" && parts.len() == 3;
        if !collection_put {
            ensure(ctx, tx, Kind::Collection, &bucket, &cid)?;
        }
    }
    let path = ctx
        .request
        .path()
        .replacen("/buckets/default", &format!("/buckets/{bucket}"), 1);
    let target = match ctx.request.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let body = rewrite_body(&ctx.request.body, &bucket);
    let mut headers = ctx.request.headers.clone();
    if body.is_some() {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Type"));
        headers.push((
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        ));
    }
    let rewritten = Request {
        method: ctx.request.method.clone(),
        target,
        version: ctx.request.version,
        headers,
        body: body.unwrap_or_else(|| ctx.request.body.clone()),
        remote_addr: ctx.request.remote_addr.clone(),
        scheme: ctx.request.scheme,
    };
    let found = route::route(rewritten.path(), rewritten.query(), ctx.cfg.routing)?;
    let mut inner = Ctx {
        cfg: ctx.cfg,
        request: &rewritten,
        query: super::http::parse_query(rewritten.query())?,
        user: ctx.user.clone(),
        cache: ctx.cache,
        principals: ctx.principals.clone(),
        alert: None,
    };
    let response = match &found {
        Route::Redirect { location, kind } => Ok(app.redirect(&rewritten, location, *kind)),
        Route::NotFound => Err(ApiError::UnknownUrl),
        r if super::plugins::is_transactional(r) => app.in_tx(&mut inner, tx, r),
        _ => Err(ApiError::UnknownUrl),
    };
    ctx.alert = inner.alert.take();
    response
}

/// The body sent on: `data.id` with `default` replaced by the bucket id; an empty body becomes
/// `{"data": {}}`. `None` keeps the original bytes.
fn rewrite_body(raw: &[u8], bucket: &str) -> Option<Vec<u8>> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Some(br#"{"data": {}}"#.to_vec());
    }
    let mut body: Value = serde_json::from_slice(raw).ok()?;
    let id = body
        .get("data")?
        .get("id")?
        .as_str()?
        .replace("default", bucket);
    body.get_mut("data")?
        .as_object_mut()?
        .insert("id".into(), Value::String(id));
    serde_json::to_vec(&body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_rewrite() {
        let out = rewrite_body(br#"{"data":{"id":"default","a":1}}"#, "uuid").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"]["id"], "uuid");
        assert_eq!(v["data"]["a"], 1);
        assert!(rewrite_body(br#"{"data":{"a":1}}"#, "uuid").is_none());
        assert_eq!(
            rewrite_body(b"", "uuid").unwrap(),
            br#"{"data": {}}"#.to_vec()
        );
    }
}
