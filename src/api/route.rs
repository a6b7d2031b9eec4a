//! Routing: a request path becomes a [`Route`]. Unknown URLs, version redirects and
//! trailing-slash redirects are route variants, not error paths.

use super::http::decode_segment;
use crate::authz::{Chain, Kind};
use crate::error::{ApiError, ApiResult};

/// One object or plural URL of the bucket hierarchy, with its (decoded) ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// Bucket id (every kind but `Bucket` plural/object at root level uses it as parent).
    pub bucket: String,
    /// Collection id, for records.
    pub collection: String,
    /// Object id; `None` on plural URLs.
    pub id: Option<String>,
}

impl Target {
    /// The storage `parent_id` of the list (`""`, `/buckets/b`, `/buckets/b/collections/c`).
    pub fn parent_id(&self) -> String {
        match self.kind {
            Kind::Bucket => String::new(),
            // Each account is its own parent; a plural URL spans them all.
            Kind::Account => self.id.clone().unwrap_or_else(|| "*".into()),
            Kind::Collection | Kind::Group | Kind::History => format!("/buckets/{}", self.bucket),
            Kind::Record => format!("/buckets/{}/collections/{}", self.bucket, self.collection),
        }
    }

    /// The storage `parent_id` of the object `id` of this list.
    pub fn list_parent(&self, id: &str) -> String {
        match self.kind {
            Kind::Account => id.to_string(),
            _ => self.parent_id(),
        }
    }

    /// The URI of the plural endpoint (`/buckets/b/collections`).
    pub fn plural_uri(&self) -> String {
        match self.kind {
            Kind::Bucket | Kind::Account => format!("/{}", self.kind.plural()),
            _ => format!("{}/{}", self.parent_id(), self.kind.plural()),
        }
    }

    /// The URI of an object of this list.
    pub fn object_uri(&self, id: &str) -> String {
        format!("{}/{}", self.plural_uri(), id)
    }

    /// The URIs of the parents, plus the object itself when `id` is given.
    pub fn chain(&self, id: Option<&str>) -> Chain {
        let mut chain = Chain::default();
        if !matches!(self.kind, Kind::Bucket | Kind::Account) {
            chain.bucket = Some(format!("/buckets/{}", self.bucket));
        }
        if self.kind == Kind::Record {
            chain.collection = Some(self.parent_id());
        }
        if let Some(id) = id {
            let uri = self.object_uri(id);
            match self.kind {
                Kind::Bucket => chain.bucket = Some(uri),
                Kind::Collection => chain.collection = Some(uri),
                Kind::Group => chain.group = Some(uri),
                Kind::Record => chain.record = Some(uri),
                Kind::Account => chain.account = Some(uri),
                Kind::History => {}
            }
        }
        chain
    }

    /// The first parent id (in path order) that is not a valid object id, with its kind.
    pub fn invalid_parent(&self) -> Option<(&str, Kind)> {
        if !matches!(self.kind, Kind::Bucket | Kind::Account) && !valid_id(&self.bucket) {
            return Some((&self.bucket, Kind::Bucket));
        }
        if self.kind == Kind::Record && !valid_id(&self.collection) {
            return Some((&self.collection, Kind::Collection));
        }
        None
    }
}

/// Kinto's id pattern for buckets, collections, groups and records: `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
pub fn valid_id(id: &str) -> bool {
    Kind::Bucket.valid_id(id)
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Root,
    Heartbeat,
    LbHeartbeat,
    Version,
    OpenApi,
    Contribute,
    Flush,
    Batch,
    /// `/permissions` (experimental endpoint).
    Permissions,
    /// `/__counters__` (counters plugin).
    Counters,
    /// `/__user_data__/{principal}` (decoded principal).
    UserData(String),
    /// `/buckets/{bid}/snapshot/collections/{cid}@{timestamp}` (history plugin).
    Snapshot {
        bucket: String,
        collection: String,
        timestamp: String,
    },
    Plural(Target),
    Object(Target),
    /// 307 to another path of this server (path and query, absolute URL built later); `ttl` is the
    /// cache duration setting to apply.
    Redirect {
        location: String,
        kind: RedirectKind,
    },
    VersionNotAvailable,
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    VersionPrefix,
    TrailingSlash,
}

/// Switches that change routing, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct RoutingSettings {
    pub version_prefix_redirect: bool,
    pub trailing_slash_redirect: bool,
    pub flush_enabled: bool,
    /// The accounts plugin (`/accounts`).
    pub accounts_enabled: bool,
    /// The history plugin (`/buckets/<bid>/history`).
    pub history_enabled: bool,
    /// `experimental_permissions_endpoint` (`/permissions`).
    pub permissions_enabled: bool,
    /// The counters plugin (`/__counters__`).
    pub counters_enabled: bool,
}

/// Routes a raw (undecoded) path; `query` is kept verbatim for redirects.
pub fn route(path: &str, query: Option<&str>, settings: RoutingSettings) -> ApiResult<Route> {
    let with_query = |p: &str| match query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_string(),
    };
    let rest = path.strip_prefix('/').unwrap_or(path);
    let first = rest.split('/').next().unwrap_or("");
    let versioned =
        first.len() > 1 && first.starts_with('v') && first[1..].bytes().all(|b| b.is_ascii_digit());
    if !versioned {
        if settings.version_prefix_redirect {
            return Ok(Route::Redirect {
                location: with_query(&format!("/v1/{rest}")),
                kind: RedirectKind::VersionPrefix,
            });
        }
        return Ok(Route::VersionNotAvailable);
    }
    if first != "v1" {
        return Ok(Route::VersionNotAvailable);
    }
    let Some(inner) = rest.strip_prefix("v1/") else {
        // `/v1` alone.
        if settings.trailing_slash_redirect {
            return Ok(Route::Redirect {
                location: with_query("/v1/"),
                kind: RedirectKind::TrailingSlash,
            });
        }
        return Ok(Route::NotFound);
    };
    let found = route_inner(inner, settings)?;
    if found == Route::NotFound && inner.ends_with('/') && settings.trailing_slash_redirect {
        let stripped = path.trim_end_matches('/');
        return Ok(Route::Redirect {
            location: with_query(stripped),
            kind: RedirectKind::TrailingSlash,
        });
    }
    Ok(found)
}

fn route_inner(inner: &str, settings: RoutingSettings) -> ApiResult<Route> {
    let simple = match inner {
        "" => Some(Route::Root),
        "__heartbeat__" => Some(Route::Heartbeat),
        "__lbheartbeat__" => Some(Route::LbHeartbeat),
        "__version__" => Some(Route::Version),
        "__api__" => Some(Route::OpenApi),
        "contribute.json" => Some(Route::Contribute),
        "batch" => Some(Route::Batch),
        "permissions" if settings.permissions_enabled => Some(Route::Permissions),
        "__flush__" if settings.flush_enabled => Some(Route::Flush),
        "__counters__" if settings.counters_enabled => Some(Route::Counters),
        _ => None,
    };
    if let Some(route) = simple {
        return Ok(route);
    }
    if let Some(principal) = inner.strip_prefix("__user_data__/") {
        if principal.is_empty() || principal.ends_with('/') {
            return Ok(Route::NotFound);
        }
        return match decode_segment(principal) {
            Some(p) => Ok(Route::UserData(p)),
            None => Err(ApiError::BadRequest("Invalid URL path.".into())),
        };
    }
    let raw: Vec<&str> = inner.split('/').collect();
    if raw.iter().any(|s| s.is_empty()) {
        return Ok(Route::NotFound);
    }
    let mut segments = Vec::with_capacity(raw.len());
    for segment in raw {
        match decode_segment(segment) {
            Some(s) => segments.push(s),
            None => return Err(ApiError::BadRequest("Invalid URL path.".into())),
        }
    }
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let target = |kind, bucket: &str, collection: &str, id: Option<&str>| Target {
        kind,
        bucket: bucket.to_string(),
        collection: collection.to_string(),
        id: id.map(str::to_string),
    };
    Ok(match seg.as_slice() {
        ["accounts"] if settings.accounts_enabled => {
            Route::Plural(target(Kind::Account, "", "", None))
        }
        ["accounts", a] if settings.accounts_enabled => {
            Route::Object(target(Kind::Account, "", "", Some(a)))
        }
        ["buckets"] => Route::Plural(target(Kind::Bucket, "", "", None)),
        ["buckets", b] => Route::Object(target(Kind::Bucket, "", "", Some(b))),
        ["buckets", b, "collections"] => Route::Plural(target(Kind::Collection, b, "", None)),
        ["buckets", b, "collections", c] => Route::Object(target(Kind::Collection, b, "", Some(c))),
        ["buckets", b, "groups"] => Route::Plural(target(Kind::Group, b, "", None)),
        ["buckets", b, "snapshot", "collections", c] if settings.history_enabled => {
            match c.rsplit_once('@') {
                Some((collection, timestamp)) => Route::Snapshot {
                    bucket: b.to_string(),
                    collection: collection.to_string(),
                    timestamp: timestamp.to_string(),
                },
                None => Route::NotFound,
            }
        }
        ["buckets", b, "history"] if settings.history_enabled => {
            Route::Plural(target(Kind::History, b, "", None))
        }
        ["buckets", b, "groups", g] => Route::Object(target(Kind::Group, b, "", Some(g))),
        ["buckets", b, "collections", c, "records"] => {
            Route::Plural(target(Kind::Record, b, c, None))
        }
        ["buckets", b, "collections", c, "records", r] => {
            Route::Object(target(Kind::Record, b, c, Some(r)))
        }
        _ => Route::NotFound,
    })
}
