//! StatsD over UDP: one metric per datagram, sent from the caller's thread on a non-blocking
//! socket through cadence's `UdpMetricSink`. A send that fails (nobody listening, full socket
//! buffer) is dropped: metrics never slow down or fail a request.
//!
//! Lines are formatted here rather than with cadence's typed builders because Kinto's sets carry
//! strings (`users:auth.account.userid.alice|s`) and its timers six-decimal milliseconds.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use cadence::{MetricSink, UdpMetricSink};

use super::config::{Naming, StatsdTarget};
use super::names::{cliquet_endpoint, cliquet_method, millis, push_labels, user_segment, Metric};

pub(crate) struct Statsd {
    sink: UdpMetricSink,
    /// `project_name.` (with the dot), or empty.
    prefix: String,
    naming: Naming,
}

impl Statsd {
    /// Resolves the target once (as Kinto's client does) and binds an ephemeral local socket.
    pub(crate) fn connect(
        target: &StatsdTarget,
        prefix: &str,
        naming: Naming,
    ) -> std::io::Result<Statsd> {
        let addr: SocketAddr = (target.host.as_str(), target.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{} does not resolve", target.host)))?;
        let local = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        let sink = UdpMetricSink::from(addr, socket).map_err(std::io::Error::other)?;
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}.")
        };
        Ok(Statsd {
            sink,
            prefix,
            naming,
        })
    }

    pub(crate) fn send(&self, metric: &Metric<'_>) {
        match self.naming {
            Naming::Kinto => self.send_kinto(metric),
            Naming::Cliquet => self.send_cliquet(metric),
        }
    }

    fn send_kinto(&self, metric: &Metric<'_>) {
        match metric {
            Metric::Timer(key, d) => self.emit(format_args!("{key}:{:.6}|ms", millis(*d))),
            Metric::Counter(key, n) => self.emit(format_args!("{key}:{n}|c")),
            Metric::BackendCall(backend, method, d) => self.emit(format_args!(
                "backend.{}.seconds.method.{}:{:.6}|ms",
                backend.as_str(),
                method,
                millis(*d)
            )),
            Metric::AuthenticationStep(policy, step, d) => self.emit(format_args!(
                "authentication.{policy}.seconds.method.{step}:{:.6}|ms",
                millis(*d)
            )),
            // Kinto 26 does not time the authorization policy.
            Metric::Permits(_) => {}
            Metric::CacheLookup(hit) => {
                let key = if *hit { "cache_hits" } else { "cache_misses" };
                self.emit(format_args!("{key}:1|c"));
            }
            Metric::Request { request, labels } => {
                let method = request.method.to_ascii_lowercase();
                let status = request.status.to_string();
                let mut head: Vec<(&str, &str)> =
                    vec![("method", &method), ("endpoint", request.endpoint)];
                head.extend_from_slice(labels);
                let mut summary = head.clone();
                summary.push(("status", &status));

                let mut value = String::new();
                push_labels(&mut value, &summary);
                self.emit(format_args!("request_summary:{value}|s"));

                value.clear();
                push_labels(&mut value, &head);
                // Kinto measures whole milliseconds for the request duration.
                let ms = request.duration.as_millis();
                self.emit(format_args!(
                    "request_duration_seconds.{value}:{ms}.000000|ms"
                ));
                self.emit(format_args!("request_size:{}|g", request.response_size));

                if let Some((policy, userid)) = request.user {
                    let user = user_segment(userid);
                    self.emit(format_args!("users:auth.{policy}.userid.{user}|s"));
                    self.emit(format_args!("authentication:type.{policy}|s"));
                }
            }
        }
    }

    fn send_cliquet(&self, metric: &Metric<'_>) {
        match metric {
            Metric::Timer(key, d) => self.emit(format_args!("{key}:{:.6}|ms", millis(*d))),
            Metric::Counter(key, n) => self.emit(format_args!("{key}:{n}|c")),
            Metric::BackendCall(backend, method, d) => self.emit(format_args!(
                "{}.{}:{:.6}|ms",
                backend.as_str(),
                cliquet_method(method),
                millis(*d)
            )),
            Metric::AuthenticationStep(policy, step, d) => self.emit(format_args!(
                "authentication.{policy}.{step}:{:.6}|ms",
                millis(*d)
            )),
            Metric::Permits(d) => {
                self.emit(format_args!("authentication.permits:{:.6}|ms", millis(*d)))
            }
            // cliquet had no cache hit counters.
            Metric::CacheLookup(_) => {}
            Metric::Request { request, .. } => {
                let endpoint = cliquet_endpoint(request.endpoint);
                let method = request.method.to_ascii_uppercase();
                self.emit(format_args!(
                    "view.{endpoint}.{method}:{:.6}|ms",
                    millis(request.duration)
                ));
                if let Some((policy, userid)) = request.user {
                    let user = user_segment(userid);
                    self.emit(format_args!("users:{policy}.{user}|s"));
                    self.emit(format_args!("authn_type.{policy}:1|c"));
                }
            }
        }
    }

    /// Sends `prefix` + `line` as one datagram, ignoring failures.
    fn emit(&self, line: std::fmt::Arguments<'_>) {
        let mut datagram = String::with_capacity(self.prefix.len() + 96);
        datagram.push_str(&self.prefix);
        let _ = datagram.write_fmt(line);
        let _ = self.sink.emit(&datagram);
    }
}
