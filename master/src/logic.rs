//! uWSGI's configuration logic and includes (SERVER.md 1.2 rules 11-12), expanded over the lines of
//! a section before options are applied: `ini`/`include`/`inherit` splice another file's section,
//! `if-*` ... `endif` keep or drop a block, `for*` ... `endfor` repeat one with `%(_)` set.

use crate::dialect::{self, Magic};
use std::path::Path;

/// Deepest include chain accepted (a file including itself ends here, not in a stack overflow).
const MAX_DEPTH: usize = 16;

/// Expands the entries of one section.
pub fn expand(
    entries: Vec<(String, String)>,
    section: &str,
    depth: usize,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let (key, value) = (&entries[i].0, &entries[i].1);
        match key.as_str() {
            "ini" | "include" | "inherit" => {
                out.extend(include(key, value, section, depth)?);
                i += 1;
            }
            k if is_if(k) => {
                let end = block_end(&entries, i, is_if, &["endif", "end-if"])?;
                let argument = dialect::substitute_files(&dialect::substitute_env(value));
                if let Some(underscore) = condition(k, &argument, &out)? {
                    let block = with_underscore(&entries[i + 1..end], &underscore);
                    out.extend(expand(block, section, depth)?);
                }
                i = end + 1;
            }
            "for" | "for-glob" | "for-times" => {
                let end = block_end(&entries, i, is_for, &["endfor", "end-for"])?;
                let argument = dialect::substitute_files(&dialect::substitute_env(value));
                for item in items(key, &argument)? {
                    let block = with_underscore(&entries[i + 1..end], &item);
                    out.extend(expand(block, section, depth)?);
                }
                i = end + 1;
            }
            // A stray end marker closes nothing (uWSGI ignores it too).
            "endif" | "end-if" | "endfor" | "end-for" => i += 1,
            _ => {
                out.push(entries[i].clone());
                i += 1;
            }
        }
    }
    Ok(out)
}

fn is_if(key: &str) -> bool {
    matches!(
        key,
        "if-env"
            | "if-not-env"
            | "if-exists"
            | "if-not-exists"
            | "if-file"
            | "if-not-file"
            | "if-dir"
            | "if-not-dir"
            | "if-opt"
            | "if-not-opt"
            | "if-reload"
            | "if-not-reload"
    )
}

fn is_for(key: &str) -> bool {
    matches!(key, "for" | "for-glob" | "for-times")
}

/// Index of the end marker closing the block opened at `start` (nested blocks of the same family
/// are skipped).
fn block_end(
    entries: &[(String, String)],
    start: usize,
    opens: fn(&str) -> bool,
    closes: &[&str],
) -> Result<usize, String> {
    let mut nesting = 0;
    for (j, (k, _)) in entries.iter().enumerate().skip(start + 1) {
        if opens(k) {
            nesting += 1;
        } else if closes.contains(&k.as_str()) {
            if nesting == 0 {
                return Ok(j);
            }
            nesting -= 1;
        }
    }
    Err(format!(
        "option \"{}\" has no matching {}",
        entries[start].0, closes[0]
    ))
}

/// Evaluates an `if-*` line: `Some(value of %(_))` when the block is kept.
fn condition(
    key: &str,
    argument: &str,
    so_far: &[(String, String)],
) -> Result<Option<String>, String> {
    let negated = key.contains("-not-");
    let (holds, underscore) = match key {
        "if-env" | "if-not-env" => match argument.split_once('=') {
            Some((name, expected)) => {
                let value = std::env::var(name).unwrap_or_default();
                (value == expected, value)
            }
            None => match std::env::var(argument) {
                Ok(value) if !value.is_empty() => (true, value),
                _ => (false, String::new()),
            },
        },
        "if-exists" | "if-not-exists" => (Path::new(argument).exists(), argument.to_string()),
        "if-file" | "if-not-file" => (Path::new(argument).is_file(), argument.to_string()),
        "if-dir" | "if-not-dir" => (Path::new(argument).is_dir(), argument.to_string()),
        "if-opt" | "if-not-opt" => {
            let (name, expected) = match argument.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (argument.trim(), None),
            };
            let canonical =
                |k: &str| crate::registry::lookup(k).map_or(k.to_string(), |s| s.name.to_string());
            let found = so_far
                .iter()
                .rev()
                .find(|(k, _)| canonical(k) == canonical(name))
                .map(|(_, v)| v.clone());
            match (found, expected) {
                (Some(v), Some(e)) => (v == e, v),
                (Some(v), None) => (true, v),
                (None, _) => (false, String::new()),
            }
        }
        "if-reload" | "if-not-reload" => (
            std::env::var("KINTO_RELOADS").is_ok_and(|n| n != "0"),
            String::new(),
        ),
        other => return Err(format!("unknown configuration logic option \"{other}\"")),
    };
    Ok((holds != negated).then_some(underscore))
}

/// The items a `for*` line iterates over.
fn items(key: &str, argument: &str) -> Result<Vec<String>, String> {
    Ok(match key {
        "for" => argument.split_whitespace().map(str::to_string).collect(),
        "for-times" => {
            let n: u64 = argument
                .trim()
                .parse()
                .map_err(|_| format!("invalid value for option \"for-times\": {argument}"))?;
            (1..=n).map(|i| i.to_string()).collect()
        }
        _ => glob(argument),
    })
}

/// Matches `*` and `?` in the last path component (uWSGI's `for-glob` over a directory).
fn glob(pattern: &str) -> Vec<String> {
    let path = Path::new(pattern);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| wildcard(name.as_bytes(), e.file_name().to_string_lossy().as_bytes()))
        .map(|e| {
            if path.parent().is_some_and(|d| !d.as_os_str().is_empty()) {
                dir.join(e.file_name()).to_string_lossy().into_owned()
            } else {
                e.file_name().to_string_lossy().into_owned()
            }
        })
        .collect();
    out.sort();
    out
}

fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], text) || (!text.is_empty() && wildcard(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => wildcard(&pattern[1..], &text[1..]),
        _ => false,
    }
}

fn with_underscore(block: &[(String, String)], value: &str) -> Vec<(String, String)> {
    block
        .iter()
        .map(|(k, v)| (k.replace("%(_)", value), v.replace("%(_)", value)))
        .collect()
}

/// `ini`/`include`/`inherit = PATH[:SECTION]`: the section of another file, with that file's own
/// magic variables.
fn include(
    option: &str,
    value: &str,
    section: &str,
    depth: usize,
) -> Result<Vec<(String, String)>, String> {
    if depth >= MAX_DEPTH {
        return Err(format!(
            "option \"{option}\": too many nested includes ({value})"
        ));
    }
    let value = dialect::substitute_files(&dialect::substitute_env(value));
    let (path, wanted) = match value.rsplit_once(':') {
        Some((p, s)) if !s.is_empty() && !s.contains('/') => (p.to_string(), s.to_string()),
        _ => (value.clone(), section.to_string()),
    };
    let absolute = crate::config::absolute(Path::new(&path));
    let text = std::fs::read_to_string(&absolute).map_err(|e| {
        format!(
            "option \"{option}\": unable to read {}: {e}",
            absolute.display()
        )
    })?;
    let magic = Magic {
        path: absolute.clone(),
        given: path.clone(),
        section: if wanted == section {
            String::new()
        } else {
            wanted.clone()
        },
    };
    let entries = dialect::section_entries(&dialect::substitute_magic(&text, &magic), &wanted)
        .ok_or_else(|| {
            format!(
                "option \"{option}\": *** WARNING: Can't find section \"{wanted}\" in INI configuration file {} ***",
                absolute.display()
            )
        })?;
    expand(entries, &wanted, depth + 1)
}

/// For tests: a fresh directory.
#[cfg(test)]
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("logic-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        dialect::section_entries(text, "uwsgi").unwrap()
    }

    fn keys_values(entries: &[(String, String)]) -> Vec<String> {
        entries.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn conditions() {
        std::env::set_var("LOGIC_TEST_SET", "yes");
        let e = expand(
            pairs(
                "[uwsgi]\nif-env = LOGIC_TEST_SET\na = %(_)\nendif\nif-not-env = LOGIC_TEST_SET\nb = 1\nendif\nif-env = LOGIC_TEST_UNSET_XYZ\nc = 1\nendif\nif-env = LOGIC_TEST_SET=yes\nd = 1\nend-if\nprocesses = 2\nif-opt = workers=2\ne = 1\nendif\nif-not-opt = harakiri\nf = 1\nendif\nif-exists = /\ng = 1\nendif\nif-dir = /nonexistent-dir\nh = 1\nendif\n",
            ),
            "uwsgi",
            0,
        )
        .unwrap();
        assert_eq!(
            keys_values(&e),
            vec!["a=yes", "d=1", "processes=2", "e=1", "f=1", "g=1"]
        );
        assert!(expand(pairs("[uwsgi]\nif-env = X\na = 1\n"), "uwsgi", 0)
            .unwrap_err()
            .contains("no matching endif"));
    }

    #[test]
    fn loops() {
        let dir = scratch("loops");
        for f in ["a.conf", "b.conf", "c.txt"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let text = format!(
            "[uwsgi]\nfor = x y\nenv = V_%(_)=%(_)\nendfor\nfor-times = 2\nn = %(_)\nend-for\nfor-glob = {}/*.conf\ng = %(_)\nendfor\n",
            dir.display()
        );
        let e = expand(pairs(&text), "uwsgi", 0).unwrap();
        let d = dir.display();
        assert_eq!(
            keys_values(&e),
            vec![
                "env=V_x=x".to_string(),
                "env=V_y=y".to_string(),
                "n=1".to_string(),
                "n=2".to_string(),
                format!("g={d}/a.conf"),
                format!("g={d}/b.conf"),
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn includes() {
        let dir = scratch("includes");
        std::fs::write(
            dir.join("base.ini"),
            "[uwsgi]\nprocesses = 2\nbase-dir = %d\n[other]\nharakiri = 5\n",
        )
        .unwrap();
        std::fs::write(dir.join("loop.ini"), "[uwsgi]\ninclude = %p\n").unwrap();
        let text = format!(
            "[uwsgi]\nini = {d}/base.ini\nprocesses = 3\ninherit = {d}/base.ini:other\n",
            d = dir.display()
        );
        let e = expand(pairs(&text), "uwsgi", 0).unwrap();
        assert_eq!(
            keys_values(&e),
            vec![
                "processes=2".to_string(),
                format!("base-dir={}/", dir.display()),
                "processes=3".to_string(),
                "harakiri=5".to_string(),
            ]
        );
        let looping = format!("[uwsgi]\ninclude = {}/loop.ini\n", dir.display());
        let looping = dialect::substitute_magic(&looping, &Magic::default());
        assert!(expand(pairs(&looping), "uwsgi", 0)
            .unwrap_err()
            .contains("too many nested includes"));
        assert!(
            expand(pairs("[uwsgi]\ninclude = /nonexistent/x.ini\n"), "uwsgi", 0)
                .unwrap_err()
                .starts_with("option \"include\": unable to read /nonexistent/x.ini")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
