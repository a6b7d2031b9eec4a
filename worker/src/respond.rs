//! Encoding a response head (4.4): status line repeating the request version, the handler's headers,
//! the `add-header` ones, `Content-Length` and the worker's `Connection` decision.

use crate::request::Version;
use crate::response::{reason_phrase, Response};

/// What the `Connection` header of the response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Closed after this response (`Connection: close` on HTTP/1.1).
    Close,
    /// Kept open (`Connection: keep-alive` on HTTP/1.0, nothing on HTTP/1.1).
    KeepAlive,
}

/// Appends the decimal form of `n` without going through `fmt`.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Statuses whose responses never carry a body (nor a `Content-Length`).
pub fn bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

fn is_connection(name: &str) -> bool {
    name.eq_ignore_ascii_case("connection")
}

/// A field that cannot be written safely (CR or LF would split the head).
fn unsafe_field(name: &str, value: &str) -> bool {
    name.bytes()
        .chain(value.bytes())
        .any(|b| b == b'\r' || b == b'\n')
        || name.is_empty()
}

/// The handler or `add-header` asked for the connection to be closed.
pub fn asks_close(response: &Response, add_headers: &[(String, String)]) -> bool {
    response.headers.iter().chain(add_headers).any(|(n, v)| {
        is_connection(n) && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
    })
}

/// Writes the head into `out` (cleared first) and returns the number of header fields written.
/// The handler's own `Content-Length` and `Connection` fields and added `Connection` fields are
/// replaced by the worker's, so none is ever duplicated.
pub fn encode_head(
    out: &mut Vec<u8>,
    version: Version,
    response: &Response,
    add_headers: &[(String, String)],
    persistence: Persistence,
) -> usize {
    out.clear();
    out.extend_from_slice(match version {
        Version::Http10 => b"HTTP/1.0 ",
        Version::Http11 => b"HTTP/1.1 ",
    });
    push_decimal(out, u64::from(response.status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(response.status).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut fields = 0;
    for (name, value) in response.headers.iter().chain(add_headers) {
        if is_connection(name)
            || name.eq_ignore_ascii_case("content-length")
            || unsafe_field(name, value)
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
        fields += 1;
    }
    if !bodiless(response.status) {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, response.body.len() as u64);
        out.extend_from_slice(b"\r\n");
        fields += 1;
    }
    match (persistence, version) {
        (Persistence::Close, Version::Http11) => {
            out.extend_from_slice(b"Connection: close\r\n");
            fields += 1;
        }
        (Persistence::KeepAlive, Version::Http10) => {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
            fields += 1;
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn head_matches_the_log_example() {
        let mut response = Response::new(200);
        response
            .headers
            .push(("Content-Type".into(), "text/plain".into()));
        response.body = b"hello\n".to_vec();
        let mut out = Vec::new();
        let fields = encode_head(
            &mut out,
            Version::Http10,
            &response,
            &[],
            Persistence::Close,
        );
        assert_eq!(
            text(&out),
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n"
        );
        // 6.4: `2 headers in 64 bytes`.
        assert_eq!((fields, out.len()), (2, 64));
    }

    #[test]
    fn added_headers_follow_and_connection_is_not_duplicated() {
        let mut response = Response::new(201);
        response.headers.push(("X-H".into(), "h".into()));
        response
            .headers
            .push(("Content-Length".into(), "999".into()));
        let added = vec![
            ("X-A".to_string(), "1".to_string()),
            ("Connection".to_string(), "close".to_string()),
        ];
        assert!(asks_close(&response, &added));
        let mut out = Vec::new();
        let fields = encode_head(
            &mut out,
            Version::Http11,
            &response,
            &added,
            Persistence::Close,
        );
        assert_eq!(
            text(&out),
            "HTTP/1.1 201 Created\r\nX-H: h\r\nX-A: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(fields, 4);
    }

    #[test]
    fn keep_alive_and_bodiless_statuses() {
        let mut out = Vec::new();
        encode_head(
            &mut out,
            Version::Http10,
            &Response::new(204),
            &[],
            Persistence::KeepAlive,
        );
        assert_eq!(
            text(&out),
            "HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        encode_head(
            &mut out,
            Version::Http11,
            &Response::new(304),
            &[],
            Persistence::KeepAlive,
        );
        assert_eq!(text(&out), "HTTP/1.1 304 Not Modified\r\n\r\n");
    }

    #[test]
    fn fields_with_line_breaks_are_dropped() {
        let mut response = Response::new(200);
        response
            .headers
            .push(("X-Bad".into(), "a\r\nInjected: 1".into()));
        let mut out = Vec::new();
        encode_head(
            &mut out,
            Version::Http11,
            &response,
            &[],
            Persistence::KeepAlive,
        );
        assert!(!text(&out).contains("Injected"));
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(text(&out), n.to_string());
        }
    }
}
