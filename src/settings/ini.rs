//! The ini reader Kinto's settings go through: Python's `configparser` as PasteDeploy configures it
//! (keys keep their case, `=` or `:` delimiters, full-line `#`/`;` comments, multi-line values by
//! indentation, `%(name)s` interpolation from the section and `[DEFAULT]`, `%%`).
//!
//! Only the sections asked for are checked strictly: the same file holds the `[uwsgi]` section,
//! whose dialect differs (repeated keys, `%d` magic), and which configparser would reject.

use std::collections::BTreeMap;

/// configparser's `MAX_INTERPOLATION_DEPTH`.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// A syntax error in one of the strictly read sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// The section the line belongs to (`None` before the first header).
    pub section: Option<String>,
    pub message: String,
}

/// One `key = value` as written: multi-line values are joined with `\n`, not yet interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub raw: String,
    pub line: usize,
}

/// The strictly read sections of an ini file, in file order.
#[derive(Debug, Clone, Default)]
pub struct Ini {
    sections: BTreeMap<String, Vec<Entry>>,
}

/// An interpolation error: the key whose value could not be interpolated, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpolationError {
    pub message: String,
}

impl Ini {
    /// Parses `text`, keeping (and checking) only the sections named in `wanted`.
    pub fn parse(text: &str, wanted: &[&str]) -> Result<Ini, ParseError> {
        let mut sections: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        // The current section, and whether it is one we keep.
        let mut current: Option<String> = None;
        let mut keep = false;
        let mut seen_headers: Vec<String> = Vec::new();
        // The option being continued: (section, index in its entries, indentation of its line).
        let mut open: Option<(usize, usize)> = None;
        // Lines of the open value, blank lines included (configparser's empty_lines_in_values).
        let mut pending: Vec<String> = Vec::new();

        fn close(
            sections: &mut BTreeMap<String, Vec<Entry>>,
            current: &Option<String>,
            open: &mut Option<(usize, usize)>,
            pending: &mut Vec<String>,
        ) {
            if let (Some((index, _)), Some(name)) = (open.take(), current) {
                if let Some(entries) = sections.get_mut(name) {
                    entries[index].raw = pending.join("\n").trim_end().to_string();
                }
            }
            pending.clear();
        }

        // Editors on some systems save a byte-order mark; it is not part of the first line.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, raw_line) in text.split('\n').enumerate() {
            let line_no = n + 1;
            let line = raw_line.strip_suffix('\r').unwrap_or(raw_line);
            let stripped = line.trim();
            let is_comment = stripped.starts_with('#') || stripped.starts_with(';');
            if stripped.is_empty() || is_comment {
                // A truly empty line may belong to a multi-line value; a comment never does.
                if stripped.is_empty() && open.is_some() {
                    pending.push(String::new());
                }
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if let Some((_, open_indent)) = open {
                if indent > open_indent {
                    pending.push(stripped.to_string());
                    continue;
                }
            }
            close(&mut sections, &current, &mut open, &mut pending);

            if stripped.starts_with('[') {
                if let Some(end) = stripped.rfind(']').filter(|&end| end > 1) {
                    let name = stripped[1..end].to_string();
                    keep = wanted.contains(&name.as_str());
                    if keep {
                        if seen_headers.contains(&name) {
                            return Err(ParseError {
                                line: line_no,
                                section: Some(name.clone()),
                                message: format!("section [{name}] appears twice"),
                            });
                        }
                        seen_headers.push(name.clone());
                        sections.entry(name.clone()).or_default();
                    }
                    current = Some(name);
                    continue;
                }
            }
            if !keep {
                continue;
            }
            let section = current.clone().expect("kept lines are inside a section");
            // configparser's OPTCRE: the key ends at the first `=` or `:`.
            let Some(at) = stripped.find(['=', ':']) else {
                return Err(ParseError {
                    line: line_no,
                    section: Some(section),
                    message: format!(
                        "line {stripped:?} is neither `key = value` nor a section header"
                    ),
                });
            };
            let key = stripped[..at].trim_end().to_string();
            if key.is_empty() {
                return Err(ParseError {
                    line: line_no,
                    section: Some(section),
                    message: format!("line {stripped:?} has an empty key"),
                });
            }
            let value = stripped[at + 1..].trim().to_string();
            let entries = sections.get_mut(&section).expect("kept section exists");
            if entries.iter().any(|e| e.key == key) {
                return Err(ParseError {
                    line: line_no,
                    section: Some(section),
                    message: format!("{key}: defined twice in the section"),
                });
            }
            entries.push(Entry {
                key,
                raw: value.clone(),
                line: line_no,
            });
            open = Some((entries.len() - 1, indent));
            pending.push(value);
        }
        close(&mut sections, &current, &mut open, &mut pending);
        Ok(Ini { sections })
    }

    /// Whether the section was present in the file.
    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// The entries of a section, in file order (empty when the section is absent).
    pub fn entries(&self, section: &str) -> &[Entry] {
        self.sections.get(section).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The interpolated value of `key` in `section`, looking names up in the section, then in
    /// `[DEFAULT]`, then in `defaults` (PasteDeploy's `here` and `__file__`).
    pub fn get(
        &self,
        section: &str,
        key: &str,
        defaults: &BTreeMap<String, String>,
    ) -> Result<Option<String>, InterpolationError> {
        let Some(raw) = self.lookup(section, key, defaults) else {
            return Ok(None);
        };
        let mut out = String::new();
        self.interpolate(section, raw, defaults, 1, &mut out)?;
        Ok(Some(out))
    }

    fn lookup<'a>(
        &'a self,
        section: &str,
        key: &str,
        defaults: &'a BTreeMap<String, String>,
    ) -> Option<&'a str> {
        let find = |s: &str| {
            self.entries(s)
                .iter()
                .find(|e| e.key == key)
                .map(|e| e.raw.as_str())
        };
        find(section)
            .or_else(|| find("DEFAULT"))
            .or_else(|| defaults.get(key).map(String::as_str))
    }

    /// configparser's `BasicInterpolation._interpolate_some`.
    fn interpolate(
        &self,
        section: &str,
        mut rest: &str,
        defaults: &BTreeMap<String, String>,
        depth: usize,
        out: &mut String,
    ) -> Result<(), InterpolationError> {
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(InterpolationError {
                message: format!(
                    "interpolation deeper than {MAX_INTERPOLATION_DEPTH} levels (a reference loop?)"
                ),
            });
        }
        while let Some(p) = rest.find('%') {
            out.push_str(&rest[..p]);
            rest = &rest[p..];
            match rest.as_bytes().get(1) {
                Some(b'%') => {
                    out.push('%');
                    rest = &rest[2..];
                }
                Some(b'(') => {
                    let close = rest.find(')').filter(|&c| c > 2);
                    let Some(close) = close.filter(|&c| rest.as_bytes().get(c + 1) == Some(&b's'))
                    else {
                        return Err(InterpolationError {
                            message: format!("bad interpolation variable reference {rest:?}"),
                        });
                    };
                    let name = &rest[2..close];
                    rest = &rest[close + 2..];
                    let Some(value) = self.lookup(section, name, defaults) else {
                        return Err(InterpolationError {
                            message: format!("%({name})s refers to {name:?}, which is not defined in [{section}] nor in [DEFAULT]"),
                        });
                    };
                    if value.contains('%') {
                        self.interpolate(section, value, defaults, depth + 1, out)?;
                    } else {
                        out.push_str(value);
                    }
                }
                _ => {
                    return Err(InterpolationError {
                        message: format!("'%' must be followed by '%' or '(', found: {rest:?}"),
                    });
                }
            }
        }
        out.push_str(rest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Ini {
        Ini::parse(text, &["DEFAULT", "app:main"]).unwrap()
    }

    fn get(ini: &Ini, key: &str) -> Result<Option<String>, InterpolationError> {
        let defaults = BTreeMap::from([("here".to_string(), "/etc/kinto".to_string())]);
        ini.get("app:main", key, &defaults)
    }

    #[test]
    fn multi_line_values_comments_and_delimiters() {
        let ini = parse(
            "# leading comment\n[app:main]\nincludes = a\n    b\n\n  ; a comment inside\n    c\n\nother: x = y\n; inline ; kept\nk = v ; not a comment\n",
        );
        assert_eq!(get(&ini, "includes").unwrap().unwrap(), "a\nb\n\nc");
        assert_eq!(get(&ini, "other").unwrap().unwrap(), "x = y");
        assert_eq!(get(&ini, "k").unwrap().unwrap(), "v ; not a comment");
        assert_eq!(get(&ini, "missing").unwrap(), None);
    }

    #[test]
    fn interpolation_from_section_default_and_here() {
        let ini = parse(
            "[DEFAULT]\ndb = kinto\nurl = postgresql://localhost/%(db)s\n[app:main]\ndb = prod\nstorage_url = %(url)s\nfile = %(here)s/kinto.db\npct = 100%%\n",
        );
        // configparser interpolates a DEFAULT value in the context of the section asking for it.
        assert_eq!(
            get(&ini, "storage_url").unwrap().unwrap(),
            "postgresql://localhost/prod"
        );
        assert_eq!(get(&ini, "file").unwrap().unwrap(), "/etc/kinto/kinto.db");
        assert_eq!(get(&ini, "pct").unwrap().unwrap(), "100%");
    }

    #[test]
    fn interpolation_errors() {
        let ini = parse("[app:main]\na = 5%\nb = %(nope)s\nc = %(c)s\nd = %(x)d\n");
        assert!(get(&ini, "a")
            .unwrap_err()
            .message
            .contains("must be followed"));
        assert!(get(&ini, "b").unwrap_err().message.contains("\"nope\""));
        assert!(get(&ini, "c").unwrap_err().message.contains("deeper"));
        assert!(get(&ini, "d")
            .unwrap_err()
            .message
            .contains("bad interpolation"));
    }

    #[test]
    fn other_sections_are_not_checked() {
        let text = "[uwsgi]\nhttp-socket = :1\nhttp-socket = :2\nnot a key line\npidfile = %d%n.pid\n[app:main]\nk = v\n";
        let ini = parse(text);
        assert!(!ini.has_section("uwsgi"));
        assert_eq!(ini.entries("app:main").len(), 1);
    }

    #[test]
    fn errors_in_read_sections() {
        let err = Ini::parse("[app:main]\nk = 1\nk = 2\n", &["app:main"]).unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (3, "k: defined twice in the section")
        );
        let err = Ini::parse("[app:main]\njunk\n", &["app:main"]).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.section.as_deref(), Some("app:main"));
        let err = Ini::parse("[app:main]\n[app:main]\n", &["app:main"]).unwrap_err();
        assert!(err.message.contains("twice"));
    }

    #[test]
    fn byte_order_mark_and_crlf() {
        let ini = parse("\u{feff}[app:main]\r\nk = v\r\n  w\r\n");
        assert_eq!(get(&ini, "k").unwrap().unwrap(), "v\nw");
    }

    #[test]
    fn keys_keep_their_case() {
        let ini = parse("[app:main]\nKey = 1\nkey = 2\n");
        assert_eq!(get(&ini, "Key").unwrap().unwrap(), "1");
        assert_eq!(get(&ini, "key").unwrap().unwrap(), "2");
    }
}
