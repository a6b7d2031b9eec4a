//! Request head parsing: bytes in, a filled [`Request`] and the body framing out (4.1, 4.3).
//!
//! Pure: no I/O, so it is replayed on a corpus split at every byte and fuzzed. It is called again on
//! the whole buffer after each read; `Ok(None)` means "read more".

use crate::request::{Request, Scheme, Version};
use std::mem::MaybeUninit;

/// The limits a head is checked against.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Maximum head size in bytes (`buffer-size`).
    pub buffer_size: usize,
    /// Maximum number of header fields.
    pub max_headers: usize,
    /// Maximum body size (0 = unlimited).
    pub limit_post: u64,
}

/// How the body of a request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What the `Connection` header asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionOption {
    Unspecified,
    Close,
    KeepAlive,
}

/// A complete, accepted head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, final empty line included; the body starts there.
    pub len: usize,
    pub framing: Framing,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    pub connection: ConnectionOption,
}

/// Why a head is refused. For those where [`HeadError::request_parsed`] holds, the [`Request`] was
/// filled before the refusal (for the request log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// The request line alone is longer than `buffer-size`: 414.
    UriTooLong,
    /// The head is longer than `buffer-size`: 431.
    TooLarge,
    /// More header fields than allowed: 431.
    TooManyHeaders,
    /// Not `METHOD SP target SP HTTP/x.y CRLF` followed by `name: value` lines: 400.
    Malformed,
    /// A well-formed request line with a version other than 1.0 and 1.1: 505.
    Version,
    /// Invalid, conflicting or duplicated-different `Content-Length`, or with `Transfer-Encoding`: 400.
    BadFraming,
    /// A transfer coding other than `chunked`: 501.
    UnsupportedCoding,
    /// An `Expect` other than `100-continue`: 417.
    Expectation,
    /// `Content-Length` above `limit-post`: 413.
    BodyTooLarge,
}

impl HeadError {
    /// The status of the response that refuses the request.
    pub fn status(self) -> u16 {
        match self {
            HeadError::UriTooLong => 414,
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Malformed | HeadError::BadFraming => 400,
            HeadError::Version => 505,
            HeadError::UnsupportedCoding => 501,
            HeadError::Expectation => 417,
            HeadError::BodyTooLarge => 413,
        }
    }

    /// The request (method, target, headers) was parsed and filled in before the refusal.
    pub fn request_parsed(self) -> bool {
        !matches!(
            self,
            HeadError::UriTooLong | HeadError::TooLarge | HeadError::Malformed | HeadError::Version
        )
    }
}

/// Header arrays up to this size live on the stack.
const STACK_HEADERS: usize = 128;

/// Parses heads into a reused [`Request`], recycling the header strings of the previous request so
/// that a steady stream of requests does not allocate.
#[derive(Debug, Default)]
pub struct HeadParser {
    spare: Vec<(String, String)>,
}

impl HeadParser {
    pub fn new() -> Self {
        HeadParser::default()
    }

    /// Parses the head at the start of `buf` (which holds everything received so far).
    /// `Ok(None)`: incomplete, read more. On success `req` holds method, target, version, merged
    /// headers and scheme; `body` and `remote_addr` are left to the caller.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &HeadLimits,
        req: &mut Request,
    ) -> Result<Option<Head>, HeadError> {
        // Never look past `buffer-size`: the answer must not depend on how much more was received.
        let buf = &buf[..buf.len().min(limits.buffer_size)];
        let result = if limits.max_headers < STACK_HEADERS {
            let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; STACK_HEADERS];
            self.parse_with(buf, limits, req, &mut headers[..limits.max_headers])
        } else {
            let mut headers = Vec::with_capacity(limits.max_headers);
            headers.resize_with(limits.max_headers, MaybeUninit::uninit);
            self.parse_with(buf, limits, req, &mut headers)
        };
        match result {
            Ok(None) if buf.len() >= limits.buffer_size => Err(oversize(buf)),
            other => other,
        }
    }

    fn parse_with<'b>(
        &mut self,
        buf: &'b [u8],
        limits: &HeadLimits,
        req: &mut Request,
        headers: &mut [MaybeUninit<httparse::Header<'b>>],
    ) -> Result<Option<Head>, HeadError> {
        let mut parsed = httparse::Request::new(&mut []);
        match parsed.parse_with_uninit_headers(buf, headers) {
            Ok(httparse::Status::Complete(len)) => {
                self.fill(&parsed, req);
                check(len, limits, req).map(Some)
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                // Parse again with room for every line, to know whether the head is complete and
                // well-formed, and to fill the request for the log line. Rare path: may allocate.
                let lines = buf.iter().filter(|&&b| b == b'\n').count() + 1;
                let mut all = vec![httparse::EMPTY_HEADER; lines];
                let mut parsed = httparse::Request::new(&mut all);
                match parsed.parse(buf) {
                    Ok(httparse::Status::Complete(_)) => {
                        self.fill(&parsed, req);
                        Err(HeadError::TooManyHeaders)
                    }
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(classify(e, buf)),
                }
            }
            Err(e) => Err(classify(e, buf)),
        }
    }

    /// Copies method, target, version and merged headers into `req`, reusing its strings.
    fn fill(&mut self, parsed: &httparse::Request, req: &mut Request) {
        req.method.clear();
        req.method.push_str(parsed.method.unwrap_or(""));
        req.target.clear();
        let target = origin_form(parsed.path.unwrap_or(""));
        if target.starts_with('?') {
            req.target.push('/');
        }
        req.target.push_str(target);
        req.version = if parsed.version == Some(0) {
            Version::Http10
        } else {
            Version::Http11
        };
        self.spare.append(&mut req.headers);
        for header in parsed.headers.iter() {
            let value = String::from_utf8_lossy(header.value);
            if let Some((_, existing)) = req
                .headers
                .iter_mut()
                .find(|(name, _)| name.eq_ignore_ascii_case(header.name))
            {
                existing.push_str(", ");
                existing.push_str(&value);
                continue;
            }
            let (mut name, mut val) = self.spare.pop().unwrap_or_default();
            name.clear();
            name.push_str(header.name);
            val.clear();
            val.push_str(&value);
            req.headers.push((name, val));
        }
        req.scheme = scheme(req);
    }
}

/// 414 when no line end fits in the `buffer-size` bytes received, 431 otherwise.
fn oversize(buf: &[u8]) -> HeadError {
    if buf.contains(&b'\n') {
        HeadError::TooLarge
    } else {
        HeadError::UriTooLong
    }
}

/// A version error is a 505 only when the request line has the `METHOD SP target SP HTTP/<digit>`
/// shape; anything else is malformed. Only the bytes up to the error decide, so the answer does not
/// depend on how the head was split into reads.
fn classify(error: httparse::Error, buf: &[u8]) -> HeadError {
    if error != httparse::Error::Version {
        return HeadError::Malformed;
    }
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(0);
    let line = &buf[start..];
    let line = &line[..line
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(line.len())];
    let mut parts = line.split(|&b| b == b' ');
    let (_, _, version) = (parts.next(), parts.next(), parts.next().unwrap_or(b""));
    if version.len() > 5
        // Case-sensitive, as httparse is (RFC 9112 2.3): a decision on the same bytes either way.
        && version.starts_with(b"HTTP/")
        && version[5].is_ascii_digit()
    {
        HeadError::Version
    } else {
        HeadError::Malformed
    }
}

/// An absolute-form target (`http://host/path?q`) reduced to its path and query.
fn origin_form(target: &str) -> &str {
    // Compared as bytes: the target may hold UTF-8, and slicing it at 7 or 8 could split a char.
    let bytes = target.as_bytes();
    let rest = if bytes.len() > 7 && bytes[..7].eq_ignore_ascii_case(b"http://") {
        &target[7..]
    } else if bytes.len() > 8 && bytes[..8].eq_ignore_ascii_case(b"https://") {
        &target[8..]
    } else {
        return target;
    };
    match rest.find(['/', '?']) {
        // `http://host?q` has an empty path: the caller puts the `/` before the query.
        Some(i) => &rest[i..],
        None => "/",
    }
}

/// 4.6: `https` only for `X-Forwarded-Proto: https`, or without that header an `X-Forwarded-Ssl`
/// starting with `on` or `1`.
fn scheme(req: &Request) -> Scheme {
    if let Some(proto) = req.header("x-forwarded-proto") {
        return if proto.trim().eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            Scheme::Http
        };
    }
    match req.header("x-forwarded-ssl") {
        Some(ssl)
            if ssl.starts_with('1')
                || ssl.get(..2).is_some_and(|s| s.eq_ignore_ascii_case("on")) =>
        {
            Scheme::Https
        }
        _ => Scheme::Http,
    }
}

/// Framing, `Expect` and `Connection` rules on a filled request.
fn check(len: usize, limits: &HeadLimits, req: &Request) -> Result<Head, HeadError> {
    let mut framing = Framing::None;
    if let Some(value) = req.header("content-length") {
        framing = Framing::Length(content_length(value)?);
    }
    if let Some(coding) = req.header("transfer-encoding") {
        if framing != Framing::None {
            return Err(HeadError::BadFraming);
        }
        if !coding.trim().eq_ignore_ascii_case("chunked") {
            return Err(HeadError::UnsupportedCoding);
        }
        framing = Framing::Chunked;
    }
    let mut expect_continue = false;
    if let Some(expect) = req.header("expect") {
        if !expect.trim().eq_ignore_ascii_case("100-continue") {
            return Err(HeadError::Expectation);
        }
        // RFC 9110 10.1.1: an HTTP/1.0 client cannot expect an interim response.
        expect_continue = req.version == Version::Http11;
    }
    if let Framing::Length(n) = framing {
        if limits.limit_post > 0 && n > limits.limit_post {
            return Err(HeadError::BodyTooLarge);
        }
    }
    let mut connection = ConnectionOption::Unspecified;
    if let Some(value) = req.header("connection") {
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("close") {
                connection = ConnectionOption::Close;
            } else if token.eq_ignore_ascii_case("keep-alive")
                && connection != ConnectionOption::Close
            {
                connection = ConnectionOption::KeepAlive;
            }
        }
    }
    Ok(Head {
        len,
        framing,
        expect_continue,
        connection,
    })
}

/// A merged `Content-Length` value: one decimal number, or the same number repeated.
fn content_length(value: &str) -> Result<u64, HeadError> {
    let mut result = None;
    for part in value.split(',').map(str::trim) {
        if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::BadFraming);
        }
        let n: u64 = part.parse().map_err(|_| HeadError::BadFraming)?;
        match result {
            Some(previous) if previous != n => return Err(HeadError::BadFraming),
            _ => result = Some(n),
        }
    }
    result.ok_or(HeadError::BadFraming)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        buffer_size: 4096,
        max_headers: 119,
        limit_post: 0,
    };

    fn parse(raw: &[u8]) -> (Result<Option<Head>, HeadError>, Request) {
        parse_with(raw, &LIMITS)
    }

    fn parse_with(raw: &[u8], limits: &HeadLimits) -> (Result<Option<Head>, HeadError>, Request) {
        let mut req = Request::empty();
        let result = HeadParser::new().parse(raw, limits, &mut req);
        (result, req)
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /v1/?a=b HTTP/1.1\r\nHost: x\r\n\r\nrest";
        let (result, req) = parse(raw);
        let head = result.unwrap().unwrap();
        assert_eq!(head.len, raw.len() - 4);
        assert_eq!(head.framing, Framing::None);
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/v1/?a=b");
        assert_eq!(req.version, Version::Http11);
        assert_eq!(req.headers, vec![("Host".to_string(), "x".to_string())]);
    }

    #[test]
    fn partial_then_complete() {
        let raw = b"GET / HTTP/1.0\r\nHost: x\r\n";
        assert_eq!(parse(raw).0, Ok(None));
    }

    #[test]
    fn repeated_headers_are_merged_in_order() {
        let (result, req) = parse(b"GET / HTTP/1.1\r\nX-A: 1\r\nB: z\r\nx-a: 2\r\n\r\n");
        result.unwrap().unwrap();
        assert_eq!(req.header("X-A"), Some("1, 2"));
        assert_eq!(req.headers.len(), 2);
    }

    #[test]
    fn reused_request_is_refilled() {
        let mut parser = HeadParser::new();
        let mut req = Request::empty();
        let first = b"GET /a HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        parser.parse(first, &LIMITS, &mut req).unwrap().unwrap();
        let second = b"POST /b HTTP/1.0\r\nC: 3\r\n\r\n";
        parser.parse(second, &LIMITS, &mut req).unwrap().unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.target, "/b");
        assert_eq!(req.version, Version::Http10);
        assert_eq!(req.headers, vec![("C".to_string(), "3".to_string())]);
    }

    #[test]
    fn absolute_form_is_reduced() {
        for (target, expected) in [
            ("http://example.com/pid", "/pid"),
            ("HTTPS://example.com:8443/a/b?c=d", "/a/b?c=d"),
            ("http://example.com", "/"),
            ("http://example.com?x=1", "/?x=1"),
            ("/plain", "/plain"),
            ("*", "*"),
            ("/caf\u{e9}/x", "/caf\u{e9}/x"),
            (
                "/\u{454}\u{454}\u{454}\u{454}",
                "/\u{454}\u{454}\u{454}\u{454}",
            ),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            let (result, req) = parse(raw.as_bytes());
            result.unwrap().unwrap();
            assert_eq!(req.target, expected, "{target}");
        }
    }

    #[test]
    fn scheme_follows_the_table() {
        for (headers, expected) in [
            ("", Scheme::Http),
            ("X-Forwarded-Proto: https\r\n", Scheme::Https),
            ("X-Forwarded-Proto: HTTPS\r\n", Scheme::Https),
            ("X-Forwarded-Proto: foo\r\n", Scheme::Http),
            (
                "X-Forwarded-Proto: http\r\nX-Forwarded-Ssl: on\r\n",
                Scheme::Http,
            ),
            ("X-Forwarded-Ssl: On\r\n", Scheme::Https),
            ("X-Forwarded-Ssl: 1\r\n", Scheme::Https),
            ("X-Forwarded-Ssl: off\r\n", Scheme::Http),
        ] {
            let raw = format!("GET / HTTP/1.1\r\n{headers}\r\n");
            let (result, req) = parse(raw.as_bytes());
            result.unwrap().unwrap();
            assert_eq!(req.scheme, expected, "{headers:?}");
        }
    }

    #[test]
    fn errors_and_their_status() {
        let cases: &[(&[u8], u16)] = &[
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"GET / HTTP/1.2\r\n\r\n", 505),
            (b"GET / FOO/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
            (b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", 417),
        ];
        for (raw, status) in cases {
            let (result, _) = parse(raw);
            let error = result.expect_err(&String::from_utf8_lossy(raw));
            assert_eq!(error.status(), *status, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn same_content_length_twice_is_accepted() {
        let (result, _) =
            parse(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(result.unwrap().unwrap().framing, Framing::Length(3));
    }

    #[test]
    fn limit_post_refuses_large_bodies() {
        let limits = HeadLimits {
            limit_post: 100,
            ..LIMITS
        };
        let (result, req) = parse_with(b"POST /x HTTP/1.1\r\nContent-Length: 500\r\n\r\n", &limits);
        assert_eq!(result, Err(HeadError::BodyTooLarge));
        assert_eq!(req.target, "/x");
        let (result, _) = parse_with(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\n", &limits);
        assert_eq!(result.unwrap().unwrap().framing, Framing::Length(100));
    }

    #[test]
    fn size_limits_give_414_or_431() {
        let limits = HeadLimits {
            buffer_size: 64,
            ..LIMITS
        };
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_with(&long_line.as_bytes()[..64], &limits).0,
            Err(HeadError::UriTooLong)
        );
        let long_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            parse_with(&long_header.as_bytes()[..64], &limits).0,
            Err(HeadError::TooLarge)
        );
        // Exactly buffer-size bytes is accepted.
        let exact = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(64 - 23));
        assert_eq!(exact.len(), 64);
        assert!(parse_with(exact.as_bytes(), &limits).0.unwrap().is_some());
    }

    #[test]
    fn header_count_limit() {
        let many = |n: usize| {
            let mut raw = String::from("GET /h HTTP/1.1\r\n");
            for i in 0..n {
                raw.push_str(&format!("X-{i}: {i}\r\n"));
            }
            raw.push_str("\r\n");
            raw
        };
        let limits = HeadLimits {
            buffer_size: 65535,
            ..LIMITS
        };
        let (result, req) = parse_with(many(120).as_bytes(), &limits);
        assert_eq!(result, Err(HeadError::TooManyHeaders));
        assert_eq!(req.target, "/h");
        assert!(parse_with(many(119).as_bytes(), &limits)
            .0
            .unwrap()
            .is_some());
        // Incomplete but already over the count: wait for the rest.
        let partial = many(120);
        assert_eq!(
            parse_with(&partial.as_bytes()[..partial.len() - 2], &limits).0,
            Ok(None)
        );
        // A large configured count uses a heap array.
        let big = HeadLimits {
            max_headers: 300,
            ..limits
        };
        assert!(parse_with(many(250).as_bytes(), &big).0.unwrap().is_some());
    }

    #[test]
    fn connection_and_expect() {
        let (result, _) = parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert_eq!(
            result.unwrap().unwrap().connection,
            ConnectionOption::KeepAlive
        );
        let (result, _) = parse(b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
        assert_eq!(result.unwrap().unwrap().connection, ConnectionOption::Close);
        let (result, _) =
            parse(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n");
        assert!(result.unwrap().unwrap().expect_continue);
        let (result, _) =
            parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert!(!result.unwrap().unwrap().expect_continue);
    }

    #[test]
    fn chunked_framing() {
        let (result, _) = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(result.unwrap().unwrap().framing, Framing::Chunked);
    }
}
