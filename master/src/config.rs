//! The `[uwsgi]` section: uWSGI's ini dialect, the option registry and the validated config.

use std::time::Duration;

/// The validated `[uwsgi]` options. Fields read by the worker are listed first.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `buffer-size`: maximum size of a request head in bytes (clamped to 65535).
    pub buffer_size: usize,
    /// `limit-post`: maximum body size in bytes (0 = unlimited).
    pub limit_post: u64,
    /// `post-buffering`: bodies above this size may be spooled to a file (0 = memory).
    pub post_buffering: u64,
    /// `socket-timeout`: per-read/write inactivity timeout; keep-alive idle time.
    pub socket_timeout: Duration,
    /// `http-keepalive`: idle timeout of keep-alive connections when set.
    pub keepalive_timeout: Option<Duration>,
    /// `add-header`: `(name, value)` pairs appended to every response.
    pub add_headers: Vec<(String, String)>,
    /// `2 * max-vars - 9`: maximum number of header fields.
    pub max_headers: usize,
    /// `harakiri`: seconds a request may run (0 = off).
    pub harakiri: u64,
    /// `max-requests` (+ delta for this slot is computed by the master).
    pub max_requests: u64,
    /// `reload-on-rss` in megabytes (0 = off).
    pub reload_on_rss: u64,
    /// `min-worker-lifetime` guarding recycling.
    pub min_worker_lifetime: Duration,
    /// `disable-logging`: no request log lines.
    pub disable_logging: bool,
    /// `log-5xx`: with `disable-logging`, still log 5xx requests.
    pub log_5xx: bool,
    /// `log-x-forwarded-for`: the request log shows `X-Forwarded-For` instead of the peer.
    pub log_x_forwarded_for: bool,
    /// `processes`: number of worker slots.
    pub processes: usize,
}

impl ServerConfig {
    /// Reads and validates the `[uwsgi]` section named by the invocation (uWSGI's dialect, `UWSGI_*`
    /// environment options, command-line overrides). Without the section, falls back to
    /// `[server:main]` `host`/`port` (default 127.0.0.1:8888) with one worker per core.
    pub fn load(invocation: &crate::Invocation) -> Result<ServerConfig, String> {
        let _ = invocation;
        unimplemented!("uwsgi section")
    }
}
