//! `log-format` (6.5): a request line template of `%(name)` variables, parsed once when the worker
//! starts and rendered for each request. Empty values and unknown names print `-`.

use crate::log::{cgi_vars, ctime, local_time, unix_seconds, RequestRecord};
use crate::request::Version;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// One variable of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Var {
    Uri,
    Method,
    Proto,
    Addr,
    Header(&'static str),
    User,
    Status,
    Size,
    Rsize,
    Hsize,
    Cl,
    Msecs,
    Micros,
    Secs,
    Time,
    Tmsecs,
    Tmicros,
    Epoch,
    Ltime,
    Ctime,
    Pid,
    Wid,
    Zero,
    Headers,
    Vars,
    Pktsize,
    Switches,
    Memory {
        rss: bool,
        megabytes: bool,
    },
    WriteErrors,
    ReadErrors,
    /// `var.NAME`: a CGI variable of 6.4.
    Cgi(String),
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A parsed `log-format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    pieces: Vec<Piece>,
}

fn variable(name: &str) -> Var {
    match name {
        "uri" => Var::Uri,
        "method" => Var::Method,
        "proto" => Var::Proto,
        "addr" => Var::Addr,
        "host" => Var::Header("host"),
        "uagent" => Var::Header("user-agent"),
        "referer" => Var::Header("referer"),
        "user" => Var::User,
        "status" => Var::Status,
        "size" => Var::Size,
        "rsize" => Var::Rsize,
        "hsize" => Var::Hsize,
        "cl" => Var::Cl,
        "msecs" => Var::Msecs,
        "micros" => Var::Micros,
        "secs" => Var::Secs,
        "time" => Var::Time,
        "tmsecs" => Var::Tmsecs,
        "tmicros" => Var::Tmicros,
        "epoch" => Var::Epoch,
        // Without a `log-date` format, `ftime` is `ltime`.
        "ltime" | "ftime" => Var::Ltime,
        "ctime" => Var::Ctime,
        "pid" => Var::Pid,
        "wid" => Var::Wid,
        "core" | "modifier1" | "modifier2" => Var::Zero,
        "headers" => Var::Headers,
        "vars" => Var::Vars,
        "pktsize" => Var::Pktsize,
        "switches" => Var::Switches,
        "rss" => Var::Memory {
            rss: true,
            megabytes: false,
        },
        "vsz" => Var::Memory {
            rss: false,
            megabytes: false,
        },
        "rssM" => Var::Memory {
            rss: true,
            megabytes: true,
        },
        "vszM" => Var::Memory {
            rss: false,
            megabytes: true,
        },
        "werr" | "ioerr" => Var::WriteErrors,
        "rerr" => Var::ReadErrors,
        _ => match name.strip_prefix("var.") {
            Some(cgi) => Var::Cgi(cgi.to_string()),
            None => Var::Unknown,
        },
    }
}

impl LogFormat {
    /// Parses a template; text outside `%(...)` is kept as is.
    pub fn parse(template: &str) -> LogFormat {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("%(") {
            let Some(len) = rest[start + 2..].find(')') else {
                break;
            };
            text.push_str(&rest[..start]);
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(variable(&rest[start + 2..start + 2 + len])));
            rest = &rest[start + 2 + len + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        LogFormat { pieces }
    }

    /// Appends the line for `record` to `out` (no newline).
    pub fn render(&self, out: &mut Vec<u8>, record: &RequestRecord) {
        let req = record.request;
        let start = record.start.duration_since(UNIX_EPOCH).unwrap_or_default();
        for piece in &self.pieces {
            let var = match piece {
                Piece::Text(text) => {
                    out.extend_from_slice(text.as_bytes());
                    continue;
                }
                Piece::Var(var) => var,
            };
            let before = out.len();
            let _ = match var {
                Var::Uri => write!(out, "{}", req.target),
                Var::Method => write!(out, "{}", req.method),
                Var::Proto => write!(
                    out,
                    "{}",
                    match req.version {
                        Version::Http10 => "HTTP/1.0",
                        Version::Http11 => "HTTP/1.1",
                    }
                ),
                Var::Addr => write!(out, "{}", record.addr),
                Var::Header(name) => write!(out, "{}", req.header(name).unwrap_or("")),
                Var::User | Var::Unknown => Ok(()),
                Var::Status => write!(out, "{}", record.status),
                Var::Size => write!(out, "{}", record.head_bytes as u64 + record.body_bytes),
                Var::Rsize => write!(out, "{}", record.body_bytes),
                Var::Hsize => write!(out, "{}", record.head_bytes),
                Var::Cl => write!(
                    out,
                    "{}",
                    req.header("content-length")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                ),
                Var::Msecs => write!(out, "{}", record.elapsed.as_millis()),
                Var::Micros => write!(out, "{}", record.elapsed.as_micros()),
                Var::Secs => write!(out, "{:.6}", record.elapsed.as_secs_f64()),
                Var::Time => write!(out, "{}", start.as_secs()),
                Var::Tmsecs => write!(out, "{}", start.as_millis()),
                Var::Tmicros => write!(out, "{}", start.as_micros()),
                Var::Epoch => write!(out, "{}", unix_seconds(SystemTime::now())),
                Var::Ltime => write!(out, "{}", local_time(unix_seconds(record.start))),
                Var::Ctime => out.write_all(&ctime(unix_seconds(record.start))),
                Var::Pid => write!(out, "{}", record.pid),
                Var::Wid => write!(out, "{}", record.worker_id),
                Var::Zero => write!(out, "0"),
                Var::Headers => write!(out, "{}", record.header_count),
                Var::Vars => write!(
                    out,
                    "{}",
                    cgi_vars(req, record.server_name, record.server_port).0
                ),
                Var::Pktsize => write!(
                    out,
                    "{}",
                    cgi_vars(req, record.server_name, record.server_port).1
                ),
                Var::Switches => write!(out, "{}", record.switches),
                Var::Memory { rss, megabytes } => {
                    let (vsz_bytes, rss_bytes) = crate::log::memory();
                    let bytes = if *rss { rss_bytes } else { vsz_bytes };
                    if *megabytes {
                        write!(out, "{}", bytes / (1024 * 1024))
                    } else {
                        write!(out, "{bytes}")
                    }
                }
                Var::WriteErrors => write!(out, "{}", u8::from(record.write_failed)),
                Var::ReadErrors => write!(out, "0"),
                Var::Cgi(name) => write!(out, "{}", cgi_value(record, name)),
            };
            if out.len() == before {
                out.push(b'-');
            }
        }
    }
}

/// The value of one CGI variable of 6.4 (empty when unknown).
fn cgi_value(record: &RequestRecord, name: &str) -> String {
    let req = record.request;
    match name {
        "REQUEST_METHOD" => req.method.clone(),
        "REQUEST_URI" => req.target.clone(),
        "PATH_INFO" => percent_decode(req.path()),
        "QUERY_STRING" => req.query().unwrap_or("").to_string(),
        "SERVER_PROTOCOL" => match req.version {
            Version::Http10 => "HTTP/1.0".into(),
            Version::Http11 => "HTTP/1.1".into(),
        },
        "SCRIPT_NAME" => String::new(),
        "SERVER_NAME" => record.server_name.to_string(),
        "SERVER_PORT" => record.server_port.to_string(),
        "REMOTE_ADDR" => req.remote_addr.clone(),
        "CONTENT_TYPE" => req.header("content-type").unwrap_or("").to_string(),
        "CONTENT_LENGTH" => req.header("content-length").unwrap_or("").to_string(),
        _ => match name.strip_prefix("HTTP_") {
            Some(header) => req
                .headers
                .iter()
                .find(|(n, _)| {
                    n.len() == header.len()
                        && n.bytes().zip(header.bytes()).all(|(a, b)| {
                            let a = if a == b'-' {
                                b'_'
                            } else {
                                a.to_ascii_uppercase()
                            };
                            a == b
                        })
                })
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            None => String::new(),
        },
    }
}

fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;
    use std::time::Duration;

    fn render(template: &str, req: &Request) -> String {
        let record = RequestRecord {
            pid: 42,
            worker_id: 3,
            app: true,
            worker_requests: 1,
            total_requests: 1,
            addr: "127.0.0.1",
            request: req,
            server_name: "host",
            server_port: 8000,
            start: UNIX_EPOCH + Duration::from_millis(1_764_348_000_123),
            body_bytes: 6,
            elapsed: Duration::from_micros(2500),
            status: 200,
            header_count: 2,
            head_bytes: 64,
            switches: 1,
            write_failed: false,
        };
        let mut out = Vec::new();
        LogFormat::parse(template).render(&mut out, &record);
        String::from_utf8(out).unwrap()
    }

    fn request() -> Request {
        let mut req = Request::empty();
        req.method = "GET".into();
        req.target = "/a%20b?x=1".into();
        req.remote_addr = "127.0.0.1".into();
        req.headers = vec![
            ("Host".into(), "example.com".into()),
            ("X-Request-Id".into(), "abc".into()),
        ];
        req
    }

    #[test]
    fn common_variables() {
        let req = request();
        assert_eq!(
            render("%(addr) %(user) %(method) %(uri) %(proto) %(status)", &req),
            "127.0.0.1 - GET /a%20b?x=1 HTTP/1.1 200"
        );
        assert_eq!(
            render(
                "%(size) %(rsize) %(hsize) %(cl) %(msecs) %(micros) %(secs)",
                &req
            ),
            "70 6 64 0 2 2500 0.002500"
        );
        assert_eq!(
            render(
                "%(time) %(tmsecs) %(pid) %(wid) %(core) %(headers) %(switches)",
                &req
            ),
            "1764348000 1764348000123 42 3 0 2 1"
        );
        assert_eq!(
            render("%(host) %(uagent) %(nope) 100%", &req),
            "example.com - - 100%"
        );
        assert_eq!(
            render(
                "%(var.HTTP_X_REQUEST_ID) %(var.PATH_INFO) %(var.QUERY_STRING) %(var.NONE)",
                &req
            ),
            "abc /a b x=1 -"
        );
        assert_eq!(render("unclosed %(status", &req), "unclosed %(status");
    }

    #[test]
    fn ltime_shape() {
        let text = render("[%(ltime)]", &request());
        // `[28/Nov/2025:16:40:00 +0000]`, in local time.
        assert_eq!(text.len(), 28, "{text}");
        assert_eq!(&text[3..4], "/");
        assert!(text.contains("/Nov/"), "{text}");
    }
}
