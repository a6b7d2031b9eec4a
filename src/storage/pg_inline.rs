//! Parameters written as literals, so that a named statement can be executed (`EXECUTE name
//! (...)`) among other statements in one simple-protocol round trip (the read that opens a write
//! transaction), and the text form of the arrays such a statement answers with.

/// A text value as an escape-string literal: `E'...'` means the same whatever
/// `standard_conforming_strings` says. `None` for text PostgreSQL cannot hold (a NUL byte).
pub fn text(value: &str) -> Option<String> {
    if value.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(value.len() + 4);
    out.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Some(out)
}

/// A `text[]` literal of `values`.
pub fn text_array<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let items: Option<Vec<String>> = values.into_iter().map(text).collect();
    let items = items?;
    if items.is_empty() {
        return Some("'{}'::text[]".into());
    }
    Some(format!("ARRAY[{}]::text[]", items.join(",")))
}

/// The elements of a one-dimensional array in PostgreSQL's text form (`{a,"b c",NULL}`),
/// `NULL` elements left out. `None` when `text` is not such an array.
pub fn parse_array(text: &str) -> Option<Vec<String>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut item = String::new();
            loop {
                match chars.next()? {
                    '\\' => item.push(chars.next()?),
                    '"' => break,
                    c => item.push(c),
                }
            }
            items.push(item);
        } else {
            let mut item = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            if item.is_empty() {
                return None;
            }
            if item != "NULL" {
                items.push(item);
            }
        }
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// A `bool[]` in text form (`{t,f}`).
pub fn parse_bool_array(text: &str) -> Option<Vec<bool>> {
    parse_array(text)?
        .iter()
        .map(|b| match b.as_str() {
            "t" => Some(true),
            "f" => Some(false),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes_and_refuse_nul() {
        assert_eq!(text("a'b\\c").unwrap(), "E'a''b\\\\c'");
        assert_eq!(text("x\0y"), None);
        assert_eq!(text_array([]).unwrap(), "'{}'::text[]");
        assert_eq!(text_array(["a", "b"]).unwrap(), "ARRAY[E'a',E'b']::text[]");
    }

    #[test]
    fn arrays_in_text_form() {
        assert_eq!(parse_array("{}").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_array(r#"{a,"b c","d\"e","f\\g",NULL,"NULL","{x,y}"}"#).unwrap(),
            ["a", "b c", "d\"e", "f\\g", "NULL", "{x,y}"]
        );
        assert_eq!(parse_array("{a,"), None);
        assert_eq!(parse_array("a"), None);
        assert_eq!(parse_bool_array("{t,f}").unwrap(), [true, false]);
    }
}
