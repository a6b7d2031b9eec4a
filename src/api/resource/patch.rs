//! PATCH bodies: RFC 7396 JSON merge-patch and RFC 6902 JSON-Patch, applied as Kinto does to
//! `{"data": …, "permissions": {perm: {principal: principal}}}`.

use crate::error::{invalid_sorted, ApiError, ApiResult, Detail, Location};
use serde_json::{Map, Value};

/// RFC 7396: recursive merge, `null` removes the key.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target_map) = target else {
        return;
    };
    for (key, value) in patch_map {
        if value.is_null() {
            target_map.remove(key);
        } else {
            let entry = target_map.entry(key.clone()).or_insert(Value::Null);
            merge_patch(entry, value);
        }
    }
}

const OPS: &[&str] = &["test", "add", "remove", "replace", "move", "copy"];

/// Validates the shape of a JSON-Patch body: an array of `{op, path, value?, from?}`.
pub fn validate_operations(body: &Value) -> ApiResult<Vec<Map<String, Value>>> {
    let Value::Array(items) = body else {
        return Err(ApiError::invalid(
            Location::Body,
            Some(""),
            format!("{} is not of type 'array'", body),
        ));
    };
    let mut details = Vec::new();
    let mut ops = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(op) = item else {
            details.push(Detail::new(
                Location::Body,
                Some(&i.to_string()),
                format!(
                    "\"{item}\" is not a mapping type: Does not implement dict-like functionality."
                ),
            ));
            continue;
        };
        match op.get("op") {
            Some(Value::String(name)) if OPS.contains(&name.as_str()) => {}
            Some(other) => details.push(Detail::new(
                Location::Body,
                Some(&format!("{i}.op")),
                format!(
                    "\"{}\" is not one of {}",
                    other
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or(other.to_string()),
                    OPS.join(", ")
                ),
            )),
            None => details.push(Detail::new(
                Location::Body,
                Some(&format!("{i}.op")),
                "Required",
            )),
        }
        if !op.get("path").is_some_and(Value::is_string) {
            details.push(Detail::new(
                Location::Body,
                Some(&format!("{i}.path")),
                "Required",
            ));
        }
        ops.push(op.clone());
    }
    if !details.is_empty() {
        return Err(invalid_sorted(400, details));
    }
    Ok(ops)
}

fn failed(reason: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(
        Location::Body,
        None,
        format!("JSON Patch operation failed: {reason}"),
    )
}

fn parse_pointer(pointer: &str) -> ApiResult<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(failed(format!("Location must start with /: {pointer}")));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn get<'v>(doc: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut current = doc;
    for token in path {
        current = match current {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn parent_mut<'v>(doc: &'v mut Value, path: &[String]) -> ApiResult<(&'v mut Value, String)> {
    let Some((last, parents)) = path.split_last() else {
        return Err(failed("cannot operate on the document root"));
    };
    let mut current = doc;
    for token in parents {
        current = match current {
            Value::Object(map) => map
                .get_mut(token)
                .ok_or_else(|| failed(format!("member '{token}' not found")))?,
            Value::Array(items) => {
                let index = token
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < items.len())
                    .ok_or_else(|| failed(format!("index '{token}' out of range")))?;
                &mut items[index]
            }
            _ => return Err(failed(format!("member '{token}' not found"))),
        };
    }
    Ok((current, last.clone()))
}

fn add(doc: &mut Value, path: &[String], value: Value) -> ApiResult<()> {
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
                return Ok(());
            }
            match last.parse::<usize>() {
                Ok(i) if i <= items.len() => {
                    items.insert(i, value);
                    Ok(())
                }
                _ => Err(failed(format!("can't insert outside of list: {last}"))),
            }
        }
        _ => Err(failed(format!("cannot add to a scalar at '{last}'"))),
    }
}

fn remove(doc: &mut Value, path: &[String]) -> ApiResult<Value> {
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(map) => map
            .remove(&last)
            .ok_or_else(|| failed(format!("can't remove a non-existent object '{last}'"))),
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => Ok(items.remove(i)),
            _ => Err(failed(format!(
                "can't remove a non-existent object '{last}'"
            ))),
        },
        _ => Err(failed(format!(
            "can't remove a non-existent object '{last}'"
        ))),
    }
}

/// Applies the operations in order to `doc`; the first failing one fails the whole patch.
pub fn apply_json_patch(doc: &mut Value, ops: &[Map<String, Value>]) -> ApiResult<()> {
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path_text = op.get("path").and_then(Value::as_str).unwrap_or("");
        let path = parse_pointer(path_text)?;
        // Kinto: permission paths imply their value (the principal is the last segment).
        let implied = (path_text.starts_with("/permissions/read/")
            || path_text.starts_with("/permissions/write/"))
        .then(|| Value::String(path.last().cloned().unwrap_or_default()));
        let value = || {
            implied
                .clone()
                .or_else(|| op.get("value").cloned())
                .ok_or_else(|| failed("The operation does not contain a 'value' member"))
        };
        let from = || -> ApiResult<Vec<String>> {
            let text = op
                .get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| failed("The operation does not contain a 'from' member"))?;
            parse_pointer(text)
        };
        match name {
            "add" => add(doc, &path, value()?)?,
            "remove" => {
                remove(doc, &path)?;
            }
            "replace" => {
                let v = value()?;
                remove(doc, &path)?;
                add(doc, &path, v)?;
            }
            "move" => {
                let from = from()?;
                let moved = remove(doc, &from)?;
                add(doc, &path, moved)?;
            }
            "copy" => {
                let from = from()?;
                let copied = get(doc, &from)
                    .cloned()
                    .ok_or_else(|| failed(format!("can't copy from non-existent path {from:?}")))?;
                add(doc, &path, copied)?;
            }
            "test" => {
                let expected = value()?;
                match get(doc, &path) {
                    Some(actual) if *actual == expected => {}
                    Some(actual) => {
                        return Err(failed(format!(
                            "{actual} is not equal to tested value {expected}"
                        )))
                    }
                    None => return Err(failed(format!("can't find path {path_text}"))),
                }
            }
            other => return Err(failed(format!("unknown operation {other}"))),
        }
    }
    Ok(())
}
