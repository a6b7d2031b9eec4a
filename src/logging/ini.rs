//! The slice of Python's `configparser` that `logging.config.fileConfig` relies on: sections,
//! `key = value` / `key: value`, indented continuation lines, `#`/`;` comment lines, keys
//! case-insensitive, and `%(name)s` interpolation from the section and the defaults `here` and
//! `__file__` (as PasteDeploy passes them).

use std::collections::BTreeMap;

/// Sections by name (case-sensitive), each a map of lower-cased keys to raw values.
#[derive(Debug, Default, Clone)]
pub struct Ini {
    sections: BTreeMap<String, BTreeMap<String, String>>,
    defaults: BTreeMap<String, String>,
}

impl Ini {
    /// Parses `text`; `defaults` are the interpolation defaults (`here`, `__file__`).
    pub fn parse(text: &str, defaults: &[(&str, &str)]) -> Result<Ini, String> {
        let mut ini = Ini {
            defaults: defaults
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Ini::default()
        };
        let mut section: Option<String> = None;
        let mut last_key: Option<String> = None;
        // Only the logging sections are read (and checked): the same file holds `[uwsgi]`, whose
        // dialect configparser would reject, and `[app:main]`, which the settings read.
        let mut wanted = false;
        for (number, line) in text.lines().enumerate() {
            let header = line
                .trim()
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'));
            if let Some(name) = header {
                wanted = is_logging_section(name.trim());
            }
            if !wanted {
                continue;
            }
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
                // A blank line does not end a value in Python only if indented; keep it simple
                // and end continuation on comments, continue on blank lines.
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let (Some(s), Some(k)) = (&section, &last_key) {
                    let value = ini.sections.get_mut(s).and_then(|m| m.get_mut(k));
                    if let Some(value) = value {
                        value.push('\n');
                        value.push_str(trimmed);
                        continue;
                    }
                }
            }
            if let Some(name) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = Some(name.trim().to_owned());
                ini.sections.entry(name.trim().to_owned()).or_default();
                last_key = None;
                continue;
            }
            let Some(current) = &section else {
                continue;
            };
            let split = trimmed
                .find(['=', ':'])
                .ok_or_else(|| format!("line {}: expected 'key = value'", number + 1))?;
            let key = trimmed[..split].trim().to_lowercase();
            let value = trimmed[split + 1..].trim().to_owned();
            if let Some(map) = ini.sections.get_mut(current) {
                map.insert(key.clone(), value);
            }
            last_key = Some(key);
        }
        Ok(ini)
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(name)
    }

    /// The value as written (no interpolation): for `format` and `datefmt`, which `fileConfig`
    /// reads raw.
    pub fn raw(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }

    /// The value with `%(name)s` replaced from the section or the defaults and `%%` by `%`.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<String>, String> {
        let Some(raw) = self.raw(section, key) else {
            return Ok(None);
        };
        self.interpolate(section, raw, 0).map(Some)
    }

    fn interpolate(&self, section: &str, raw: &str, depth: usize) -> Result<String, String> {
        if depth > 10 {
            return Err(format!("[{section}]: interpolation too deep in {raw:?}"));
        }
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find('%') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(r) = after.strip_prefix('%') {
                out.push('%');
                rest = r;
            } else if let Some(r) = after.strip_prefix('(') {
                let close = r
                    .find(")s")
                    .ok_or_else(|| format!("[{section}]: bad interpolation in {raw:?}"))?;
                let name = r[..close].to_lowercase();
                let value = self
                    .sections
                    .get(section)
                    .and_then(|m| m.get(&name))
                    .or_else(|| self.defaults.get(&name))
                    .ok_or_else(|| format!("[{section}]: no value for %({name})s in {raw:?}"))?;
                out.push_str(&self.interpolate(section, value, depth + 1)?);
                rest = &r[close + 2..];
            } else {
                return Err(format!(
                    "[{section}]: '%' must be followed by '%' or '(' in {raw:?}"
                ));
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn is_logging_section(name: &str) -> bool {
    matches!(name, "loggers" | "handlers" | "formatters")
        || ["logger_", "handler_", "formatter_"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// Splits a comma-separated list (`keys = root, kinto`), dropping empty items.
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_continuations_and_interpolation() {
        let ini = Ini::parse(
            "[uwsgi]\nnot configparser syntax\n[formatter_x]\nformat = a\n    b\n# comment\n[handler_file]\nClass: FileHandler\nargs = ('%(here)s/kinto.log', 'a')\nformat = %(asctime)s 100%%\n",
            &[("here", "/srv")],
        )
        .unwrap();
        assert!(!ini.has_section("uwsgi"));
        assert_eq!(ini.raw("formatter_x", "format"), Some("a\nb"));
        assert!(Ini::parse("[loggers]\nkeys root\n", &[]).is_err());
        assert_eq!(ini.raw("handler_file", "class"), Some("FileHandler"));
        assert_eq!(
            ini.get("handler_file", "args").unwrap().unwrap(),
            "('/srv/kinto.log', 'a')"
        );
        assert_eq!(ini.raw("handler_file", "format"), Some("%(asctime)s 100%%"));
        assert!(
            ini.get("handler_file", "format").is_err(),
            "asctime is no default"
        );
        assert_eq!(list(" root, kinto ,"), ["root", "kinto"]);
    }
}
