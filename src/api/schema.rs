//! JSON-schema validation of records, collections and groups (section 7.4,
//! `experimental_collection_schema_validation`): the commonly used keywords of JSON Schema,
//! with python-jsonschema's messages and Kinto's choice of the error's field name.

use super::resource::body::python_repr;
use crate::error::{ApiError, Location};
use serde_json::{Map, Value};

/// One validation failure: the field name reported and the validator's message.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub field: String,
    pub message: String,
}

impl Failure {
    pub fn into_error(self) -> ApiError {
        ApiError::invalid(Location::Body, Some(&self.field), self.message)
    }
}

fn type_matches(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => true,
    }
}

fn number(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// Python's rendering of a number (`3`, `2.5`).
fn num_repr(value: &Value) -> String {
    python_repr(value)
}

/// Validates `instance` against `schema`; `path` is the instance path so far.
fn check(instance: &Value, schema: &Value, path: &[String]) -> Result<(), Failure> {
    let Value::Object(schema) = schema else {
        return match schema {
            Value::Bool(false) => Err(failure(
                path,
                "false",
                format!("False schema does not allow {}", python_repr(instance)),
            )),
            _ => Ok(()),
        };
    };
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(name) => type_matches(instance, name),
            Value::Array(names) => names
                .iter()
                .filter_map(Value::as_str)
                .any(|n| type_matches(instance, n)),
            _ => true,
        };
        if !ok {
            let expected = match t {
                Value::String(name) => format!("'{name}'"),
                other => python_repr(other),
            };
            return Err(failure(
                path,
                "type",
                format!("{} is not of type {expected}", python_repr(instance)),
            ));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(instance) {
            return Err(failure(
                path,
                "enum",
                format!(
                    "{} is not one of {}",
                    python_repr(instance),
                    python_repr(&Value::Array(options.clone()))
                ),
            ));
        }
    }
    if let Some(expected) = schema.get("const") {
        if instance != expected {
            return Err(failure(
                path,
                "const",
                format!("{} was expected", python_repr(expected)),
            ));
        }
    }
    if let Some(n) = number(instance).filter(|_| instance.is_number()) {
        let bound = |key: &str| schema.get(key).and_then(number);
        if bound("minimum").is_some_and(|m| n < m) {
            return Err(failure(
                path,
                "minimum",
                format!(
                    "{} is less than the minimum of {}",
                    num_repr(instance),
                    num_repr(&schema["minimum"])
                ),
            ));
        }
        if bound("maximum").is_some_and(|m| n > m) {
            return Err(failure(
                path,
                "maximum",
                format!(
                    "{} is greater than the maximum of {}",
                    num_repr(instance),
                    num_repr(&schema["maximum"])
                ),
            ));
        }
        if bound("exclusiveMinimum").is_some_and(|m| n <= m) {
            return Err(failure(
                path,
                "exclusiveMinimum",
                format!(
                    "{} is less than or equal to the minimum of {}",
                    num_repr(instance),
                    num_repr(&schema["exclusiveMinimum"])
                ),
            ));
        }
        if bound("exclusiveMaximum").is_some_and(|m| n >= m) {
            return Err(failure(
                path,
                "exclusiveMaximum",
                format!(
                    "{} is greater than or equal to the maximum of {}",
                    num_repr(instance),
                    num_repr(&schema["exclusiveMaximum"])
                ),
            ));
        }
    }
    if let Value::String(text) = instance {
        let length = text.chars().count() as u64;
        if schema
            .get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| length < m)
        {
            return Err(failure(
                path,
                "minLength",
                format!("{} is too short", python_repr(instance)),
            ));
        }
        if schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| length > m)
        {
            return Err(failure(
                path,
                "maxLength",
                format!("{} is too long", python_repr(instance)),
            ));
        }
    }
    if let Value::Array(items) = instance {
        let count = items.len() as u64;
        if schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| count < m)
        {
            return Err(failure(
                path,
                "minItems",
                format!("{} is too short", python_repr(instance)),
            ));
        }
        if schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| count > m)
        {
            return Err(failure(
                path,
                "maxItems",
                format!("{} is too long", python_repr(instance)),
            ));
        }
        if let Some(item_schema @ Value::Object(_)) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                let mut sub = path.to_vec();
                sub.push(i.to_string());
                check(item, item_schema, &sub)?;
            }
        }
    }
    if let Value::Object(object) = instance {
        check_object(object, schema, path)?;
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(subs)) = schema.get(key) {
            let passed = subs
                .iter()
                .filter(|s| check(instance, s, path).is_ok())
                .count();
            let ok = match key {
                "allOf" => passed == subs.len(),
                "anyOf" => passed > 0,
                _ => passed == 1,
            };
            if !ok {
                return Err(failure(
                    path,
                    key,
                    format!(
                        "{} is not valid under any of the given schemas",
                        python_repr(instance)
                    ),
                ));
            }
        }
    }
    if let Some(not) = schema.get("not") {
        if check(instance, not, path).is_ok() {
            return Err(failure(
                path,
                "not",
                format!(
                    "{} should not be valid under {}",
                    python_repr(instance),
                    python_repr(not)
                ),
            ));
        }
    }
    Ok(())
}

fn check_object(
    object: &Map<String, Value>,
    schema: &Map<String, Value>,
    path: &[String],
) -> Result<(), Failure> {
    if let Some(Value::Array(required)) = schema.get("required") {
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                return Err(Failure {
                    field: name.to_string(),
                    message: format!("'{name}' is a required property"),
                });
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    if let Some(properties) = properties {
        for (name, sub) in properties {
            if let Some(value) = object.get(name) {
                let mut sub_path = path.to_vec();
                sub_path.push(name.clone());
                check(value, sub, &sub_path)?;
            }
        }
    }
    match schema.get("additionalProperties") {
        Some(Value::Bool(false)) => {
            let extra: Vec<String> = object
                .keys()
                .filter(|k| !properties.is_some_and(|p| p.contains_key(*k)))
                .map(|k| format!("'{k}'"))
                .collect();
            if !extra.is_empty() {
                let verb = if extra.len() == 1 { "was" } else { "were" };
                return Err(failure(
                    path,
                    "additionalProperties",
                    format!(
                        "Additional properties are not allowed ({} {verb} unexpected)",
                        extra.join(", ")
                    ),
                ));
            }
        }
        Some(sub @ Value::Object(_)) => {
            for (name, value) in object {
                if !properties.is_some_and(|p| p.contains_key(name)) {
                    let mut sub_path = path.to_vec();
                    sub_path.push(name.clone());
                    check(value, sub, &sub_path)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Kinto's field choice: the last element of the instance path, else the keyword.
fn failure(path: &[String], keyword: &str, message: String) -> Failure {
    Failure {
        field: path.last().cloned().unwrap_or_else(|| keyword.to_string()),
        message,
    }
}

/// Validates an object's data as Kinto does: `id`, `last_modified` and `schema` are ignored
/// unless the schema's `properties` declares them (also dropped from `required`).
pub fn validate(data: &Map<String, Value>, schema: &Value) -> Result<(), Failure> {
    let declared = |field: &str| {
        schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.contains_key(field))
    };
    let ignored: Vec<&str> = ["id", "last_modified", "schema"]
        .into_iter()
        .filter(|f| !declared(f))
        .collect();
    let mut instance = data.clone();
    for field in &ignored {
        instance.remove(*field);
    }
    let mut schema = schema.clone();
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|r| !r.as_str().is_some_and(|r| ignored.contains(&r)));
    }
    check(&Value::Object(instance), &schema, &[])
}
