//! SQL text for plural queries on PostgreSQL: filters, pagination rules and sorting on JSONB with
//! Kinto's semantics (missing fields, type-aware comparisons). Field names and values are always
//! bound parameters (`$n`), never interpolated.

use super::{
    as_array, candidates, epoch_value, escape_like, id_text, like_pattern, like_range, truthy,
    Filter, FilterOp, ListQuery, Sort,
};
use postgres::types::ToSql;
use serde_json::{Map, Value};

/// `last_modified` (TIMESTAMP) as milliseconds since the epoch (the body of `as_epoch`, inlined).
pub const EPOCH_LM: &str = "(EXTRACT(EPOCH FROM last_modified) * 1000)::BIGINT";

/// Milliseconds (a BIGINT expression) as a TIMESTAMP, independent of the session time zone.
pub fn from_epoch(expr: &str) -> String {
    format!("(TIMESTAMP '1970-01-01' + ({expr})::BIGINT * INTERVAL '1 millisecond')")
}

/// SQL text with its numbered parameters.
#[derive(Default)]
pub struct PgSql {
    pub sql: String,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
    /// The key of the one list the conditions apply to, set by `scope` (see `LIST_DATA`).
    list_key: Option<String>,
}

/// The expression of kinto-rs's filter index (`sql/postgresql/kinto_rs_indexes.sql`): the data
/// under its list's key, `{"<parent_id> <resource_name>": data}`. Written exactly as indexed.
const LIST_DATA: &str = "jsonb_set('{}'::jsonb, ARRAY[parent_id || ' ' || resource_name], data)";

impl PgSql {
    pub fn new(sql: &str) -> PgSql {
        PgSql {
            sql: sql.to_string(),
            ..PgSql::default()
        }
    }

    /// Binds a value; returns its placeholder.
    pub fn bind<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    pub fn push(&mut self, sql: &str) {
        self.sql.push_str(sql);
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }
}

/// Conditions selecting the objects of `resource_name`/`parent_id` (`*` wildcards in the parent;
/// a lone `*` resource name means every type).
pub fn scope(resource_name: &str, parent_id: &str, q: &mut PgSql) {
    scope_for(resource_name, parent_id, &[], q)
}

/// [`scope`] for a query with `filters`. When one of them is a lookup in the filter index
/// (`LIST_DATA`), which holds only this list's objects, the list is named by its key as a plain
/// condition (equal to `scope`'s, resource names having no space), not an indexable one: a
/// generic plan would otherwise intersect the few objects found with the whole list's index
/// entries (measured: the filtered list's database time doubled).
pub fn scope_for(resource_name: &str, parent_id: &str, filters: &[Filter], q: &mut PgSql) {
    let single = !parent_id.contains('*') && resource_name != "*";
    q.list_key = single.then(|| format!("{parent_id} {resource_name}"));
    if single && filters.iter().any(in_filter_index) {
        let key = q.bind(format!("{parent_id} {resource_name}"));
        q.push(&format!("parent_id || ' ' || resource_name = {key}::text"));
        return;
    }
    if parent_id.contains('*') {
        let (lo, hi) = like_range(parent_id);
        let p = q.bind(escape_like(parent_id));
        let lo = q.bind(lo);
        let hi = q.bind(hi);
        q.push(&format!(
            "parent_id >= {lo}::text AND parent_id < {hi}::text AND parent_id LIKE {p}::text"
        ));
    } else {
        let p = q.bind(parent_id.to_string());
        q.push(&format!("parent_id = {p}"));
    }
    if resource_name != "*" {
        let p = q.bind(resource_name.to_string());
        q.push(&format!(" AND resource_name = {p}"));
    }
}

/// Appends ` AND <filters> AND (<pagination>)`.
pub fn conditions(query: &ListQuery, q: &mut PgSql) {
    for filter in &query.filters {
        q.push(" AND ");
        condition(filter, q);
    }
    if !query.pagination_rules.is_empty() {
        q.push(" AND (");
        for (i, rule) in query.pagination_rules.iter().enumerate() {
            if i > 0 {
                q.push(" OR ");
            }
            q.push("(");
            if rule.is_empty() {
                q.push("TRUE");
            }
            for (j, filter) in rule.iter().enumerate() {
                if j > 0 {
                    q.push(" AND ");
                }
                condition(filter, q);
            }
            q.push(")");
        }
        q.push(")");
    }
}

/// Appends ` ORDER BY ...`: JSONB order, NULL (missing) last ascending and first descending.
pub fn order_by(sorting: &[Sort], q: &mut PgSql) {
    for (i, sort) in sorting.iter().enumerate() {
        q.push(if i == 0 { " ORDER BY " } else { ", " });
        match sort.field.as_str() {
            "id" => q.push("id"),
            "last_modified" => q.push("last_modified"),
            field => {
                let f = field_expr(field, q);
                q.push(&f);
            }
        }
        q.push(if sort.descending { " DESC" } else { " ASC" });
    }
}

fn path(field: &str) -> Vec<String> {
    field.split('.').map(str::to_string).collect()
}

fn field_expr(field: &str, q: &mut PgSql) -> String {
    let p = q.bind(path(field));
    format!("(data #> {p}::text[])")
}

fn json_param(value: &Value, q: &mut PgSql) -> String {
    let p = q.bind(value.to_string());
    format!("{p}::text::jsonb")
}

/// `{"a": {"b": value}}` for the field `a.b` (top-level containment, GIN-indexable).
fn containment(field: &str, value: Value) -> Value {
    field.rsplit('.').fold(value, |inner, key| {
        let mut m = Map::new();
        m.insert(key.to_string(), inner);
        Value::Object(m)
    })
}

fn condition(filter: &Filter, q: &mut PgSql) {
    match filter.field.as_str() {
        "id" => id_condition(filter, q),
        "last_modified" => last_modified_condition(filter, q),
        field => data_condition(filter, field, q),
    }
}

fn missing_column(filter: &Filter, q: &mut PgSql) {
    // A column is never missing: only `<= MISSING` and `< MISSING` hold.
    q.push(if matches!(filter.op, FilterOp::Lt | FilterOp::Max) {
        "TRUE"
    } else {
        "FALSE"
    });
}

fn comparison(op: FilterOp) -> Option<&'static str> {
    Some(match op {
        FilterOp::Eq => "=",
        FilterOp::NotEq => "<>",
        FilterOp::Lt => "<",
        FilterOp::Gt => ">",
        FilterOp::Min => ">=",
        FilterOp::Max => "<=",
        _ => return None,
    })
}

fn id_condition(filter: &Filter, q: &mut PgSql) {
    if filter.is_missing() {
        return missing_column(filter, q);
    }
    if let Some(op) = comparison(filter.op) {
        let p = q.bind(id_text(&filter.value));
        return q.push(&format!("id {op} {p}::text"));
    }
    match filter.op {
        FilterOp::In | FilterOp::NotIn => {
            let items: Vec<String> = candidates(&filter.value).iter().map(id_text).collect();
            if items.is_empty() {
                return q.push("FALSE");
            }
            let p = q.bind(items);
            if filter.op == FilterOp::In {
                q.push(&format!("id = ANY({p}::text[])"));
            } else {
                q.push(&format!("id <> ALL({p}::text[])"));
            }
        }
        FilterOp::Like => {
            let p = q.bind(like_pattern(&filter.value));
            q.push(&format!("id ILIKE {p}::text"));
        }
        FilterOp::Has => q.push(if truthy(&filter.value) {
            "TRUE"
        } else {
            "FALSE"
        }),
        _ => q.push("FALSE"),
    }
}

fn last_modified_condition(filter: &Filter, q: &mut PgSql) {
    if filter.is_missing() {
        return missing_column(filter, q);
    }
    if let Some(op) = comparison(filter.op) {
        let p = q.bind(epoch_value(&filter.value));
        return q.push(&format!(
            "last_modified {op} {}",
            from_epoch(&format!("{p}::BIGINT"))
        ));
    }
    match filter.op {
        FilterOp::In | FilterOp::NotIn => {
            let items: Vec<i64> = candidates(&filter.value)
                .iter()
                .filter_map(epoch_value)
                .collect();
            if items.is_empty() {
                return q.push("FALSE");
            }
            let p = q.bind(items);
            if filter.op == FilterOp::In {
                q.push(&format!("{EPOCH_LM} = ANY({p}::bigint[])"));
            } else {
                q.push(&format!("{EPOCH_LM} <> ALL({p}::bigint[])"));
            }
        }
        FilterOp::Like => {
            let p = q.bind(like_pattern(&filter.value));
            q.push(&format!("{EPOCH_LM}::text ILIKE {p}::text"));
        }
        FilterOp::Has => q.push(if truthy(&filter.value) {
            "TRUE"
        } else {
            "FALSE"
        }),
        _ => q.push("FALSE"),
    }
}

/// Whether `filter` is written as a lookup in the filter index (see `data_condition`).
fn in_filter_index(filter: &Filter) -> bool {
    filter.op == FilterOp::Eq
        && !matches!(filter.field.as_str(), "id" | "last_modified")
        && !filter.is_missing()
        && !filter.value.is_array()
        && !filter.value.is_object()
}

fn data_condition(filter: &Filter, field: &str, q: &mut PgSql) {
    if filter.is_missing() {
        // Every bound parameter must appear in the SQL (PostgreSQL infers its type there).
        let cond = match filter.op {
            FilterOp::Eq | FilterOp::Min => format!("{} IS NULL", field_expr(field, q)),
            FilterOp::Lt => format!("{} IS NOT NULL", field_expr(field, q)),
            FilterOp::Max => "TRUE".to_string(),
            _ => "FALSE".to_string(),
        };
        return q.push(&cond);
    }
    let value = &filter.value;
    let cond = match filter.op {
        FilterOp::Eq if in_filter_index(filter) => {
            let wanted = containment(field, value.clone());
            match q.list_key.clone() {
                // One key of the filter index: the list, the path and the value.
                Some(key) => {
                    let v = json_param(&Value::Object(Map::from_iter([(key, wanted)])), q);
                    format!("{LIST_DATA} @> {v}")
                }
                None => {
                    let v = json_param(&wanted, q);
                    format!("data @> {v}")
                }
            }
        }
        FilterOp::Eq | FilterOp::Lt | FilterOp::Max => {
            let f = field_expr(field, q);
            let v = json_param(value, q);
            let op = comparison(filter.op).unwrap_or("=");
            format!("{f} {op} {v}")
        }
        FilterOp::NotEq => {
            let f = field_expr(field, q);
            let v = json_param(value, q);
            format!("{f} IS DISTINCT FROM {v}")
        }
        FilterOp::Gt | FilterOp::Min => {
            let f = field_expr(field, q);
            let v = json_param(value, q);
            let op = comparison(filter.op).unwrap_or(">");
            format!("({f} IS NULL OR {f} {op} {v})")
        }
        FilterOp::In | FilterOp::NotIn => {
            let items: Vec<String> = candidates(value).iter().map(Value::to_string).collect();
            if filter.op == FilterOp::In && items.is_empty() {
                // Kinto's `IN (NULL)`: nothing is in it.
                return q.push("FALSE");
            }
            let f = field_expr(field, q);
            match (filter.op, items.is_empty()) {
                // `NOT IN (NULL)`: only missing fields are not in it.
                (_, true) => format!("{f} IS NULL"),
                (FilterOp::In, false) => {
                    let p = q.bind(items);
                    format!("{f} = ANY({p}::text[]::jsonb[])")
                }
                (_, false) => {
                    let p = q.bind(items);
                    format!("({f} IS NULL OR {f} <> ALL({p}::text[]::jsonb[]))")
                }
            }
        }
        FilterOp::Like => {
            let p = q.bind(path(field));
            let v = q.bind(like_pattern(value));
            format!("(data #>> {p}::text[]) ILIKE {v}::text")
        }
        FilterOp::Has => {
            let f = field_expr(field, q);
            let not = if truthy(value) { "NOT " } else { "" };
            format!("{f} IS {not}NULL")
        }
        FilterOp::Contains => {
            let v = json_param(&containment(field, Value::Array(as_array(value))), q);
            format!("data @> {v}")
        }
        FilterOp::ContainsAny => {
            let f = field_expr(field, q);
            let items: Vec<String> = as_array(value).iter().map(Value::to_string).collect();
            let p = q.bind(items);
            format!(
                "(CASE WHEN jsonb_typeof({f}) = 'array' THEN EXISTS (SELECT 1 FROM \
                 jsonb_array_elements({f}) AS e WHERE e = ANY({p}::text[]::jsonb[])) \
                 ELSE FALSE END)"
            )
        }
    };
    q.push(&cond);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filtered(filters: Vec<Filter>, parent_id: &str) -> String {
        let query = ListQuery {
            filters,
            ..ListQuery::default()
        };
        let mut q = PgSql::new("");
        scope_for("record", parent_id, &query.filters, &mut q);
        conditions(&query, &mut q);
        q.sql
    }

    fn eq(field: &str, value: serde_json::Value) -> Filter {
        Filter {
            field: field.into(),
            op: FilterOp::Eq,
            value,
        }
    }

    #[test]
    fn an_equality_filter_of_one_list_is_a_lookup_in_the_filter_index_alone() {
        let sql = filtered(vec![eq("n", json!(5))], "/buckets/b/collections/c");
        assert!(
            sql.starts_with("parent_id || ' ' || resource_name = $1::text"),
            "{sql}"
        );
        assert!(
            sql.contains(&format!("{LIST_DATA} @> $2::text::jsonb")),
            "{sql}"
        );
        assert!(
            !sql.contains("parent_id ="),
            "no indexable list condition: {sql}"
        );
    }

    #[test]
    fn other_filters_and_wildcard_lists_keep_the_plain_conditions() {
        let sql = filtered(vec![eq("n", json!([1]))], "/buckets/b/collections/c");
        assert!(
            sql.starts_with("parent_id = $1 AND resource_name = $2"),
            "{sql}"
        );
        let sql = filtered(
            vec![eq("last_modified", json!(5))],
            "/buckets/b/collections/c",
        );
        assert!(
            sql.starts_with("parent_id = $1 AND resource_name = $2"),
            "{sql}"
        );
        let sql = filtered(vec![eq("n", json!(5))], "/buckets/*/collections/c");
        assert!(sql.contains("parent_id LIKE"), "{sql}");
        assert!(sql.contains("AND data @> "), "{sql}");
    }
}
