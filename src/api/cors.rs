//! CORS (section 8): allowed origins with shell-style wildcards, the exposed headers of each
//! kind of endpoint, and preflight `OPTIONS` answers.

use crate::error::{ApiError, ApiResult, Location};
use worker::{Request, Response};

/// Which set of headers a response exposes (`Access-Control-Expose-Headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposed {
    Base,
    PluralGet,
    PluralHead,
    Object,
}

const BASE: &[&str] = &[
    "Backoff",
    "Retry-After",
    "Alert",
    "Content-Length",
    "Content-Type",
];
const CACHING: &[&str] = &[
    "Last-Modified",
    "ETag",
    "Cache-Control",
    "Expires",
    "Pragma",
];

impl Exposed {
    pub fn headers(self) -> Vec<&'static str> {
        let mut out = BASE.to_vec();
        match self {
            Exposed::Base => {}
            Exposed::Object => out.extend_from_slice(CACHING),
            Exposed::PluralGet | Exposed::PluralHead => {
                out.push("Next-Page");
                out.extend_from_slice(CACHING);
                if self == Exposed::PluralHead {
                    out.extend_from_slice(&["Total-Objects", "Total-Records"]);
                }
            }
        }
        out
    }
}

/// The configured origins.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
    max_age: i64,
}

impl Cors {
    pub fn new(origins: &[String], max_age: i64) -> Self {
        Cors {
            origins: origins.to_vec(),
            max_age,
        }
    }

    pub fn allowed(&self, origin: &str) -> bool {
        self.origins
            .iter()
            .any(|pattern| wildcard_match(pattern, origin))
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin.
    pub fn allow_origin(&self, origin: &str) -> String {
        if self.origins.iter().any(|o| o == "*") {
            "*".into()
        } else {
            origin.to_string()
        }
    }

    /// 400 for an `Origin` that is not allowed.
    pub fn check_origin(&self, request: &Request) -> ApiResult<()> {
        match request.header("Origin") {
            Some(origin) if !self.allowed(origin) => Err(ApiError::invalid(
                Location::Header,
                Some("Origin"),
                format!("{origin} not allowed"),
            )),
            _ => Ok(()),
        }
    }

    /// Answers a preflight for a route accepting `methods`.
    pub fn preflight(
        &self,
        request: &Request,
        methods: &[&str],
        exposed: Exposed,
    ) -> ApiResult<Response> {
        let mandatory = |name: &str| {
            ApiError::invalid(Location::Header, Some(name), "this header is mandatory")
        };
        let origin = request
            .header("Origin")
            .ok_or_else(|| mandatory("Origin"))?;
        let method = request
            .header("Access-Control-Request-Method")
            .ok_or_else(|| mandatory("Access-Control-Request-Method"))?;
        self.check_origin(request)?;
        if !methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method.trim()))
        {
            return Err(ApiError::invalid(
                Location::Header,
                Some("Access-Control-Request-Method"),
                "Method not allowed",
            ));
        }
        let mut allowed_headers: Vec<String> =
            exposed.headers().iter().map(|h| h.to_string()).collect();
        if let Some(requested) = request.header("Access-Control-Request-Headers") {
            for header in requested
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
            {
                if !allowed_headers
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(header))
                {
                    allowed_headers.push(header.to_string());
                }
            }
        }
        let mut response = super::http::json(200, &serde_json::Value::Null);
        response.headers.extend([
            (
                "Access-Control-Allow-Origin".to_string(),
                self.allow_origin(origin),
            ),
            ("Access-Control-Allow-Methods".into(), methods.join(",")),
            (
                "Access-Control-Allow-Headers".into(),
                allowed_headers.join(","),
            ),
            ("Access-Control-Max-Age".into(), self.max_age.to_string()),
        ]);
        Ok(response)
    }
}

/// Shell-style matching with `*` (any run of characters) and `?` (one character).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}
