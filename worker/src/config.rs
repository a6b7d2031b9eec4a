//! What the worker needs from the server configuration and the listeners, in its own types, so the
//! request loop can be driven by tests without a master (and keeps working when `ServerConfig` or
//! `Listener` grow fields).

use master::{ListenSocket, Listener, ServerConfig};
use std::time::Duration;

/// The `[uwsgi]` options that shape HTTP serving in a worker.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Maximum size of a request head in bytes (`buffer-size`).
    pub buffer_size: usize,
    /// Maximum body size in bytes, decoded size for chunked bodies (`limit-post`, 0 = unlimited).
    pub limit_post: u64,
    /// Per-read and per-write inactivity timeout (`socket-timeout`).
    pub socket_timeout: Duration,
    /// Idle time of a parked keep-alive connection (`http-keepalive`, else `socket-timeout`).
    pub keepalive_timeout: Duration,
    /// Total time allowed to receive one request head (408 past it).
    pub head_timeout: Duration,
    /// `add-header` pairs, appended after the handler's headers.
    pub add_headers: Vec<(String, String)>,
    /// Maximum number of header fields (`2 * max-vars - 9`).
    pub max_headers: usize,
    /// Seconds a request may run (`harakiri`, 0 = off), passed to the scoreboard.
    pub harakiri: u64,
    /// The signal the master sends first on harakiri when `harakiri-graceful-timeout` is set: the
    /// worker answers 504 to the client it is serving, then exits (3.6).
    pub harakiri_graceful_signal: Option<i32>,
    /// Stop gracefully after this many requests (0 = never).
    pub max_requests: u64,
    /// Stop gracefully when RSS reaches this many megabytes (0 = never).
    pub reload_on_rss: u64,
    /// Recycling (`max_requests`, `reload_on_rss`) waits until the worker is this old.
    pub min_worker_lifetime: Duration,
    /// No request log lines (`disable-logging`)...
    pub disable_logging: bool,
    /// ...except for 4xx ones (`log-4xx`)...
    pub log_4xx: bool,
    /// ...and 5xx ones (`log-5xx`).
    pub log_5xx: bool,
    /// Request line template (`log-format`, 6.5) instead of uWSGI's default line.
    pub log_format: Option<String>,
    /// Response times in microseconds in the default line (`log-micros`).
    pub log_micros: bool,
    /// The request log shows `X-Forwarded-For` instead of the peer (`log-x-forwarded-for`).
    pub log_x_forwarded_for: bool,
}

/// Most parked connections (idle keep-alive ones and heads still arriving) a worker keeps (4.2);
/// the least recently active is closed beyond it.
pub const MAX_PARKED: usize = 512;

impl Default for HttpConfig {
    /// uWSGI's defaults.
    fn default() -> Self {
        HttpConfig {
            buffer_size: 4096,
            limit_post: 0,
            socket_timeout: Duration::from_secs(4),
            keepalive_timeout: Duration::from_secs(4),
            head_timeout: Duration::from_secs(30),
            add_headers: Vec::new(),
            max_headers: 119,
            harakiri: 0,
            harakiri_graceful_signal: None,
            max_requests: 0,
            reload_on_rss: 0,
            min_worker_lifetime: Duration::from_secs(10),
            disable_logging: false,
            log_4xx: false,
            log_5xx: false,
            log_format: None,
            log_micros: false,
            log_x_forwarded_for: false,
        }
    }
}

impl HttpConfig {
    /// The worker's view of the validated server configuration.
    pub fn from_server(config: &ServerConfig) -> Self {
        HttpConfig {
            buffer_size: config.buffer_size.clamp(16, 65535),
            limit_post: config.limit_post,
            socket_timeout: config.socket_timeout,
            keepalive_timeout: config.keepalive_timeout.unwrap_or(config.socket_timeout),
            head_timeout: Duration::from_secs(30),
            add_headers: config.add_headers.clone(),
            max_headers: config.max_headers,
            harakiri: config.harakiri,
            harakiri_graceful_signal: (config.harakiri > 0
                && !config.harakiri_graceful_timeout.is_zero())
            .then_some(config.harakiri_graceful_signal),
            max_requests: config.max_requests,
            reload_on_rss: config.reload_on_rss,
            min_worker_lifetime: config.min_worker_lifetime,
            disable_logging: config.disable_logging,
            log_4xx: config.log_4xx,
            log_5xx: config.log_5xx,
            log_format: config.log_format.clone(),
            log_micros: config.log_micros,
            log_x_forwarded_for: config.log_x_forwarded_for,
        }
    }
}

/// A listening socket as the worker serves it.
#[derive(Debug)]
pub struct HttpListener {
    pub socket: ListenSocket,
    /// Connections may stay open for further requests (`http11-socket`).
    pub keep_alive: bool,
}

impl From<Listener> for HttpListener {
    fn from(listener: Listener) -> Self {
        HttpListener {
            socket: listener.socket,
            keep_alive: listener.keep_alive,
        }
    }
}
