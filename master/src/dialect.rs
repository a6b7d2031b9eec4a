//! uWSGI's ini dialect (SERVER.md 1.2, 1.3): its own line reader and its four substitution passes.
//!
//! This is deliberately not configparser: no inline comments, no continuation lines, quotes kept,
//! `%x` magic variables over the whole text, `$(ENV)`, `@(file)` and `%(option + 1)` references.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The values of the magic `%c` variables for one configuration file (pass a).
#[derive(Debug, Clone, Default)]
pub struct Magic {
    /// `%p`: absolute path of the file.
    pub path: PathBuf,
    /// `%o`: the path as given on the command line.
    pub given: String,
    /// `%x`: the section requested with `:SECTION`, else empty.
    pub section: String,
}

impl Magic {
    fn value(&self, c: char) -> Option<String> {
        let path = self.path.to_string_lossy().into_owned();
        let dir = self
            .path
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = self
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let c = match c {
            // Upper-case forms are "for the first configuration file read": we read only one.
            'O' | 'D' | 'S' | 'P' | 'C' | 'E' | 'N' | 'X' | 'I' | 'J' => c.to_ascii_lowercase(),
            other => other,
        };
        Some(match c {
            'p' => path,
            'd' => {
                if dir.ends_with('/') {
                    dir
                } else {
                    format!("{dir}/")
                }
            }
            's' => file,
            'n' => match file.rfind('.') {
                Some(i) => file[..i].to_string(),
                None => file,
            },
            'e' => match file.rfind('.') {
                Some(i) => file[i + 1..].to_string(),
                None => String::new(),
            },
            'c' => Path::new(&dir)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            '0'..='9' => {
                let n = c as usize - '0' as usize;
                dir.split('/')
                    .filter(|s| !s.is_empty())
                    .nth(n)
                    .unwrap_or("")
                    .to_string()
            }
            'o' => self.given.clone(),
            'x' => self.section.clone(),
            'v' => std::env::current_dir()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
            'h' => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            'k' => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .to_string(),
            'u' => nix::unistd::getuid().to_string(),
            'U' => nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_default(),
            'g' => nix::unistd::getgid().to_string(),
            'G' => nix::unistd::Group::from_gid(nix::unistd::getgid())
                .ok()
                .flatten()
                .map(|g| g.name)
                .unwrap_or_default(),
            't' => unix_now().as_secs().to_string(),
            'T' => unix_now().as_micros().to_string(),
            'V' => env!("CARGO_PKG_VERSION").to_string(),
            'b' => std::env::current_exe()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            'j' => format!("{:08X}", djb33x(path.as_bytes())),
            'i' => {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(&self.path)
                    .map(|m| m.ino().to_string())
                    .unwrap_or_default()
            }
            '[' => "\x1b".to_string(),
            _ => return None,
        })
    }
}

fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// uWSGI's string hash (`uwsgi_str_djb33x`), used by `%j`.
fn djb33x(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(5381u32, |h, &b| h.wrapping_mul(33) ^ u32::from(b))
}

/// Pass (a): `%c` magic variables over the whole text. `%%` is `%`, `%(` is kept for pass (d),
/// and every other `%c` is deleted, both characters (uWSGI does so; `x%zy` reads `xy`).
pub fn substitute_magic(text: &str, magic: &Magic) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            None => out.push('%'),
            Some('%') => out.push('%'),
            Some('(') => out.push_str("%("),
            Some(c) => {
                if let Some(v) = magic.value(c) {
                    out.push_str(&v);
                }
            }
        }
    }
    out
}

/// Lines of the requested section, as `(key, value)` in file order; `None` when no such section.
/// Several blocks with the same name all count.
pub fn section_entries(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut found = false;
    let mut inside = false;
    let mut entries = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r').trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            inside = &line[1..line.len() - 1] == section;
            found |= inside;
            continue;
        }
        if !inside {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim_matches([' ', '\t']), v.trim_matches([' ', '\t'])),
            None => (line, ""),
        };
        entries.push((key.to_string(), value.to_string()));
    }
    found.then_some(entries)
}

/// Pass (b): `$(NAME)` becomes the environment variable, or stays as written when unset.
pub fn substitute_env(value: &str) -> String {
    substitute_parens(value, '$', |name| std::env::var(name).ok())
}

/// Pass (c): `@(PATH)` becomes the file's content without one trailing newline.
pub fn substitute_files(value: &str) -> String {
    substitute_parens(value, '@', |path| {
        std::fs::read_to_string(path).ok().map(|mut s| {
            if s.ends_with('\n') {
                s.pop();
            }
            s
        })
    })
}

fn substitute_parens(value: &str, sigil: char, lookup: impl Fn(&str) -> Option<String>) -> String {
    let opener = format!("{sigil}(");
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find(&opener) {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                match lookup(&after[..end]) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The names `%(...)` may refer to: every key's first value, plus `set`/`set-placeholder` names.
pub fn reference_table(entries: &[(String, String)]) -> HashMap<String, String> {
    let mut table = HashMap::new();
    for (key, value) in entries {
        if key == "set" || key == "set-placeholder" {
            if let Some((name, v)) = value.split_once('=') {
                table
                    .entry(name.trim().to_string())
                    .or_insert_with(|| v.trim().to_string());
            }
        }
        table.entry(key.clone()).or_insert_with(|| value.clone());
    }
    table
}

/// Pass (d) on one value: `%(expr)` references. Records every name referred to in `used`.
/// Unknown names leave the reference literal (`%(here)s` stays `%(here)s`).
pub fn substitute_references(
    value: &str,
    table: &HashMap<String, String>,
    used: &mut HashSet<String>,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) => {
                let expr = &after[..end];
                for token in expr.split_whitespace() {
                    used.insert(token.trim_end_matches(['+', '-']).to_string());
                }
                match evaluate(expr, table) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Evaluates a reference: names or integer literals; consecutive values concatenate; `+ - * /`
/// between two values is 64-bit integer arithmetic (division by zero gives 0); `++`/`--` (alone or
/// as a suffix) add or subtract one.
fn evaluate(expr: &str, table: &HashMap<String, String>) -> Option<String> {
    let mut acc: Option<String> = None;
    let mut op: Option<char> = None;
    let tokens: Vec<&str> = expr.split_whitespace().collect();
    if tokens.is_empty() {
        return None;
    }
    let step = |acc: &mut Option<String>, delta: i64| -> Option<()> {
        let v = atoi_signed(acc.as_deref()?).wrapping_add(delta);
        *acc = Some(v.to_string());
        Some(())
    };
    for token in tokens {
        match token {
            "+" | "-" | "*" | "/" => {
                acc.as_ref()?;
                op = token.chars().next();
                continue;
            }
            "++" => {
                step(&mut acc, 1)?;
                continue;
            }
            "--" => {
                step(&mut acc, -1)?;
                continue;
            }
            _ => {}
        }
        let (name, suffix) = if let Some(n) = token.strip_suffix("++") {
            (n, 1)
        } else if let Some(n) = token.strip_suffix("--") {
            (n, -1)
        } else {
            (token, 0)
        };
        let value = match table.get(name) {
            Some(v) => v.clone(),
            None if name.parse::<i64>().is_ok() => name.to_string(),
            None => return None,
        };
        acc = Some(match (acc.take(), op.take()) {
            (Some(prev), Some(o)) => {
                let (a, b) = (atoi_signed(&prev), atoi_signed(&value));
                let r = match o {
                    '+' => a.wrapping_add(b),
                    '-' => a.wrapping_sub(b),
                    '*' => a.wrapping_mul(b),
                    _ => a.checked_div(b).unwrap_or(0),
                };
                r.to_string()
            }
            (Some(prev), None) => prev + &value,
            (None, _) => value,
        });
        if suffix != 0 {
            step(&mut acc, suffix)?;
        }
    }
    if op.is_some() {
        return None;
    }
    acc
}

/// C `atoi` with a sign: leading blanks, optional sign, leading digits; junk ignored.
pub fn atoi_signed(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.wrapping_mul(10).wrapping_add(i64::from(d - b'0'))
        });
    if neg {
        -n
    } else {
        n
    }
}

/// uWSGI's boolean: `false`, `off`, `no` (any case) and `0` are false; anything else is true.
pub fn parse_bool(value: &str) -> bool {
    !matches!(
        value.to_ascii_lowercase().as_str(),
        "false" | "off" | "no" | "0"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn magic() -> Magic {
        Magic {
            path: PathBuf::from("/etc/kinto/kinto.ini"),
            given: "config/kinto.ini".into(),
            section: String::new(),
        }
    }

    #[test]
    fn magic_variables() {
        let m = magic();
        assert_eq!(substitute_magic("%d%n.pid", &m), "/etc/kinto/kinto.pid");
        assert_eq!(
            substitute_magic("%p %s %e %c", &m),
            "/etc/kinto/kinto.ini kinto.ini ini kinto"
        );
        assert_eq!(
            substitute_magic("%0/%1 %o", &m),
            "etc/kinto config/kinto.ini"
        );
        assert_eq!(
            substitute_magic("x%zy 100%% %(here)s", &m),
            "xy 100% %(here)s"
        );
        assert_eq!(substitute_magic("%[", &m), "\x1b");
        assert_eq!(substitute_magic("tail%", &m), "tail%");
    }

    #[test]
    fn lines_sections_and_comments() {
        let text = "[uwsgi]\nprocesses = 2\r\n  # comment\n; other\nkey = v ; x\nquoted = \"abc\"\n  indented\n[app:main]\nprocesses = 9\n[uwsgi]\nprocesses=4\n";
        let e = section_entries(text, "uwsgi").unwrap();
        let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            vec![
                ("processes", "2"),
                ("key", "v ; x"),
                ("quoted", "\"abc\""),
                ("indented", ""),
                ("processes", "4")
            ]
        );
        assert!(section_entries(text, "nope").is_none());
    }

    #[test]
    fn environment_and_files() {
        std::env::set_var("DIALECT_TEST_VAR", "val");
        assert_eq!(substitute_env("a$(DIALECT_TEST_VAR)b"), "avalb");
        assert_eq!(
            substitute_env("$(DIALECT_UNSET_VAR)"),
            "$(DIALECT_UNSET_VAR)"
        );
        let dir = std::env::temp_dir().join(format!("dialect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("v.txt");
        std::fs::write(&f, "content\n").unwrap();
        assert_eq!(
            substitute_files(&format!("<@({})>", f.display())),
            "<content>"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn references_and_arithmetic() {
        let entries = vec![
            ("procs".to_string(), "2".to_string()),
            ("port".to_string(), "8000".to_string()),
            ("set".to_string(), "base=10".to_string()),
            ("procs".to_string(), "7".to_string()),
        ];
        let t = reference_table(&entries);
        let mut used = HashSet::new();
        let r = |v: &str, used: &mut HashSet<String>| substitute_references(v, &t, used);
        assert_eq!(r("%(procs + 1)", &mut used), "3");
        assert_eq!(r("%(port)s", &mut used), "8000s");
        assert_eq!(r("%(here)s", &mut used), "%(here)s");
        assert_eq!(r("%(base * procs)", &mut used), "20");
        assert_eq!(r("%(base / 0)", &mut used), "0");
        assert_eq!(r("%(procs port)", &mut used), "28000");
        assert_eq!(r("%(procs++)", &mut used), "3");
        assert_eq!(r("%(base --)", &mut used), "9");
        assert!(used.contains("procs") && used.contains("base") && used.contains("here"));
    }

    #[test]
    fn scalars() {
        assert!(
            !parse_bool("Off") && !parse_bool("0") && !parse_bool("NO") && !parse_bool("false")
        );
        assert!(parse_bool("") && parse_bool("true") && parse_bool("yes") && parse_bool("2"));
        assert_eq!(atoi_signed("32768g"), 32768);
        assert_eq!(atoi_signed("-5"), -5);
        assert_eq!(atoi_signed("abc"), 0);
    }
}
