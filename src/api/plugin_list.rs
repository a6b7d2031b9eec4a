//! Plural GET/HEAD and DELETE for the plugins' own lists (accounts, history entries): the same
//! querystring (filters, `_sort`, `_limit`, `_token`, `_fields`) and pagination as the resource
//! lists, on one storage list possibly restricted to some ids, with an optional fixed schema.

use super::http::{json, now_ms, timestamp_headers};
use super::resource::query::{self, PluralQuery};
use super::resource::{conditions, not_modified, pagination, precondition_failed, Condition};
use super::Ctx;
use crate::error::{ApiError, ApiResult, Location};
use crate::storage::{Filter, FilterOp, ListQuery, ListRef, Object, Transaction};
use serde_json::{json, Value};
use worker::Response;

/// One plugin list as seen by the caller.
pub struct ListSpec<'a> {
    pub resource_name: &'a str,
    /// May contain `*` (an administrator's view of every account).
    pub parent_id: &'a str,
    /// Only these ids are visible (`None`: the whole list).
    pub only_ids: Option<Vec<String>>,
    /// Fields allowed in filters and sorts (`None`: any). Dotted sub-fields of an allowed field
    /// are allowed too.
    pub schema: Option<&'a [&'a str]>,
}

impl ListSpec<'_> {
    fn check_fields(&self, parsed: &PluralQuery) -> ApiResult<()> {
        let Some(schema) = self.schema else {
            return Ok(());
        };
        let known = |field: &str| {
            let root = field.split('.').next().unwrap_or(field);
            matches!(root, "id" | "last_modified") || schema.contains(&root)
        };
        for filter in &parsed.filters {
            if !known(&filter.field) {
                let message = format!("Unknown filter field '{}'", filter.field);
                return Err(ApiError::invalid(
                    Location::Querystring,
                    Some(&filter.field),
                    message,
                ));
            }
        }
        for sort in &parsed.sorting {
            if !known(&sort.field) {
                return Err(ApiError::invalid(
                    Location::Querystring,
                    None,
                    format!("Unknown sort field '{}'", sort.field),
                ));
            }
        }
        Ok(())
    }

    fn query(
        &self,
        parsed: &PluralQuery,
        token: Option<&pagination::Token>,
        limit: Option<usize>,
    ) -> ListQuery {
        let mut filters = parsed.filters.clone();
        if let Some(ids) = &self.only_ids {
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
            include_deleted: parsed.includes_deleted() && self.only_ids.is_none(),
        }
    }

    fn empty(&self, parsed: &PluralQuery) -> bool {
        parsed.always_empty || matches!(&self.only_ids, Some(ids) if ids.is_empty())
    }

    /// The list timestamp (the newest of every matching list for wildcard parents).
    fn timestamp(&self, tx: &mut dyn Transaction) -> ApiResult<i64> {
        if !self.parent_id.contains('*') {
            return Ok(tx.resource_timestamp(ListRef {
                resource_name: self.resource_name,
                parent_id: self.parent_id,
            })?);
        }
        let all = tx.all_resources_timestamps(self.resource_name)?;
        Ok(all
            .into_iter()
            .map(|(_, ts)| ts)
            .max()
            .unwrap_or_else(now_ms))
    }
}

fn page_size(ctx: &Ctx, parsed: &PluralQuery) -> usize {
    let settings = &ctx.cfg.settings;
    pagination::page_size(
        parsed.limit,
        settings.paginate_by,
        settings.storage_max_fetch_size,
    )
}

/// `GET`/`HEAD` of a plugin list.
pub fn get(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    spec: &ListSpec,
    head: bool,
) -> ApiResult<Response> {
    let parsed = query::parse(&ctx.query)?;
    spec.check_fields(&parsed)?;
    let token = parsed
        .token
        .as_deref()
        .map(pagination::decode)
        .transpose()?;
    let conditions = conditions(ctx)?;
    let timestamp = spec.timestamp(tx)?;
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
    let skip = spec.empty(&parsed);
    let mut objects = if skip {
        Vec::new()
    } else {
        let page = spec.query(&parsed, token.as_ref(), Some(size + 1));
        tx.list_all(spec.resource_name, spec.parent_id, &page)?
    };
    let mut next_page = None;
    if objects.len() > size {
        objects.truncate(size);
        let last = objects.last().expect("a non-empty page");
        let token = pagination::encode(last, &parsed.sorting, size + 1, &pagination::new_nonce());
        next_page = Some(pagination::next_page_url(
            &ctx.base_url(),
            ctx.request.path(),
            &ctx.query,
            size,
            &token,
        ));
    }
    let data: Vec<Value> = match &parsed.fields {
        Some(fields) => objects.iter().map(|o| query::project(o, fields)).collect(),
        None => objects.into_iter().map(Value::Object).collect(),
    };
    let mut response = json(200, &json!({ "data": data }));
    response.headers.extend(timestamp_headers(timestamp));
    if let Some(url) = next_page {
        response.headers.push(("Next-Page".into(), url));
    }
    if head {
        let total = if skip {
            0
        } else {
            let counted = spec.query(&parsed, None, None);
            tx.count_all(spec.resource_name, spec.parent_id, &counted.filters)?
        };
        response
            .headers
            .push(("Total-Objects".into(), total.to_string()));
        response
            .headers
            .push(("Total-Records".into(), total.to_string()));
    }
    if ctx.user.is_some() {
        response
            .headers
            .push(("Cache-Control".into(), "no-cache, no-store".into()));
    }
    Ok(response)
}

/// `DELETE` of (a page of) a plugin list: returns the response and the tombstones, for the
/// caller's cascades.
pub fn delete(
    ctx: &mut Ctx,
    tx: &mut dyn Transaction,
    spec: &ListSpec,
) -> ApiResult<(Response, Vec<Object>)> {
    let mut parsed = query::parse(&ctx.query)?;
    spec.check_fields(&parsed)?;
    let conditions = conditions(ctx)?;
    let timestamp = spec.timestamp(tx)?;
    if let Some(Condition::Timestamp(ts)) = conditions.if_match {
        if ts != timestamp {
            return Err(precondition_failed(None, Some(timestamp)));
        }
    }
    let size = page_size(ctx, &parsed);
    let mut page = spec.query(&parsed, None, Some(size));
    page.include_deleted = false;
    let matching = if spec.empty(&parsed) {
        Vec::new()
    } else {
        tx.list_all(spec.resource_name, spec.parent_id, &page)?
    };
    let tombstones = if matching.is_empty() {
        Vec::new()
    } else {
        let ids: Vec<Value> = matching
            .iter()
            .filter_map(|o| o.get("id").cloned())
            .collect();
        parsed.filters = vec![Filter {
            field: "id".into(),
            op: FilterOp::In,
            value: Value::Array(ids),
        }];
        let exact = ListQuery {
            filters: parsed.filters.clone(),
            ..ListQuery::default()
        };
        tx.delete_all(spec.resource_name, spec.parent_id, &exact, true)?
    };
    let etag = tombstones
        .iter()
        .filter_map(|t| t.get("last_modified").and_then(Value::as_i64))
        .max()
        .unwrap_or(timestamp);
    let data: Vec<Value> = tombstones.iter().cloned().map(Value::Object).collect();
    let mut response = json(200, &json!({ "data": data }));
    response.headers.extend(timestamp_headers(etag));
    Ok((response, tombstones))
}
