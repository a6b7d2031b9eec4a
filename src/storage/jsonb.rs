//! PostgreSQL JSONB semantics in Rust, for the SQLite backend: an order-preserving byte key (so
//! that SQLite's BLOB comparison sorts and compares JSON values exactly as JSONB does), field
//! lookup by dotted path, the `->>` text form, containment (`@>`) and case-insensitive `LIKE`.

use serde_json::Value;

// JSONB orders types: null < string < number < boolean < array < object (and, at top level
// only, the empty array before null).
const TAG_EMPTY_TOP_ARRAY: u8 = 0;
const TAG_NULL: u8 = 1;
const TAG_STRING: u8 = 2;
const TAG_NUMBER: u8 = 3;
const TAG_BOOL: u8 = 4;
const TAG_ARRAY: u8 = 5;
const TAG_OBJECT: u8 = 6;

/// The order-preserving key of a JSON value: `key(a) < key(b)` (bytewise) exactly when JSONB
/// orders `a < b`, and equal keys mean JSONB-equal values.
pub fn sort_key(value: &Value) -> Vec<u8> {
    // JSONB quirk: an empty top-level array sorts before null.
    if value.as_array().is_some_and(Vec::is_empty) {
        return vec![TAG_EMPTY_TOP_ARRAY];
    }
    let mut out = Vec::with_capacity(16);
    encode(value, &mut out);
    out
}

fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::String(s) => {
            out.push(TAG_STRING);
            encode_str(s, out);
        }
        Value::Number(n) => {
            out.push(TAG_NUMBER);
            let mut f = n.as_f64().unwrap_or(0.0);
            if f == 0.0 {
                f = 0.0; // -0 and 0 are equal
            }
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits | (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Bool(b) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*b));
        }
        // JSONB compares containers by size first, then element by element.
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Value::Object(map) => {
            out.push(TAG_OBJECT);
            out.extend_from_slice(&(map.len() as u32).to_be_bytes());
            // JSONB stores keys shorter first, then bytewise.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            for key in keys {
                encode_str(key, out);
                encode(&map[key], out);
            }
        }
    }
}

/// Self-delimiting string encoding: NUL bytes escaped as `00 FF`, terminated by `00 00`.
fn encode_str(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The value at a dotted path (`data->'a'->'b'`): only object keys are followed.
pub fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = data;
    for part in path.split('.') {
        current = current.as_object()?.get(part)?;
    }
    Some(current)
}

/// PostgreSQL's `->>` text form: strings unquoted, JSON null as SQL NULL, others as JSON text.
pub fn text_form(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// JSONB containment `a @> b`.
pub fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => mb
            .iter()
            .all(|(k, vb)| ma.get(k).is_some_and(|va| contains(va, vb))),
        (Value::Array(xa), Value::Array(xb)) => xb
            .iter()
            .all(|vb| xa.iter().any(|va| contains_element(va, vb))),
        _ => sort_key(a) == sort_key(b),
    }
}

fn contains_element(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => contains(a, b),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => sort_key(a) == sort_key(b),
    }
}

/// PostgreSQL `ILIKE`: `%` any run, `_` one character, `\` escapes; case-insensitive.
pub fn ilike(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    like_match(&t, &p)
}

fn like_match(t: &[char], p: &[char]) -> bool {
    // Iterative matcher with backtracking on the last `%`.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '%' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '_' => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == t[ti] {
                        ti += 1;
                        pi += 2;
                        continue;
                    }
                }
                c => {
                    if c == t[ti] {
                        ti += 1;
                        pi += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_follow_jsonb_type_order() {
        let ordered = [
            json!([]),
            json!(null),
            json!(""),
            json!("a"),
            json!("ab"),
            json!("b"),
            json!(-10.5),
            json!(-1),
            json!(0),
            json!(2),
            json!(10),
            json!(false),
            json!(true),
            json!([3]),
            json!(["a", 1]),
            json!({}),
            json!({"z": 1}),
            json!({"a": 1, "b": 2}),
        ];
        for pair in ordered.windows(2) {
            assert!(
                sort_key(&pair[0]) < sort_key(&pair[1]),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(sort_key(&json!(3)), sort_key(&json!(3.0)));
        assert_eq!(
            sort_key(&json!({"a":1,"b":2})),
            sort_key(&json!({"b":2,"a":1}))
        );
    }

    #[test]
    fn containment_and_like() {
        assert!(contains(&json!(["a", "b", 3]), &json!(["b", 3])));
        assert!(!contains(&json!(["a"]), &json!(["a", "c"])));
        assert!(contains(
            &json!({"t": [1, {"x": 1, "y": 2}]}),
            &json!({"t": [{"x": 1}]})
        ));
        assert!(!contains(&json!({"t": [1]}), &json!({"t": 1})));
        assert!(ilike("Hello World", "%WORLD"));
        assert!(ilike("abc", "a_c"));
        assert!(!ilike("abc", "a_"));
        assert!(ilike("a%c", "a\\%c"));
        assert!(!ilike("abc", "a\\%c"));
        assert!(ilike("xxabyyab", "%ab"));
    }
}
