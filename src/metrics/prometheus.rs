//! Aggregates of the metrics, rendered in the Prometheus text format (version 0.0.4)
//! with the names of Kinto's `kinto.plugins.prometheus`: `<prefix>_<name>` with `.`/`-` turned into
//! `_`, counters suffixed `_total`, timers in seconds. Timers and sizes are summaries (`_sum`,
//! `_count`) rather than Kinto's histograms.
//!
//! The aggregates live in an [`Aggregates`] table shared by every worker of the master, so a scrape
//! sums all of them. The number of series is bounded (labels such as `userid` are unbounded in
//! number): past [`MAX_SERIES`], new series are dropped and counted in
//! `<prefix>_metrics_dropped_series_total`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::aggregates::{Aggregates, MAX_SERIES};
use super::names::Metric;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Summary,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Counter => b'c',
            Kind::Summary => b's',
        }
    }
}

/// The series of one metric: rendered labels -> (count, sum).
type Family = BTreeMap<String, (u64, f64)>;

pub(crate) struct Registry {
    /// `kinto_`: Kinto strips `_` from the cleaned prefix and lower-cases it.
    prefix: String,
    /// Series keyed `<kind tag><name>\0<rendered labels>`.
    aggregates: Aggregates,
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
    pub(crate) fn new(prefix: &str, aggregates: Aggregates) -> Registry {
        let cleaned = clean(prefix).replace('_', "").to_lowercase();
        Registry {
            prefix: if cleaned.is_empty() {
                String::new()
            } else {
                format!("{cleaned}_")
            },
            aggregates,
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
        let mut key = String::with_capacity(64);
        key.push(kind.tag() as char);
        key.push_str(&clean(name));
        key.push('\0');
        key.push_str(&render_labels(labels));
        match kind {
            Kind::Counter => self.aggregates.add(key.as_bytes(), value as u64, 0.0),
            Kind::Summary => self.aggregates.add(key.as_bytes(), 1, value),
        };
    }

    pub(crate) fn render(&self) -> String {
        // Name -> kind and series by rendered label set, sorted for a stable output.
        let mut families: BTreeMap<String, (Kind, Family)> = BTreeMap::new();
        self.aggregates.for_each(|key, count, sum| {
            let kind = match key.first() {
                Some(b'c') => Kind::Counter,
                Some(b's') => Kind::Summary,
                _ => return,
            };
            let text = String::from_utf8_lossy(&key[1..]);
            let Some((name, labels)) = text.split_once('\0') else {
                return;
            };
            families
                .entry(name.to_owned())
                .or_insert_with(|| (kind, BTreeMap::new()))
                .1
                .insert(labels.to_owned(), (count, sum));
        });
        let mut out = String::new();
        let p = &self.prefix;
        for (name, (kind, series)) in &families {
            match kind {
                Kind::Counter => {
                    let _ = writeln!(out, "# HELP {p}{name}_total Counter of {name}");
                    let _ = writeln!(out, "# TYPE {p}{name}_total counter");
                    for (labels, (count, _)) in series {
                        let _ = writeln!(out, "{p}{name}_total{} {count}", braces(labels));
                    }
                }
                Kind::Summary => {
                    let _ = writeln!(out, "# HELP {p}{name} Summary of {name}");
                    let _ = writeln!(out, "# TYPE {p}{name} summary");
                    for (labels, (count, sum)) in series {
                        let _ = writeln!(out, "{p}{name}_sum{} {sum}", braces(labels));
                        let _ = writeln!(out, "{p}{name}_count{} {count}", braces(labels));
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP {p}metrics_dropped_series_total Observations dropped past {MAX_SERIES} series"
        );
        let _ = writeln!(out, "# TYPE {p}metrics_dropped_series_total counter");
        let _ = writeln!(
            out,
            "{p}metrics_dropped_series_total {}",
            self.aggregates.dropped()
        );
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
        let r = Registry::new("kinto", Aggregates::new());
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
        let r = Registry::new("my-proj", Aggregates::new());
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
