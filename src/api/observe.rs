//! What each request reports once answered: the per-request metrics (StatsD, Prometheus), the
//! `request.summary` / `subrequest.summary` log lines, uncaught errors, and the Prometheus page
//! (`/v1/__metrics__`). The request id is set for the thread while the request runs, so every log
//! line it causes carries it.
//!
//! Cheap when nothing listens: the URL ids are copied only when metrics are enabled, and the
//! summary fields are built only when the `request.summary` logger is enabled.

use super::default_bucket;
use super::route::{RedirectKind, Route, Target};
use crate::auth::User;
use crate::authz::Kind;
use crate::error::ApiError;
use crate::logging::{self, RequestSummary};
use crate::metrics::{Metrics, RequestMetrics, PROMETHEUS_CONTENT_TYPE};
use std::cell::Cell;
use std::sync::Once;
use std::time::{Duration, Instant};
use worker::{Request, Response};

/// The path of the Prometheus page (`kinto.plugins.prometheus`).
const METRICS_PATH: &str = "/v1/__metrics__";

thread_local! {
    /// Sub-requests answered since the current top-level request started (its `batch_size`).
    static SUBREQUESTS: Cell<usize> = const { Cell::new(0) };
}

/// One top-level request being observed, from its arrival to [`Observation::finish`].
pub struct Observation {
    start: Instant,
    rid: String,
    /// Copy the URL ids of the route (only needed for metrics labels).
    with_ids: bool,
    /// Kinto's route name; `unnamed` until routed.
    endpoint: &'static str,
    /// `bucket_id`, `collection_id`, `group_id`, `record_id` from the URL.
    ids: [String; 4],
    user: Option<User>,
    errno: u16,
}

impl Observation {
    /// Starts the clock and sets the thread's request id (`X-Request-Id` or a new UUID).
    pub fn start(request: &Request, metrics: &Metrics) -> Observation {
        PANIC_HOOK.call_once(chain_panic_hooks);
        let rid = logging::request_id(request.header("X-Request-Id"));
        logging::set_request_id(Some(&rid));
        SUBREQUESTS.with(|n| n.set(0));
        Observation {
            start: Instant::now(),
            rid,
            with_ids: metrics.is_enabled(),
            endpoint: "unnamed",
            ids: Default::default(),
            user: None,
            errno: 0,
        }
    }

    /// Records where the request was routed.
    pub fn routed(&mut self, route: &Route, default_bucket: bool) {
        self.endpoint = endpoint(route, default_bucket);
        if !self.with_ids || self.endpoint.starts_with("default_bucket") {
            // The personal bucket's routes have no ids in Kinto's matchdict.
            return;
        }
        let [bucket, collection, group, record] = &mut self.ids;
        match route {
            Route::Plural(target) | Route::Object(target) => {
                target_ids(target, [bucket, collection, group, record])
            }
            Route::Snapshot {
                bucket: b,
                collection: c,
                ..
            } => {
                b.clone_into(bucket);
                c.clone_into(collection);
            }
            _ => {}
        }
    }

    /// Records a request answered outside the routes of [`Route`].
    pub fn routed_to(&mut self, endpoint: &'static str) {
        self.endpoint = endpoint;
    }

    /// Records the authenticated caller, if any.
    pub fn authenticated(&mut self, user: Option<User>) {
        self.user = user;
    }

    /// Records the error a request failed with; an unexpected one (500) is logged with the request.
    pub fn failed(&mut self, request: &Request, error: &ApiError) {
        self.errno = error.errno();
        if let ApiError::Internal(reason) = error {
            let summary = RequestSummary {
                method: &request.method,
                path: request.path(),
                query: request.query(),
                code: 500,
                errno: u32::from(self.errno),
                rid: Some(&self.rid),
                ..RequestSummary::default()
            };
            logging::uncaught_error(&summary, reason, "");
        }
    }

    /// Reports the answered request (metrics, then its summary line) and clears the request id.
    pub fn finish(self, metrics: &Metrics, request: &Request, response: &Response) {
        let duration = self.start.elapsed();
        let user = self.user.as_ref().map(|u| (u.policy.as_str(), uid(u)));
        if metrics.is_enabled() {
            let [bucket, collection, group, record] = &self.ids;
            metrics.request(&RequestMetrics {
                method: &request.method,
                endpoint: self.endpoint,
                status: response.status,
                bucket_id: bucket,
                collection_id: collection,
                group_id: group,
                record_id: record,
                duration,
                response_size: response.body.len(),
                user,
            });
        }
        let batch_size = (self.endpoint == "batch").then(|| SUBREQUESTS.with(Cell::get));
        logging::request_summary(&RequestSummary {
            batch_size,
            ..summary(request, response, self.errno, duration, &self.rid, user)
        });
        logging::set_request_id(None);
    }
}

/// Set once per process, on the first request: by then the worker has installed its own hook.
static PANIC_HOOK: Once = Once::new();

/// Panics of a request are logged through the configured logging (root logger at ERROR, so the
/// Sentry handler reports them, with the request id), then the worker's hook writes its line.
fn chain_panic_hooks() {
    let worker_hook = std::panic::take_hook();
    logging::install_panic_hook();
    let logging_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        logging_hook(info);
        worker_hook(info);
    }));
}

/// Logs the `subrequest.summary` line of one answered sub-request of a batch.
pub fn subrequest(
    request: &Request,
    response: &Response,
    errno: u16,
    started: Instant,
    user: Option<&User>,
) {
    SUBREQUESTS.with(|n| n.set(n.get() + 1));
    let user = user.map(|u| (u.policy.as_str(), uid(u)));
    logging::subrequest_summary(&summary(
        request,
        response,
        errno,
        started.elapsed(),
        "",
        user,
    ));
}

/// The Prometheus page when `request` asks for it and the plugin is enabled.
pub fn metrics_page(request: &Request, metrics: &Metrics) -> Option<Response> {
    if request.path() != METRICS_PATH {
        return None;
    }
    let text = metrics.render_prometheus()?;
    let mut response = Response::new(200);
    response
        .headers
        .push(("Content-Type".into(), PROMETHEUS_CONTENT_TYPE.into()));
    response.body = text.into_bytes();
    Some(response)
}

/// Kinto's route name of the Prometheus page.
pub const METRICS_ENDPOINT: &str = "prometheus_metrics";

fn summary<'a>(
    request: &'a Request,
    response: &Response,
    errno: u16,
    duration: Duration,
    rid: &'a str,
    user: Option<(&'a str, &'a str)>,
) -> RequestSummary<'a> {
    RequestSummary {
        method: &request.method,
        path: request.path(),
        query: request.query(),
        code: response.status,
        errno: u32::from(errno),
        duration,
        agent: request.header("User-Agent"),
        lang: request.header("Accept-Language"),
        // Empty: the thread's current request id (a sub-request's is its batch's).
        rid: (!rid.is_empty()).then_some(rid),
        uid: user.map(|(_, id)| id),
        authn_type: user.map(|(policy, _)| policy),
        batch_size: None,
    }
}

/// The user id without its policy prefix (`basicauth:abc` → `abc`), as Kinto logs `uid`.
fn uid(user: &User) -> &str {
    user.id
        .strip_prefix(user.policy.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(&user.id)
}

/// Kinto's route name (`endpoint` label): `unknown` for a 404 on an unknown path, `unnamed` for
/// what no route serves.
fn endpoint(route: &Route, default_bucket: bool) -> &'static str {
    match route {
        Route::Root => "hello",
        Route::Heartbeat => "heartbeat",
        Route::LbHeartbeat => "lbheartbeat",
        Route::Version => "version",
        Route::OpenApi => "openapi",
        Route::Contribute => "contribute.json",
        Route::Flush => "flush",
        Route::Batch => "batch",
        Route::Permissions => "permissions-plural",
        Route::Counters => "counters",
        Route::UserData(_) => "user-data-object",
        Route::Snapshot { .. } => "history_snapshot",
        Route::Plural(target) | Route::Object(target)
            if default_bucket && default_bucket::addresses_default(target) =>
        {
            match (target.kind, route) {
                (Kind::Bucket, Route::Object(_)) => "default_bucket",
                _ => "default_bucket_collection",
            }
        }
        Route::Plural(target) => match target.kind {
            Kind::Bucket => "bucket-plural",
            Kind::Collection => "collection-plural",
            Kind::Group => "group-plural",
            Kind::Record => "record-plural",
            Kind::Account => "account-plural",
            Kind::History => "history-plural",
        },
        Route::Object(target) => match target.kind {
            Kind::Bucket => "bucket-object",
            Kind::Collection => "collection-object",
            Kind::Group => "group-object",
            Kind::Record => "record-object",
            Kind::Account => "account-object",
            // The history has no object URL.
            Kind::History => "unnamed",
        },
        Route::Redirect {
            kind: RedirectKind::VersionPrefix,
            ..
        } => "redirect_to_version",
        Route::Redirect {
            kind: RedirectKind::TrailingSlash,
            ..
        } => "unnamed",
        Route::VersionNotAvailable | Route::NotFound => "unknown",
    }
}

/// Copies the ids of a bucket-hierarchy URL, the object id under its `<resource>_id` name.
fn target_ids(target: &Target, [bucket, collection, group, record]: [&mut String; 4]) {
    match target.kind {
        // An account id is `account_id`, not among the URL ids Kinto labels metrics with.
        Kind::Bucket | Kind::Account => {}
        Kind::Collection | Kind::Group | Kind::History => target.bucket.clone_into(bucket),
        Kind::Record => {
            target.bucket.clone_into(bucket);
            target.collection.clone_into(collection);
        }
    }
    if let Some(id) = &target.id {
        let slot = match target.kind {
            Kind::Bucket => bucket,
            Kind::Collection => collection,
            Kind::Group => group,
            Kind::Record => record,
            Kind::Account | Kind::History => return,
        };
        id.clone_into(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: Kind, bucket: &str, collection: &str, id: Option<&str>) -> Target {
        Target {
            kind,
            bucket: bucket.into(),
            collection: collection.into(),
            id: id.map(str::to_string),
        }
    }

    #[test]
    fn route_names_and_ids() {
        let record = Route::Object(target(Kind::Record, "b", "c", Some("r")));
        assert_eq!(endpoint(&record, false), "record-object");
        assert_eq!(endpoint(&Route::NotFound, false), "unknown");
        let personal = Route::Plural(target(Kind::Collection, "default", "", None));
        assert_eq!(endpoint(&personal, true), "default_bucket_collection");
        assert_eq!(endpoint(&personal, false), "collection-plural");

        let mut ids: [String; 4] = Default::default();
        let [b, c, g, r] = &mut ids;
        target_ids(&target(Kind::Record, "b", "c", Some("r")), [b, c, g, r]);
        assert_eq!(ids, ["b", "c", "", "r"]);
        let mut ids: [String; 4] = Default::default();
        let [b, c, g, r] = &mut ids;
        target_ids(&target(Kind::Bucket, "", "", Some("b1")), [b, c, g, r]);
        assert_eq!(ids, ["b1", "", "", ""]);
    }

    #[test]
    fn uid_drops_the_policy_prefix() {
        let user = User {
            id: "account:alice".into(),
            policy: "account".into(),
        };
        assert_eq!(uid(&user), "alice");
    }
}
