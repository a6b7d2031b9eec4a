//! A complete request as handed to the application.

/// HTTP version of the request (the response repeats it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Effective scheme: `https` only when `X-Forwarded-Proto: https` (or `X-Forwarded-Ssl`) says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A request whose head and body were read completely.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The raw target: path and query, as sent (absolute-form targets reduced to path and query).
    pub target: String,
    pub version: Version,
    /// Header fields in order; repeated fields are combined with `, `. Names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// TCP peer address (`0.0.0.0` for Unix socket clients).
    pub remote_addr: String,
    pub scheme: Scheme,
}

impl Request {
    /// The value of a header field, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target (before `?`), not decoded.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The raw query string (after the first `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

impl Request {
    /// An empty request, to be filled by the head parser (and reused from request to request).
    pub fn empty() -> Self {
        Request {
            method: String::new(),
            target: String::new(),
            version: Version::Http11,
            headers: Vec::new(),
            body: Vec::new(),
            remote_addr: String::new(),
            scheme: Scheme::Http,
        }
    }
}
