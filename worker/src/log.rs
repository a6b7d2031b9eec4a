//! Worker log output (6.1, 6.3, 6.4): lifecycle lines and the uWSGI request line, each written with
//! one `write(2)` so that lines of different processes never interleave.

use crate::logformat::LogFormat;
use crate::request::{Request, Version};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where log lines go: standard error (the master points it at `logto` when set) or a given
/// descriptor (tests).
#[derive(Debug)]
pub struct Log {
    fd: Option<OwnedFd>,
    line: Vec<u8>,
    /// The last second formatted by [`Log::ctime`], and its text.
    cached: (i64, [u8; 24]),
    /// `log-format`, replacing the default request line.
    format: Option<LogFormat>,
    /// `log-micros`: the default line gives microseconds.
    micros: bool,
}

/// Longest request line written as is; longer ones use uWSGI's short form (6.4).
const MAX_REQUEST_LINE: usize = 4096;

impl Log {
    pub fn stderr() -> Self {
        Log::new(None)
    }

    pub fn to_fd(fd: OwnedFd) -> Self {
        Log::new(Some(fd))
    }

    fn new(fd: Option<OwnedFd>) -> Self {
        Log {
            fd,
            line: Vec::with_capacity(512),
            cached: (i64::MIN, [b' '; 24]),
            format: None,
            micros: false,
        }
    }

    /// Sets the request line's shape: a `log-format` template, `log-micros`.
    pub fn configure(&mut self, format: Option<LogFormat>, micros: bool) {
        self.format = format;
        self.micros = micros;
    }

    fn raw_fd(&self) -> RawFd {
        self.fd.as_ref().map_or(2, |fd| fd.as_raw_fd())
    }

    /// Writes `bytes` plus a newline with a single `write(2)` when the descriptor allows.
    fn emit(&mut self) {
        self.line.push(b'\n');
        let mut rest = &self.line[..];
        while !rest.is_empty() {
            // SAFETY: rest is a valid buffer.
            let n = unsafe { libc::write(self.raw_fd(), rest.as_ptr().cast(), rest.len()) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                break;
            }
            rest = &rest[n as usize..];
        }
        self.line.clear();
    }

    /// A lifecycle line as is.
    pub fn line(&mut self, text: &str) {
        self.line.clear();
        self.line.extend_from_slice(text.as_bytes());
        self.emit();
    }

    /// A lifecycle line prefixed with `<ctime> - `.
    pub fn dated(&mut self, text: &str) {
        let now = unix_seconds(SystemTime::now());
        let stamp = self.ctime(now);
        self.line.clear();
        self.line.extend_from_slice(&stamp);
        self.line.extend_from_slice(b" - ");
        self.line.extend_from_slice(text.as_bytes());
        self.emit();
    }

    /// The C `ctime()` text (24 characters, local time) of a Unix time, cached per second.
    pub fn ctime(&mut self, secs: i64) -> [u8; 24] {
        if self.cached.0 != secs {
            self.cached = (secs, ctime(secs));
        }
        self.cached.1
    }

    /// The request line of 6.4, or of the `log-format` template.
    pub fn request(&mut self, record: &RequestRecord) {
        if let Some(format) = &self.format {
            self.line.clear();
            format.render(&mut self.line, record);
            self.emit();
            return;
        }
        let stamp = self.ctime(unix_seconds(record.start));
        let req = record.request;
        let (nvars, vbytes) = cgi_vars(req, record.server_name, record.server_port);
        let proto = match req.version {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        };
        let stamp = std::str::from_utf8(&stamp).unwrap_or("");
        let (time, unit) = if self.micros {
            (record.elapsed.as_micros(), "micros")
        } else {
            (record.elapsed.as_millis(), "msecs")
        };
        self.line.clear();
        let _ = write!(
            self.line,
            "[pid: {}|app: {}|req: {}/{}] {} () {{{} vars in {} bytes}} [{}] {} {} => generated {} bytes in {} {} ({} {}) {} headers in {} bytes ({} switches on core 0)",
            record.pid,
            if record.app { 0 } else { -1 },
            record.worker_requests,
            record.total_requests,
            record.addr,
            nvars,
            vbytes,
            stamp,
            req.method,
            req.target,
            record.body_bytes,
            time,
            unit,
            proto,
            record.status,
            record.header_count,
            record.head_bytes,
            record.switches,
        );
        if self.line.len() > MAX_REQUEST_LINE {
            self.line.clear();
            let _ = write!(
                self.line,
                "[pid: {}|app: {}|req: {}/{}] 0.0.0.0 () {{{} vars in {} bytes}} [{}] - - => generated {} bytes in {} {} (- {}) {} headers in {} bytes ({} switches on core 0)",
                record.pid,
                if record.app { 0 } else { -1 },
                record.worker_requests,
                record.total_requests,
                nvars,
                vbytes,
                stamp,
                record.body_bytes,
                time,
                unit,
                record.status,
                record.header_count,
                record.head_bytes,
                record.switches,
            );
        }
        self.emit();
    }
}

/// Everything a request line shows.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    pub pid: u32,
    /// Slot number (`%(wid)`).
    pub worker_id: usize,
    /// The request reached the handler (`app: 0`); otherwise `app: -1` and `req: -1/...`.
    pub app: bool,
    pub worker_requests: i64,
    pub total_requests: u64,
    /// Peer address, or `X-Forwarded-For` with `log-x-forwarded-for`.
    pub addr: &'a str,
    pub request: &'a Request,
    pub server_name: &'a str,
    pub server_port: u16,
    pub start: SystemTime,
    pub body_bytes: u64,
    pub elapsed: Duration,
    pub status: u16,
    pub header_count: usize,
    pub head_bytes: usize,
    pub switches: usize,
    /// Writing the response failed (`%(werr)`).
    pub write_failed: bool,
}

pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn local_tm(secs: i64) -> libc::tm {
    // SAFETY: localtime_r fills the zeroed tm from a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let t = secs as libc::time_t;
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm
}

/// `strftime("%d/%b/%Y:%H:%M:%S %z")` in local time: `28/Nov/2026:16:39:42 +0000`.
pub fn local_time(secs: i64) -> String {
    let tm = local_tm(secs);
    let mut buf = [0u8; 64];
    // SAFETY: the format is NUL-terminated and strftime writes at most buf.len() bytes.
    let n = unsafe {
        libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%d/%b/%Y:%H:%M:%S %z".as_ptr(),
            &tm,
        )
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Address space and resident set sizes in bytes, from `/proc/self/statm`.
pub fn memory() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut fields = statm
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let (vsz, rss) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    (vsz * page, rss * page)
}

/// C `ctime()` without its newline: `Sat Nov 28 16:22:27 2026`, local time.
pub fn ctime(secs: i64) -> [u8; 24] {
    const DAYS: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let tm = local_tm(secs);
    let mut out = [b' '; 24];
    out[0..3].copy_from_slice(DAYS[tm.tm_wday.rem_euclid(7) as usize]);
    out[4..7].copy_from_slice(MONTHS[tm.tm_mon.rem_euclid(12) as usize]);
    let two = |v: i32| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    let day = two(tm.tm_mday);
    out[8] = if tm.tm_mday < 10 { b' ' } else { day[0] };
    out[9] = day[1];
    out[11..13].copy_from_slice(&two(tm.tm_hour));
    out[13] = b':';
    out[14..16].copy_from_slice(&two(tm.tm_min));
    out[16] = b':';
    out[17..19].copy_from_slice(&two(tm.tm_sec));
    let year = tm.tm_year + 1900;
    out[20..22].copy_from_slice(&two(year / 100));
    out[22..24].copy_from_slice(&two(year % 100));
    out
}

/// The `{<nvars> vars in <vbytes> bytes}` figures: the CGI variables uWSGI would have built (6.4).
pub fn cgi_vars(req: &Request, server_name: &str, server_port: u16) -> (usize, usize) {
    let path = req.path();
    let query = req.query().unwrap_or("");
    let port_len = decimal_len(u64::from(server_port));
    let fixed: [(usize, usize); 9] = [
        ("REQUEST_METHOD".len(), req.method.len()),
        ("REQUEST_URI".len(), req.target.len()),
        ("PATH_INFO".len(), decoded_len(path)),
        ("QUERY_STRING".len(), query.len()),
        ("SERVER_PROTOCOL".len(), "HTTP/1.1".len()),
        ("SCRIPT_NAME".len(), 0),
        ("SERVER_NAME".len(), server_name.len()),
        ("SERVER_PORT".len(), port_len),
        ("REMOTE_ADDR".len(), req.remote_addr.len()),
    ];
    let mut bytes: usize = fixed.iter().map(|(n, v)| 4 + n + v).sum();
    for (name, value) in &req.headers {
        let prefix = if name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("content-length")
        {
            0
        } else {
            "HTTP_".len()
        };
        bytes += 4 + prefix + name.len() + value.len();
    }
    (2 * (fixed.len() + req.headers.len()), bytes)
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Length of a path once its `%XX` escapes are decoded.
fn decoded_len(path: &str) -> usize {
    let bytes = path.as_bytes();
    let mut len = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            i += 3;
        } else {
            i += 1;
        }
        len += 1;
    }
    len
}

/// The machine's host name (`SERVER_NAME`), read once.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curl_request() -> Request {
        let mut req = Request::empty();
        req.method = "GET".into();
        req.target = "/".into();
        req.remote_addr = "127.0.0.1".into();
        req.headers = vec![
            ("Host".into(), "127.0.0.1:8000".into()),
            ("User-Agent".into(), "curl/7.88.1".into()),
            ("Accept".into(), "*/*".into()),
        ];
        req
    }

    #[test]
    fn cgi_figures_follow_the_formula() {
        // 9 fixed variables + 3 headers = 12 pairs = 24 vars; the bytes are the sum of
        // 4 + len(name) + len(value), which for curl's request and a 2-letter host name is 244.
        let (nvars, vbytes) = cgi_vars(&curl_request(), "ab", 8000);
        assert_eq!((nvars, vbytes), (24, 244));
    }

    #[test]
    fn decoded_path_length() {
        assert_eq!(decoded_len("/a%20b"), 4);
        assert_eq!(decoded_len("/a%2"), 4);
        assert_eq!(decoded_len("%zz"), 3);
    }

    #[test]
    fn ctime_shape() {
        let text = ctime(1_764_346_947);
        let text = std::str::from_utf8(&text).unwrap();
        assert_eq!(text.len(), 24);
        assert_eq!(&text[13..14], ":");
        assert!(text.ends_with("2025") || text.ends_with("2026"), "{text}");
    }
}
