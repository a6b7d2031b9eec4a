//! In-process aggregates of the metrics, rendered in the Prometheus text format (version 0.0.4)
//! with the names of Kinto's `kinto.plugins.prometheus`: `<prefix>_<name>` with `.`/`-` turned into
//! `_`, counters suffixed `_total`, timers in seconds. Timers and sizes are summaries (`_sum`,
//! `_count`) rather than Kinto's histograms.
//!
//! The number of series is bounded (labels such as `userid` are unbounded in number): past
//! [`MAX_SERIES`], new series are dropped and counted in `<prefix>_metrics_dropped_series_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use super::names::Metric;

pub(crate) const MAX_SERIES: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Summary,
}

#[derive(Default)]
struct Series {
    /// Counter value, or the number of observations of a summary.
    count: u64,
    /// Sum of a summary's observations.
    sum: f64,
}

pub(crate) struct Registry {
    /// `kinto_`: Kinto strips `_` from the cleaned prefix and lower-cases it.
    prefix: String,
    /// Metric name -> kind and series by rendered label set.
    families: Mutex<Families>,
}

#[derive(Default)]
struct Families {
    metrics: BTreeMap<String, (Kind, BTreeMap<String, Series>)>,
    series: usize,
    dropped: u64,
}

fn clean(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&clean(name));
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

impl Registry {
    pub(crate) fn new(prefix: &str) -> Registry {
        let cleaned = clean(prefix).replace('_', "").to_lowercase();
        Registry {
            prefix: if cleaned.is_empty() {
                String::new()
            } else {
                format!("{cleaned}_")
            },
            families: Mutex::new(Families::default()),
        }
    }

    pub(crate) fn record(&self, metric: &Metric<'_>) {
        let secs = |d: &Duration| d.as_secs_f64();
        match metric {
            Metric::Timer(key, d) => self.add(Kind::Summary, key, &[], secs(d)),
            Metric::Counter(key, n) => self.add(Kind::Counter, key, &[], *n as f64),
            Metric::BackendCall(backend, method, d) => {
                let name = format!("backend_{}_seconds", backend.as_str());
                self.add(Kind::Summary, &name, &[("method", method)], secs(d))
            }
            Metric::AuthenticationStep(policy, step, d) => {
                let name = format!("authentication_{policy}_seconds");
                self.add(Kind::Summary, &name, &[("method", step)], secs(d))
            }
            Metric::Permits(_) => {}
            Metric::CacheLookup(hit) => {
                let name = if *hit { "cache_hits" } else { "cache_misses" };
                self.add(Kind::Counter, name, &[], 1.0)
            }
            Metric::Request { request, labels } => {
                let method = request.method.to_ascii_lowercase();
                let status = request.status.to_string();
                let mut head: Vec<(&str, &str)> =
                    vec![("method", &method), ("endpoint", request.endpoint)];
                head.extend_from_slice(labels);
                let mut summary = head.clone();
                summary.push(("status", &status));
                self.add(Kind::Counter, "request_summary", &summary, 1.0);
                self.add(
                    Kind::Summary,
                    "request_duration_seconds",
                    &head,
                    secs(&request.duration),
                );
                self.add(
                    Kind::Summary,
                    "request_size",
                    &head[1..],
                    request.response_size as f64,
                );
                if let Some((policy, userid)) = request.user {
                    self.add(
                        Kind::Counter,
                        "users",
                        &[("auth", policy), ("userid", userid)],
                        1.0,
                    );
                    self.add(Kind::Counter, "authentication", &[("type", policy)], 1.0);
                }
            }
        }
    }

    fn add(&self, kind: Kind, name: &str, labels: &[(&str, &str)], value: f64) {
        let name = clean(name);
        let labels = render_labels(labels);
        // A panic elsewhere while holding the lock leaves plain numbers: keep using them.
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let families = &mut *families;
        let full = families.series >= MAX_SERIES;
        let (_, series) = families
            .metrics
            .entry(name)
            .or_insert_with(|| (kind, BTreeMap::new()));
        let entry = match series.get_mut(&labels) {
            Some(entry) => entry,
            None if full => {
                families.dropped += 1;
                return;
            }
            None => {
                families.series += 1;
                series.entry(labels).or_default()
            }
        };
        match kind {
            Kind::Counter => entry.count += value as u64,
            Kind::Summary => {
                entry.count += 1;
                entry.sum += value;
            }
        }
    }

    pub(crate) fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let p = &self.prefix;
        for (name, (kind, series)) in &families.metrics {
            match kind {
                Kind::Counter => {
                    let _ = writeln!(out, "# HELP {p}{name}_total Counter of {name}");
                    let _ = writeln!(out, "# TYPE {p}{name}_total counter");
                    for (labels, s) in series {
                        let _ = writeln!(out, "{p}{name}_total{} {}", braces(labels), s.count);
                    }
                }
                Kind::Summary => {
                    let _ = writeln!(out, "# HELP {p}{name} Summary of {name}");
                    let _ = writeln!(out, "# TYPE {p}{name} summary");
                    for (labels, s) in series {
                        let _ = writeln!(out, "{p}{name}_sum{} {}", braces(labels), s.sum);
                        let _ = writeln!(out, "{p}{name}_count{} {}", braces(labels), s.count);
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP {p}metrics_dropped_series_total Observations dropped past {MAX_SERIES} series"
        );
        let _ = writeln!(out, "# TYPE {p}metrics_dropped_series_total counter");
        let _ = writeln!(out, "{p}metrics_dropped_series_total {}", families.dropped);
        out
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Backend, RequestMetrics};

    #[test]
    fn renders_counters_and_summaries() {
        let r = Registry::new("kinto");
        let req = RequestMetrics {
            method: "GET",
            endpoint: "record-object",
            status: 200,
            bucket_id: "b",
            collection_id: "c",
            group_id: "",
            record_id: "r\"1",
            duration: Duration::from_millis(250),
            response_size: 10,
            user: Some(("account", "alice")),
        };
        let labels = [("bucket_id", "b"), ("record_id", "r\"1")];
        r.record(&Metric::Request {
            request: &req,
            labels: &labels,
        });
        r.record(&Metric::Request {
            request: &req,
            labels: &labels,
        });
        r.record(&Metric::BackendCall(
            Backend::Storage,
            "get",
            Duration::from_millis(500),
        ));
        let text = r.render();
        assert!(
            text.contains("# TYPE kinto_request_summary_total counter\n"),
            "{text}"
        );
        assert!(text.contains(
            "kinto_request_summary_total{method=\"get\",endpoint=\"record-object\",bucket_id=\"b\",record_id=\"r\\\"1\",status=\"200\"} 2\n"
        ), "{text}");
        assert!(text.contains("kinto_request_duration_seconds_sum{method=\"get\",endpoint=\"record-object\",bucket_id=\"b\",record_id=\"r\\\"1\"} 0.5\n"), "{text}");
        assert!(text.contains("kinto_users_total{auth=\"account\",userid=\"alice\"} 2\n"));
        assert!(text.contains("kinto_backend_storage_seconds_count{method=\"get\"} 1\n"));
        assert!(text.contains("kinto_metrics_dropped_series_total 0\n"));
    }

    #[test]
    fn series_are_bounded() {
        let r = Registry::new("my-proj");
        for i in 0..MAX_SERIES + 5 {
            r.add(Kind::Counter, "users", &[("userid", &i.to_string())], 1.0);
        }
        let text = r.render();
        assert!(
            text.contains("myproj_metrics_dropped_series_total 5\n"),
            "{}",
            &text[text.len() - 200..]
        );
        assert_eq!(text.matches("myproj_users_total{").count(), MAX_SERIES);
    }
}
