//! Application metrics: StatsD datagrams with Kinto's metric names, and in-process aggregates for a
//! Prometheus text exposition (`/__metrics__`). A disabled [`Metrics`] handle costs one branch.
//!
//! Layout: `config` decides what is enabled from the settings, `names` holds the two naming schemes
//! (Kinto 26 and the older cliquet names of the production docs), `statsd` formats and sends
//! datagrams, `prometheus` keeps the aggregates (in the cross-worker table of `aggregates`) and
//! renders the text format, `timed` wraps the backends so that each call is timed.

mod aggregates;
mod config;
mod names;
mod prometheus;
mod statsd;
pub mod timed;

pub use aggregates::Aggregates;
pub use config::{MetricsConfig, MetricsError, Naming};

use std::sync::Arc;
use std::time::{Duration, Instant};

use names::Metric;

/// The `Content-Type` of [`Metrics::render_prometheus`]'s text.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A backend role whose calls are timed (`backend.<role>.seconds` / `<role>.<method>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Storage,
    Permission,
    Cache,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Storage => "storage",
            Backend::Permission => "permission",
            Backend::Cache => "cache",
        }
    }
}

/// What the API knows about one finished top-level request, for the per-request metrics.
#[derive(Debug, Clone, Copy)]
pub struct RequestMetrics<'a> {
    /// HTTP method as received (it is lower-cased or upper-cased per naming scheme).
    pub method: &'a str,
    /// Kinto 26 route name (`record-plural`, `hello`, ...; `unknown` for a 404 on an unknown path,
    /// `unnamed` otherwise).
    pub endpoint: &'a str,
    pub status: u16,
    /// Ids from the URL (the object id of an object URL given as `<resource>_id`); ignored when
    /// `status >= 400`, as Kinto does.
    pub bucket_id: &'a str,
    pub collection_id: &'a str,
    pub group_id: &'a str,
    pub record_id: &'a str,
    /// From reception of the request to the response.
    pub duration: Duration,
    /// Response body size in bytes.
    pub response_size: usize,
    /// `(policy, user id without the policy prefix)` for authenticated requests.
    pub user: Option<(&'a str, &'a str)>,
}

/// The handle every part of a worker uses to report metrics; cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    statsd: Option<statsd::Statsd>,
    prometheus: Option<prometheus::Registry>,
    /// `metrics_matchdict_fields`, each one of the four URL ids (others give empty values).
    matchdict_fields: Vec<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.as_deref();
        f.debug_struct("Metrics")
            .field("statsd", &inner.is_some_and(|i| i.statsd.is_some()))
            .field("prometheus", &inner.is_some_and(|i| i.prometheus.is_some()))
            .finish()
    }
}

impl Metrics {
    /// Builds the handle of one process (call it in each worker, after the fork: the UDP socket
    /// and the aggregates are per process).
    pub fn new(config: &MetricsConfig) -> Metrics {
        Metrics::with_aggregates(config, None)
    }

    /// [`Metrics::new`], adding the Prometheus aggregates to `aggregates` (the table the master
    /// created before forking, shared by all its workers) instead of a table of this process.
    pub fn with_aggregates(config: &MetricsConfig, aggregates: Option<&Aggregates>) -> Metrics {
        let statsd = config.statsd.as_ref().and_then(|target| {
            statsd::Statsd::connect(target, &config.prefix, config.naming)
                .map_err(|e| {
                    // Kinto would fail to start; a metrics host that does not resolve must not stop
                    // the service, so it is reported and StatsD stays off in this process.
                    log::warn!(target: "kinto", "StatsD disabled: {e}");
                })
                .ok()
        });
        let prometheus = config.prometheus.then(|| {
            let table = aggregates.cloned().unwrap_or_default();
            prometheus::Registry::new(&config.prefix, table)
        });
        if statsd.is_none() && prometheus.is_none() {
            return Metrics::disabled();
        }
        Metrics {
            inner: Some(Arc::new(Inner {
                statsd,
                prometheus,
                matchdict_fields: config.matchdict_fields.clone(),
            })),
        }
    }

    /// Builds the handle from the Kinto settings (see [`MetricsConfig::from_settings`]).
    pub fn from_settings(settings: &crate::settings::Settings) -> Result<Metrics, MetricsError> {
        Ok(Metrics::new(&MetricsConfig::from_settings(settings)?))
    }

    /// A handle that does nothing.
    pub fn disabled() -> Metrics {
        Metrics { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Runs `f` and times it under `key`. `storage.<m>`, `permission.<m>` and `cache.<m>` are the
    /// backend timers (named per the naming scheme, like [`Metrics::time_backend`]); any other key is
    /// a timer of that name under the prefix.
    #[inline]
    pub fn time<T>(&self, key: &str, f: impl FnOnce() -> T) -> T {
        let Some(inner) = &self.inner else {
            return f();
        };
        let start = Instant::now();
        let result = f();
        let elapsed = start.elapsed();
        let metric = match key.split_once('.') {
            Some(("storage", m)) => Metric::BackendCall(Backend::Storage, m, elapsed),
            Some(("permission", m)) => Metric::BackendCall(Backend::Permission, m, elapsed),
            Some(("cache", m)) => Metric::BackendCall(Backend::Cache, m, elapsed),
            _ => Metric::Timer(key, elapsed),
        };
        inner.record(&metric);
        result
    }

    /// Runs `f`, one call of `method` on a backend, and times it.
    #[inline]
    pub fn time_backend<T>(&self, backend: Backend, method: &str, f: impl FnOnce() -> T) -> T {
        let Some(inner) = &self.inner else {
            return f();
        };
        let start = Instant::now();
        let result = f();
        inner.record(&Metric::BackendCall(backend, method, start.elapsed()));
        result
    }

    /// Runs `f`, one step (`authenticated_userid`, `effective_principals`, ...) of an
    /// authentication policy, and times it.
    #[inline]
    pub fn time_authentication<T>(&self, policy: &str, step: &str, f: impl FnOnce() -> T) -> T {
        let Some(inner) = &self.inner else {
            return f();
        };
        let start = Instant::now();
        let result = f();
        inner.record(&Metric::AuthenticationStep(policy, step, start.elapsed()));
        result
    }

    /// Records one step of an authentication policy timed by the caller (when the policy is
    /// known only once the step is over, as with several policies tried in turn).
    #[inline]
    pub fn authentication_step(&self, policy: &str, step: &str, duration: Duration) {
        if let Some(inner) = &self.inner {
            inner.record(&Metric::AuthenticationStep(policy, step, duration));
        }
    }

    /// Runs `f`, the authorization decision of a request (allow or reject), and times it
    /// (`authentication.permits` in the cliquet names; Kinto 26 has no such timer).
    #[inline]
    pub fn time_permits<T>(&self, f: impl FnOnce() -> T) -> T {
        let Some(inner) = &self.inner else {
            return f();
        };
        let start = Instant::now();
        let result = f();
        inner.record(&Metric::Permits(start.elapsed()));
        result
    }

    /// Counts a cache read that found (`hit`) or missed its key.
    #[inline]
    pub fn cache_lookup(&self, hit: bool) {
        if let Some(inner) = &self.inner {
            inner.record(&Metric::CacheLookup(hit));
        }
    }

    /// Adds `n` to the counter `key` under the prefix.
    #[inline]
    pub fn count(&self, key: &str, n: u64) {
        if let Some(inner) = &self.inner {
            inner.record(&Metric::Counter(key, n));
        }
    }

    /// The per-request metrics, called once per top-level request at response time.
    #[inline]
    pub fn request(&self, request: &RequestMetrics<'_>) {
        let Some(inner) = &self.inner else {
            return;
        };
        let ids = [
            ("bucket_id", request.bucket_id),
            ("collection_id", request.collection_id),
            ("group_id", request.group_id),
            ("record_id", request.record_id),
        ];
        // Kinto reads the ids from the matchdict only for successful requests.
        let labels: Vec<(&str, &str)> = inner
            .matchdict_fields
            .iter()
            .map(|field| {
                let value = ids
                    .iter()
                    .find(|(name, _)| *name == field.as_str())
                    .filter(|_| request.status < 400)
                    .map_or("", |(_, value)| *value);
                (field.as_str(), value)
            })
            .collect();
        inner.record(&Metric::Request {
            request,
            labels: &labels,
        });
    }

    /// The Prometheus text exposition of the aggregates (of every worker sharing the table), or
    /// `None` when the `kinto.plugins.prometheus` plugin is not enabled (then `/__metrics__` is a 404).
    pub fn render_prometheus(&self) -> Option<String> {
        let registry = self.inner.as_ref()?.prometheus.as_ref()?;
        Some(registry.render())
    }
}

impl Inner {
    fn record(&self, metric: &Metric<'_>) {
        if let Some(statsd) = &self.statsd {
            statsd.send(metric);
        }
        if let Some(prometheus) = &self.prometheus {
            prometheus.record(metric);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_shareable() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<Metrics>();
        let disabled = Metrics::disabled();
        assert!(!disabled.is_enabled());
        assert_eq!(
            format!("{disabled:?}"),
            "Metrics { statsd: false, prometheus: false }"
        );
    }

    #[test]
    fn prometheus_only() {
        let config = MetricsConfig::from_parts(
            &["kinto.plugins.prometheus".to_owned()],
            None,
            "kinto",
            "",
            Some("bucket_id"),
        )
        .unwrap();
        let metrics = Metrics::new(&config);
        assert!(metrics.is_enabled());
        metrics.time_backend(Backend::Cache, "get", || ());
        metrics.cache_lookup(false);
        metrics.request(&RequestMetrics {
            method: "GET",
            endpoint: "bucket-object",
            status: 403,
            bucket_id: "b",
            collection_id: "",
            group_id: "",
            record_id: "",
            duration: Duration::from_millis(1),
            response_size: 0,
            user: None,
        });
        let text = metrics.render_prometheus().unwrap();
        assert!(
            text.contains("kinto_backend_cache_seconds_count{method=\"get\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("kinto_cache_misses_total 1\n"), "{text}");
        // Only the configured matchdict field, emptied for an error status.
        assert!(
            text.contains("kinto_request_summary_total{method=\"get\",endpoint=\"bucket-object\",bucket_id=\"\",status=\"403\"} 1\n"),
            "{text}"
        );
    }
}
