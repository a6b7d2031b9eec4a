//! The objects of a list page as a backend hands them over: parsed, or kept as the database's
//! JSON text of their fields, which the response then carries without parsing it into maps and
//! serialising it again (a page of 10 records was a fifth of the server's CPU per list).

use super::{build_object, BackendError, Object, Result};
use serde_json::Value;

/// One object of a page.
#[derive(Debug, Clone)]
pub enum PageObject {
    Parsed(Object),
    /// The object's fields as JSON object text that names neither `id` nor `last_modified`
    /// (see [`PageObject::text`]), with those two apart.
    Text {
        id: String,
        last_modified: i64,
        fields: String,
    },
}

impl PageObject {
    /// `fields` kept as text when it is a JSON object that cannot name `id` or `last_modified`
    /// (a cheap test of the text: rows written by Kinto itself may hold them, and the columns
    /// win), parsed otherwise.
    pub fn text(id: String, last_modified: i64, fields: &str) -> Result<PageObject> {
        let passable = fields.starts_with('{')
            && !fields.contains("\"id\"")
            && !fields.contains("\"last_modified\"");
        if passable {
            return Ok(PageObject::Text {
                id,
                last_modified,
                fields: fields.to_string(),
            });
        }
        let data = serde_json::from_str(fields)
            .map_err(|e| BackendError::Unavailable(format!("corrupt object data: {e}")))?;
        Ok(PageObject::Parsed(build_object(data, &id, last_modified)))
    }

    /// The object as a map (parsed now if it was text).
    pub fn to_object(&self) -> Result<Object> {
        match self {
            PageObject::Parsed(object) => Ok(object.clone()),
            PageObject::Text {
                id,
                last_modified,
                fields,
            } => {
                let data = serde_json::from_str(fields)
                    .map_err(|e| BackendError::Unavailable(format!("corrupt object data: {e}")))?;
                Ok(build_object(data, id, *last_modified))
            }
        }
    }

    /// Appends the object's JSON: its text as it is, `id` and `last_modified` first.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            PageObject::Parsed(object) => {
                // Serialising a map of JSON values cannot fail.
                let _ = serde_json::to_writer(&mut *out, object);
            }
            PageObject::Text {
                id,
                last_modified,
                fields,
            } => {
                out.extend_from_slice(b"{\"id\":");
                let _ = serde_json::to_writer(&mut *out, &Value::from(id.as_str()));
                out.extend_from_slice(format!(",\"last_modified\":{last_modified}").as_bytes());
                let rest = fields[1..].trim_start();
                if !rest.starts_with('}') {
                    out.push(b',');
                }
                out.extend_from_slice(rest.as_bytes());
            }
        }
    }
}

/// The same object, whatever its form.
impl PartialEq for PageObject {
    fn eq(&self, other: &PageObject) -> bool {
        match (self.to_object(), other.to_object()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(object: &PageObject) -> Value {
        let mut out = Vec::new();
        object.write_json(&mut out);
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn text_and_parsed_objects_write_the_same_json() {
        let cases = [
            "{}",
            "{ }",
            r#"{"n": 5, "tags": ["a", "b"], "o": {"id": 1}}"#,
            r#"{"s": "quote \" and \\ and é"}"#,
        ];
        for fields in cases {
            let page = PageObject::text("r-1".into(), 42, fields).unwrap();
            let mut expected: Object = serde_json::from_str(fields).unwrap();
            expected = build_object(expected, "r-1", 42);
            assert_eq!(written(&page), Value::Object(expected.clone()), "{fields}");
            assert_eq!(page.to_object().unwrap(), expected);
            assert_eq!(page, PageObject::Parsed(expected));
        }
    }

    #[test]
    fn fields_naming_id_or_last_modified_are_parsed_and_the_columns_win() {
        for fields in [
            r#"{"id": "other", "n": 1}"#,
            r#"{"last_modified": 1, "n": 1}"#,
        ] {
            let page = PageObject::text("r".into(), 7, fields).unwrap();
            assert!(matches!(page, PageObject::Parsed(_)), "{fields}");
            assert_eq!(written(&page)["id"], json!("r"));
            assert_eq!(written(&page)["last_modified"], json!(7));
        }
        assert!(PageObject::text("r".into(), 7, "not json").is_err());
    }
}
