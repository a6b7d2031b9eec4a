//! SQL text for plural queries on SQLite: filters, pagination rules and sorting with Kinto's
//! (PostgreSQL JSONB) semantics, through the functions registered by the SQLite backend
//! (`kval`, `ktext`, `kilike`, `kcontains`). Field names and values are always bound parameters.

use super::{
    as_array, candidates, epoch_value, id_text, jsonb, like_pattern, truthy, Filter, FilterOp,
    ListQuery, Sort,
};
use rusqlite::types::Value as SqlValue;
use serde_json::Value;

/// A key greater than every JSON key: missing fields compare above everything.
const MISSING_HIGH: &str = "X'FF'";

/// Appends the conditions selecting the objects of `resource_name`/`parent_id` (either may hold
/// `*` wildcards; a lone `*` resource name means every type).
pub fn scope(resource_name: &str, parent_id: &str, sql: &mut String, params: &mut Vec<SqlValue>) {
    if parent_id.contains('*') {
        sql.push_str("parent_id GLOB ?");
        params.push(SqlValue::Text(glob_pattern(parent_id)));
    } else {
        sql.push_str("parent_id = ?");
        params.push(SqlValue::Text(parent_id.to_string()));
    }
    if resource_name != "*" {
        sql.push_str(" AND resource_name = ?");
        params.push(SqlValue::Text(resource_name.to_string()));
    }
}

/// A `*`-wildcard id pattern as a (case-sensitive) `GLOB` pattern, other characters literal.
pub fn glob_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '?' => out.push_str("[?]"),
            '[' => out.push_str("[[]"),
            c => out.push(c),
        }
    }
    out
}

/// Appends ` AND <filters> AND (<pagination>)` for a query.
pub fn conditions(query: &ListQuery, sql: &mut String, params: &mut Vec<SqlValue>) {
    for filter in &query.filters {
        sql.push_str(" AND ");
        condition(filter, sql, params);
    }
    if !query.pagination_rules.is_empty() {
        sql.push_str(" AND (");
        for (i, rule) in query.pagination_rules.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            sql.push('(');
            if rule.is_empty() {
                sql.push('1');
            }
            for (j, filter) in rule.iter().enumerate() {
                if j > 0 {
                    sql.push_str(" AND ");
                }
                condition(filter, sql, params);
            }
            sql.push(')');
        }
        sql.push(')');
    }
}

/// Appends ` ORDER BY ...` (nothing without sort keys).
pub fn order_by(sorting: &[Sort], sql: &mut String, params: &mut Vec<SqlValue>) {
    for (i, sort) in sorting.iter().enumerate() {
        sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
        match sort.field.as_str() {
            "id" => sql.push_str("id"),
            "last_modified" => sql.push_str("last_modified"),
            field => {
                sql.push_str("kval(data, ?)");
                params.push(SqlValue::Text(field.to_string()));
            }
        }
        // Missing fields sort after everything ascending, first descending (JSONB NULLs).
        sql.push_str(if sort.descending {
            " DESC NULLS FIRST"
        } else {
            " ASC NULLS LAST"
        });
    }
}

fn key(value: &Value) -> SqlValue {
    SqlValue::Blob(jsonb::sort_key(value))
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn condition(filter: &Filter, sql: &mut String, params: &mut Vec<SqlValue>) {
    match filter.field.as_str() {
        "id" => column_condition(filter, "id", sql, params, |v| SqlValue::Text(id_text(v))),
        "last_modified" => column_condition(filter, "last_modified", sql, params, |v| {
            epoch_value(v)
                .map(SqlValue::Integer)
                .unwrap_or(SqlValue::Null)
        }),
        field => data_condition(filter, field, sql, params),
    }
}

/// Conditions on the `id` / `last_modified` columns (never missing).
fn column_condition(
    filter: &Filter,
    column: &str,
    sql: &mut String,
    params: &mut Vec<SqlValue>,
    convert: impl Fn(&Value) -> SqlValue,
) {
    if filter.is_missing() {
        // A column is never missing: only `<= MISSING` and `< MISSING` hold.
        let holds = matches!(filter.op, FilterOp::Lt | FilterOp::Max);
        sql.push_str(if holds { "1" } else { "0" });
        return;
    }
    let simple = |op: &str, sql: &mut String, params: &mut Vec<SqlValue>| {
        sql.push_str(&format!("{column} {op} ?"));
        params.push(convert(&filter.value));
    };
    match filter.op {
        FilterOp::Eq => simple("=", sql, params),
        FilterOp::NotEq => simple("IS NOT", sql, params),
        FilterOp::Lt => simple("<", sql, params),
        FilterOp::Gt => simple(">", sql, params),
        FilterOp::Min => simple(">=", sql, params),
        FilterOp::Max => simple("<=", sql, params),
        FilterOp::In | FilterOp::NotIn => {
            let items = candidates(&filter.value);
            if items.is_empty() {
                // Kinto's `IN (NULL)` / `NOT IN (NULL)`: never true.
                sql.push('0');
                return;
            }
            let neg = if filter.op == FilterOp::NotIn {
                "NOT "
            } else {
                ""
            };
            sql.push_str(&format!("{column} {neg}IN ({})", placeholders(items.len())));
            params.extend(items.iter().map(&convert));
        }
        FilterOp::Like => {
            sql.push_str(&format!("kilike(CAST({column} AS TEXT), ?)"));
            params.push(SqlValue::Text(like_pattern(&filter.value)));
        }
        FilterOp::Has => sql.push_str(if truthy(&filter.value) { "1" } else { "0" }),
        FilterOp::Contains | FilterOp::ContainsAny => sql.push('0'),
    }
}

/// Conditions on a JSON field of `data` (missing fields per Kinto's PostgreSQL backend).
fn data_condition(filter: &Filter, field: &str, sql: &mut String, params: &mut Vec<SqlValue>) {
    let path = SqlValue::Text(field.to_string());
    if filter.is_missing() {
        let cond = match filter.op {
            FilterOp::Eq | FilterOp::Min => "kval(data, ?) IS NULL",
            FilterOp::Lt => "kval(data, ?) IS NOT NULL",
            FilterOp::Max => "(kval(data, ?) IS NULL OR 1)",
            _ => "(kval(data, ?) IS NULL AND 0)",
        };
        sql.push_str(cond);
        params.push(path);
        return;
    }
    let compare = |op: &str, missing_high: bool, sql: &mut String, params: &mut Vec<SqlValue>| {
        if missing_high {
            sql.push_str(&format!("coalesce(kval(data, ?), {MISSING_HIGH}) {op} ?"));
        } else {
            sql.push_str(&format!("kval(data, ?) {op} ?"));
        }
        params.push(path.clone());
        params.push(key(&filter.value));
    };
    match filter.op {
        FilterOp::Eq => compare("=", false, sql, params),
        FilterOp::NotEq => compare("IS NOT", false, sql, params),
        FilterOp::Lt => compare("<", false, sql, params),
        FilterOp::Max => compare("<=", false, sql, params),
        FilterOp::Gt => compare(">", true, sql, params),
        FilterOp::Min => compare(">=", true, sql, params),
        FilterOp::In | FilterOp::NotIn => {
            let items = candidates(&filter.value);
            params.push(path);
            if items.is_empty() {
                // Kinto's `IN (NULL)`: nothing is in it; only missing fields are not in it.
                sql.push_str(if filter.op == FilterOp::In {
                    "(kval(data, ?) IS NULL AND 0)"
                } else {
                    "kval(data, ?) IS NULL"
                });
                return;
            }
            if filter.op == FilterOp::In {
                sql.push_str(&format!("kval(data, ?) IN ({})", placeholders(items.len())));
            } else {
                sql.push_str(&format!(
                    "coalesce(kval(data, ?), {MISSING_HIGH}) NOT IN ({})",
                    placeholders(items.len())
                ));
            }
            params.extend(items.iter().map(key));
        }
        FilterOp::Like => {
            sql.push_str("coalesce(kilike(ktext(data, ?), ?), 0)");
            params.push(path);
            params.push(SqlValue::Text(like_pattern(&filter.value)));
        }
        FilterOp::Has => {
            let not = if truthy(&filter.value) { "NOT " } else { "" };
            sql.push_str(&format!("kval(data, ?) IS {not}NULL"));
            params.push(path);
        }
        FilterOp::Contains | FilterOp::ContainsAny => {
            let any = i64::from(filter.op == FilterOp::ContainsAny);
            sql.push_str("kcontains(data, ?, ?, ?)");
            params.push(path);
            params.push(SqlValue::Text(
                Value::Array(as_array(&filter.value)).to_string(),
            ));
            params.push(SqlValue::Integer(any));
        }
    }
}
