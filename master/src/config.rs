//! The `[uwsgi]` section: uWSGI's ini dialect, the option registry and the validated config.
//!
//! Loading runs the dialect (`dialect`), maps every key through the registry (`registry`), then
//! builds the typed [`ServerConfig`]. Validation errors are one line each; the caller exits 1.

use crate::dialect::{self, Magic};
use crate::registry::{self, Effect, Kind};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The protocol flavour of a configured listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `http-socket` (or `socket` with `protocol = http`).
    Http,
    /// `http11-socket`: keep-alive allowed.
    Http11,
    /// `http`: uWSGI's router address, served directly by the workers.
    HttpRouter,
}

/// One configured listening address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSpec {
    pub kind: SocketKind,
    /// The address as written (`127.0.0.1:8000`, `:8000`, `[::1]:8000`, a path, `@name`).
    pub address: String,
    /// Keep-alive connections are allowed on it.
    pub keep_alive: bool,
}

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
    /// `log-4xx`: with `disable-logging`, still log 4xx requests.
    pub log_4xx: bool,
    /// `log-format`: request line template (6.5), when set.
    pub log_format: Option<String>,
    /// `log-micros`: response times in microseconds.
    pub log_micros: bool,
    /// Read by the worker once it implements them (their registry entries still say "not
    /// implemented yet" until then): `tcp-nodelay`, `reload-on-as` (MB), `thunder-lock`,
    /// `memory-report`, `del-header`, `enable-proxy-protocol`, `log-slow` (ms), `log-big`
    /// (bytes), `log-zero`, `log-ioerror`.
    pub tcp_nodelay: bool,
    pub reload_on_as: u64,
    pub thunder_lock: bool,
    pub memory_report: bool,
    pub del_headers: Vec<String>,
    pub enable_proxy_protocol: bool,
    pub log_slow: u64,
    pub log_big: u64,
    pub log_zero: bool,
    pub log_ioerror: bool,

    // Master-only options below.
    /// The absolute path of the ini file (re-read on reload).
    pub ini: PathBuf,
    /// `http-socket`, `http11-socket`, `http`, `socket` (with `protocol = http`), in file order.
    pub sockets: Vec<SocketSpec>,
    /// `shared-socket` addresses, referenced as `=N` by socket lines.
    pub shared_sockets: Vec<String>,
    /// `abstract-socket`: Unix socket names are abstract.
    pub abstract_socket: bool,
    /// `chdir2`: working directory of the workers.
    pub chdir2: Option<PathBuf>,
    /// `add-gid`: extra supplementary groups.
    pub add_gids: Vec<u32>,
    /// Process titles: `procname-prefix` (or `procname-prefix-spaced` plus a space),
    /// `procname-append`, `procname` (workers), `procname-master`, `auto-procname`.
    pub procname_prefix: Option<String>,
    pub procname_append: Option<String>,
    pub procname: Option<String>,
    pub procname_master: Option<String>,
    pub auto_procname: bool,
    /// `listen`: backlog of self-bound listeners.
    pub listen: u32,
    /// `chmod-socket`: mode of Unix socket files.
    pub chmod_socket: Option<u32>,
    /// `chown-socket`: owner and group of Unix socket files.
    pub chown_socket: Option<(Option<u32>, Option<u32>)>,
    /// `uid`, resolved, with the user name when known (for `initgroups`).
    pub uid: Option<(u32, Option<String>)>,
    /// `gid`, resolved.
    pub gid: Option<u32>,
    /// `no-initgroups`.
    pub no_initgroups: bool,
    /// `umask` (octal).
    pub umask: Option<u32>,
    /// `vacuum`.
    pub vacuum: bool,
    /// `pidfile` (relative to the starting directory).
    pub pidfile: Option<PathBuf>,
    /// `chdir`.
    pub chdir: Option<PathBuf>,
    /// `env` (`KEY`, `VALUE`), already applied to the process environment by `load`.
    pub env: Vec<(String, String)>,
    /// `unenv`, already applied by `load`.
    pub unenv: Vec<String>,
    /// `lazy`: SIGHUP is a rolling worker reload; the master stays.
    pub lazy: bool,
    /// `lazy-apps`.
    pub lazy_apps: bool,
    /// `worker-reload-mercy` (or `reload-mercy` when only that one is set).
    pub worker_reload_mercy: Duration,
    /// `forkbomb-delay`.
    pub forkbomb_delay: Duration,
    /// `need-app`.
    pub need_app: bool,
    /// `harakiri-verbose`.
    pub harakiri_verbose: bool,
    /// `harakiri-graceful-timeout` (0 = SIGKILL at once) and `harakiri-graceful-signal`.
    pub harakiri_graceful_timeout: Duration,
    pub harakiri_graceful_signal: i32,
    /// `max-requests-delta`.
    pub max_requests_delta: u64,
    /// `max-worker-lifetime` (0 = off) and its per-slot delta.
    pub max_worker_lifetime: Duration,
    pub max_worker_lifetime_delta: Duration,
    /// `evil-reload-on-rss` / `evil-reload-on-as` in megabytes (0 = off): SIGKILL by the master.
    pub evil_reload_on_rss: u64,
    pub evil_reload_on_as: u64,
    /// `reuse-port`, `so-keepalive`, `freebind` on TCP listeners.
    pub reuse_port: bool,
    pub so_keepalive: bool,
    pub freebind: bool,
    /// `TCP_DEFER_ACCEPT` (= `socket-timeout`) on TCP listeners, unless `no-defer-accept`.
    pub defer_accept: bool,
    /// `pidfile2` (written after the drop), `safe-pidfile`/`safe-pidfile2` (written via rename).
    pub pidfile2: Option<PathBuf>,
    pub safe_pidfile: Option<PathBuf>,
    pub safe_pidfile2: Option<PathBuf>,
    /// `daemonize`/`daemonize2`: detach and log to this file.
    pub daemonize: Option<PathBuf>,
    /// `log-date`: prefix of the master's lifecycle lines: `Some("")` for the C `ctime()` form,
    /// else a `strftime` format.
    pub log_date: Option<String>,
    /// `log-maxsize` (bytes, 0 = off) and `log-backupname`: rotation of `logto` by the master.
    pub log_maxsize: u64,
    pub log_backupname: Option<PathBuf>,
    /// `logto2`: log file opened after privileges are dropped.
    pub logto2: Option<PathBuf>,
    /// `max-fd`: `RLIMIT_NOFILE` (0 = unchanged).
    pub max_fd: u64,
    /// `touch-workers-reload`, `touch-chain-reload`, `touch-logreopen` files.
    pub touch_workers_reload: Vec<PathBuf>,
    pub touch_chain_reload: Vec<PathBuf>,
    pub touch_logreopen: Vec<PathBuf>,
    /// `master-fifo`: the first one is used.
    pub master_fifo: Vec<PathBuf>,
    /// `log-reopen`: reopen `logto` on reload.
    pub log_reopen: bool,
    /// `stats`: address of the stats server; `stats-http`, `stats-minified`, `stats-no-cores`.
    pub stats: Option<String>,
    pub stats_http: bool,
    pub stats_minified: bool,
    pub stats_no_cores: bool,
    /// `touch-reload` files.
    pub touch_reload: Vec<PathBuf>,
    /// `logto` file.
    pub logto: Option<PathBuf>,
    /// `exit-on-reload`.
    pub exit_on_reload: bool,
    /// `no-orphans`.
    pub no_orphans: bool,
    /// Lines to log at startup: notices, warnings (after the banner, before the workers).
    pub notices: Vec<String>,
    /// The options as applied, in order, for the SIGUSR1 dump.
    pub options: Vec<(String, String)>,
}

impl Default for ServerConfig {
    /// The defaults of every option, no listener.
    fn default() -> ServerConfig {
        ServerConfig::from_entries(Vec::new(), PathBuf::new(), HashSet::new())
            .expect("registry defaults are valid")
    }
}

/// Environment variables named like options but which are not (1.2 rule 10).
const NOT_OPTIONS: &[&str] = &["UWSGI_RELOADS", "UWSGI_ORIGINAL_PROC_NAME"];

impl ServerConfig {
    /// Reads and validates the `[uwsgi]` section named by the invocation (uWSGI's dialect, `UWSGI_*`
    /// environment options, command-line overrides). Without the section, falls back to
    /// `[server:main]` `host`/`port` (default 127.0.0.1:8888) with one worker per core.
    ///
    /// Side effect: `env`/`unenv` lines are applied to the process environment, so that settings
    /// read afterwards (Kinto's `KINTO_*` variables) see them, as under uWSGI.
    pub fn load(invocation: &crate::Invocation) -> Result<ServerConfig, String> {
        let path = absolute(&invocation.ini);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("unable to read configuration file {}: {e}", path.display()))?;
        let config = ServerConfig::from_text(&text, &path, invocation)?;
        for name in &config.unenv {
            std::env::remove_var(name);
        }
        for (key, value) in &config.env {
            std::env::set_var(key, value);
        }
        Ok(config)
    }

    /// Parses configuration text as if read from `path` (no side effect).
    pub fn from_text(
        text: &str,
        path: &Path,
        invocation: &crate::Invocation,
    ) -> Result<ServerConfig, String> {
        let section = if invocation.section.is_empty() {
            "uwsgi"
        } else {
            invocation.section.as_str()
        };
        let magic = Magic {
            path: path.to_path_buf(),
            given: invocation.ini.to_string_lossy().into_owned(),
            section: invocation.section.clone(),
        };
        let mut notices = Vec::new();
        let file_entries =
            match dialect::section_entries(&dialect::substitute_magic(text, &magic), section) {
                Some(entries) => entries,
                None => {
                    let (entries, line) = server_main_fallback(text, path, section)?;
                    notices.push(line);
                    entries
                }
            };
        let file_entries = crate::logic::expand(file_entries, section, 0)?;
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("UWSGI_") && !NOT_OPTIONS.contains(&k.as_str()))
            .map(|(k, v)| (k["UWSGI_".len()..].to_lowercase().replace('_', "-"), v))
            // Only names of real options: stray UWSGI_* variables must not trip `strict`.
            .filter(|(k, _)| registry::lookup(k).is_some())
            .collect();
        env.sort();
        entries.extend(env);
        entries.extend(file_entries);
        entries.extend(invocation.overrides.iter().cloned());
        let entries: Vec<(String, String)> = entries
            .into_iter()
            .map(|(k, v)| (k, dialect::substitute_files(&dialect::substitute_env(&v))))
            .collect();
        let table = dialect::reference_table(&entries);
        let mut used = HashSet::new();
        let entries: Vec<(String, String)> = entries
            .into_iter()
            .map(|(k, v)| {
                let v = dialect::substitute_references(&v, &table, &mut used);
                (k, v)
            })
            .collect();
        let mut config = ServerConfig::from_entries(entries, path.to_path_buf(), used)?;
        notices.append(&mut config.notices);
        config.notices = notices;
        Ok(config)
    }

    /// Builds the config from resolved `(key, value)` entries in application order.
    fn from_entries(
        entries: Vec<(String, String)>,
        ini: PathBuf,
        referenced: HashSet<String>,
    ) -> Result<ServerConfig, String> {
        let mut v = Values::default();
        let mut unknown: Vec<String> = Vec::new();
        for (key, value) in &entries {
            match registry::lookup(key) {
                None => {
                    if !unknown.contains(key) {
                        unknown.push(key.clone());
                    }
                }
                Some(spec) => match spec.effect {
                    Effect::Reject(why) => {
                        return Err(format!(
                            "option \"{key}\" is not supported by this server: {why}"
                        ))
                    }
                    // Values of noticed options are kept too: the worker may read some before
                    // the registry calls them honoured.
                    Effect::Notice(_) | Effect::Honoured => {
                        if let Effect::Notice(why) = spec.effect {
                            v.notice(key, why);
                        }
                        match spec.kind {
                            Kind::List => v.lists.entry(spec.name).or_default().push(value.clone()),
                            _ => {
                                v.scalars.insert(spec.name, (key.clone(), value.clone()));
                            }
                        }
                    }
                },
            }
        }
        let strict = v.bool("strict");
        for key in &unknown {
            if strict {
                return Err(format!("[strict-mode] unknown config directive: {key}"));
            }
            if !referenced.contains(key) {
                v.notice(key, "unknown option, kept as a placeholder");
            }
        }
        if v.scalars.contains_key("master") && !v.bool("master") {
            v.notice("master", "the master process is always enabled");
        }

        let keep_alive_secs = v.int("http-keepalive")?;
        let http_keepalive = v.scalars.contains_key("http-keepalive") && keep_alive_secs > 0;
        let mut sockets = Vec::new();
        let protocol = v.str("protocol").unwrap_or_default().to_string();
        if !matches!(protocol.as_str(), "" | "http" | "uwsgi") {
            return Err(format!(
                "invalid value for option \"protocol\": {protocol} (only http is served)"
            ));
        }
        for (option, kind) in [
            ("http-socket", SocketKind::Http),
            ("http11-socket", SocketKind::Http11),
            ("http", SocketKind::HttpRouter),
            ("socket", SocketKind::Http),
        ] {
            for address in v.list(option) {
                if option == "socket" && protocol != "http" {
                    return Err("option \"socket\" speaks the uwsgi protocol, which this server does not support yet: use http-socket (and nginx proxy_pass)".to_string());
                }
                // Lead's decision for benchmarks: `http-keepalive` also enables keep-alive on
                // `http-socket` listeners (uWSGI ignores it there).
                let keep_alive = match kind {
                    SocketKind::Http11 => true,
                    SocketKind::Http | SocketKind::HttpRouter => http_keepalive,
                };
                sockets.push(SocketSpec {
                    kind,
                    address: address.clone(),
                    keep_alive,
                });
            }
        }
        if v.list("http").next().is_some() {
            v.notice("http", "http router replaced by a direct listener");
        }
        for mount in v.list("mount") {
            let point = mount.split_once('=').map_or(mount.as_str(), |(p, _)| p);
            if !(point.is_empty() || point == "/") {
                return Err(format!("option \"mount\" is not supported by this server: mountpoint {point} (serve a prefix through nginx)"));
            }
        }

        let mut buffer_size = v.int("buffer-size")?;
        if buffer_size > 65535 {
            v.notices.push(format!(
                "warning: option \"buffer-size\" value {buffer_size} clamped to 65535"
            ));
            buffer_size = 65535;
        }
        let socket_timeout = Duration::from_secs(v.int("socket-timeout")?);
        // `http-timeout` belongs to uWSGI's router: it only matters with `http` lines, where it
        // is the idle time of keep-alive connections when `http-keepalive` gives none.
        let has_router_lines = v.list("http").next().is_some();
        let http_timeout = Duration::from_secs(v.int("http-timeout")?);
        if v.scalars.contains_key("http-timeout") && !has_router_lines {
            v.notice("http-timeout", "it only applies to `http` listeners");
        }
        let keepalive_timeout = http_keepalive.then(|| {
            if keep_alive_secs > 1 {
                Duration::from_secs(keep_alive_secs)
            } else if has_router_lines {
                http_timeout
            } else {
                socket_timeout
            }
        });
        let add_headers = v
            .list("add-header")
            .map(|h| match h.split_once(':') {
                Some((name, value)) => Ok((name.trim().to_string(), value.trim().to_string())),
                None => Err(format!("invalid value for option \"add-header\": {h}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let max_vars = v.int("max-vars")? as usize;

        let chmod_socket = match v.scalars.get("chmod-socket") {
            None => None,
            Some((_, value)) if value.is_empty() || value == "1" => Some(0o666),
            Some((_, value))
                if value.len() == 3 && value.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
            {
                Some(u32::from_str_radix(value, 8).expect("octal digits"))
            }
            Some((_, value)) => return Err(format!("invalid chmod value: {value}")),
        };
        let chown_socket = match v.str("chown-socket") {
            None => None,
            Some(spec) => {
                let (user, group) = match spec.split_once(':') {
                    Some((u, g)) => (u, Some(g)),
                    None => (spec, None),
                };
                let uid = resolve_user(user)
                    .map_err(|_| format!("unable to find user {user}"))?
                    .0;
                let gid = match group {
                    Some(g) => {
                        Some(resolve_group(g).map_err(|_| format!("unable to find group {g}"))?)
                    }
                    None => None,
                };
                Some((Some(uid), gid))
            }
        };
        let uid = match v.str("uid") {
            Some(u) => Some(resolve_user(u)?),
            None => None,
        };
        let gid = match v.str("gid") {
            Some(g) => Some(resolve_group(g)?),
            None => None,
        };
        let umask = match v.str("umask") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .map_err(|_| format!("invalid value for option \"umask\": {m}"))?,
            ),
            None => None,
        };
        let mercy = if v.scalars.contains_key("worker-reload-mercy")
            || !v.scalars.contains_key("reload-mercy")
        {
            v.int("worker-reload-mercy")?
        } else {
            // The documented meaning of reload-mercy, which uWSGI 2.0 does not honour [fix].
            v.int("reload-mercy")?
        };
        let env = v
            .list("env")
            .map(|e| match e.split_once('=') {
                Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
                _ => Err(format!("invalid value for option \"env\": {e}")),
            })
            .collect::<Result<Vec<_>, _>>()?;

        // `logger = file:PATH` is `logto`; `stdio` is the default; others are not provided.
        let mut logto = v.str("logto").map(PathBuf::from);
        for logger in v.list("logger").cloned().collect::<Vec<_>>() {
            match logger.split_once(':') {
                Some(("file", path)) if logto.is_none() => logto = Some(PathBuf::from(path)),
                _ if logger == "stdio" => {}
                _ => v.notice(
                    "logger",
                    "only `file:PATH` and `stdio` loggers are provided",
                ),
            }
        }
        let processes = (v.int("processes")? as usize).max(1);
        let harakiri_graceful_signal = v.int("harakiri-graceful-signal")? as i32;
        if nix::sys::signal::Signal::try_from(harakiri_graceful_signal).is_err() {
            return Err(format!(
                "invalid value for option \"harakiri-graceful-signal\": {harakiri_graceful_signal}"
            ));
        }
        Ok(ServerConfig {
            buffer_size: buffer_size as usize,
            limit_post: v.int("limit-post")?,
            post_buffering: v.int("post-buffering")?,
            socket_timeout,
            keepalive_timeout,
            add_headers,
            max_headers: (2 * max_vars).saturating_sub(9),
            harakiri: v.int("harakiri")?,
            max_requests: v.int("max-requests")?,
            reload_on_rss: v.int("reload-on-rss")?,
            min_worker_lifetime: Duration::from_secs(v.int("min-worker-lifetime")?),
            disable_logging: v.bool("disable-logging"),
            log_5xx: v.bool("log-5xx"),
            log_x_forwarded_for: v.bool("log-x-forwarded-for"),
            processes,
            log_4xx: v.bool("log-4xx"),
            log_format: v.str("log-format").map(str::to_string),
            log_micros: v.bool("log-micros"),
            tcp_nodelay: v.bool("tcp-nodelay"),
            reload_on_as: v.int("reload-on-as")?,
            thunder_lock: v.bool("thunder-lock"),
            memory_report: v.bool("memory-report"),
            del_headers: v.list("del-header").cloned().collect(),
            enable_proxy_protocol: v.bool("enable-proxy-protocol"),
            log_slow: v.int("log-slow")?,
            log_big: v.int("log-big")?,
            log_zero: v.bool("log-zero"),
            log_ioerror: v.bool("log-ioerror"),
            ini,
            sockets,
            procname_prefix: v
                .str("procname-prefix-spaced")
                .map(|p| format!("{p} "))
                .or_else(|| v.str("procname-prefix").map(str::to_string)),
            procname_append: v.str("procname-append").map(str::to_string),
            procname: v.str("procname").map(str::to_string),
            procname_master: v.str("procname-master").map(str::to_string),
            auto_procname: v.bool("auto-procname"),
            shared_sockets: v.list("shared-socket").cloned().collect(),
            abstract_socket: v.bool("abstract-socket"),
            chdir2: v.str("chdir2").map(PathBuf::from),
            add_gids: v
                .list("add-gid")
                .map(|g| resolve_group(g))
                .collect::<Result<Vec<_>, _>>()?,
            listen: v.int("listen")?.min(u64::from(u32::MAX)) as u32,
            chmod_socket,
            chown_socket,
            uid,
            gid,
            no_initgroups: v.bool("no-initgroups"),
            umask,
            vacuum: v.bool("vacuum"),
            pidfile: v.str("pidfile").map(PathBuf::from),
            chdir: v.str("chdir").map(PathBuf::from),
            env,
            unenv: v.list("unenv").cloned().collect(),
            lazy: v.bool("lazy"),
            lazy_apps: v.bool("lazy-apps"),
            worker_reload_mercy: Duration::from_secs(mercy),
            forkbomb_delay: Duration::from_secs(v.int("forkbomb-delay")?),
            need_app: v.bool("need-app"),
            harakiri_verbose: v.bool("harakiri-verbose"),
            max_requests_delta: v.int("max-requests-delta")?,
            harakiri_graceful_timeout: Duration::from_secs(v.int("harakiri-graceful-timeout")?),
            harakiri_graceful_signal,
            max_worker_lifetime: Duration::from_secs(v.int("max-worker-lifetime")?),
            max_worker_lifetime_delta: Duration::from_secs(v.int("max-worker-lifetime-delta")?),
            evil_reload_on_rss: v.int("evil-reload-on-rss")?,
            evil_reload_on_as: v.int("evil-reload-on-as")?,
            reuse_port: v.bool("reuse-port"),
            so_keepalive: v.bool("so-keepalive"),
            freebind: v.bool("freebind"),
            defer_accept: !v.bool("no-defer-accept"),
            pidfile2: v.str("pidfile2").map(PathBuf::from),
            safe_pidfile: v.str("safe-pidfile").map(PathBuf::from),
            safe_pidfile2: v.str("safe-pidfile2").map(PathBuf::from),
            logto2: v.str("logto2").map(PathBuf::from),
            daemonize: v
                .str("daemonize")
                .or_else(|| v.str("daemonize2"))
                .map(PathBuf::from),
            log_date: match v.scalars.get("log-date") {
                None => None,
                Some((_, value)) if value.is_empty() || value.eq_ignore_ascii_case("true") => {
                    Some(String::new())
                }
                Some((_, value)) if !dialect::parse_bool(value) => None,
                Some((_, value)) => Some(value.clone()),
            },
            max_fd: v.int("max-fd")?,
            touch_workers_reload: v.list("touch-workers-reload").map(PathBuf::from).collect(),
            touch_chain_reload: v.list("touch-chain-reload").map(PathBuf::from).collect(),
            touch_logreopen: v.list("touch-logreopen").map(PathBuf::from).collect(),
            master_fifo: v.list("master-fifo").map(PathBuf::from).collect(),
            log_reopen: v.bool("log-reopen"),
            stats: v.str("stats").map(str::to_string),
            stats_http: v.bool("stats-http"),
            stats_minified: v.bool("stats-minified"),
            stats_no_cores: v.bool("stats-no-cores"),
            touch_reload: v.list("touch-reload").map(PathBuf::from).collect(),
            logto,
            log_maxsize: v.int("log-maxsize")?,
            log_backupname: v.str("log-backupname").map(PathBuf::from),
            exit_on_reload: v.bool("exit-on-reload"),
            no_orphans: v.bool("no-orphans"),
            notices: v.notices,
            options: entries,
        })
    }

    /// The sockets with `=N` references replaced by the N-th `shared-socket` address.
    pub fn effective_sockets(&self) -> Result<Vec<SocketSpec>, String> {
        self.sockets
            .iter()
            .map(|spec| match spec.address.strip_prefix('=') {
                Some(n) => {
                    let shared = n
                        .parse::<usize>()
                        .ok()
                        .and_then(|n| self.shared_sockets.get(n))
                        .ok_or_else(|| format!("unable to find shared socket {}", spec.address))?;
                    Ok(SocketSpec {
                        address: shared.clone(),
                        ..spec.clone()
                    })
                }
                None => Ok(spec.clone()),
            })
            .collect()
    }

    /// The `[uwsgi]` block logged by SIGUSR1: the options as applied.
    pub fn dump(&self) -> String {
        let mut out = String::from("[uwsgi]\n");
        for (k, v) in &self.options {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out
    }
}

/// The options collected from the entries, by canonical name.
#[derive(Default)]
struct Values {
    /// Canonical name -> (key as written, value), last one wins.
    scalars: HashMap<&'static str, (String, String)>,
    lists: HashMap<&'static str, Vec<String>>,
    notices: Vec<String>,
    noticed: HashSet<String>,
}

impl Values {
    fn notice(&mut self, key: &str, why: &str) {
        if self.noticed.insert(key.to_string()) {
            self.notices.push(format!(
                "notice: option \"{key}\" is accepted for compatibility and has no effect ({why})"
            ));
        }
    }

    fn default_of(name: &str) -> &'static str {
        registry::lookup(name).map_or("", |s| s.default)
    }

    fn int(&mut self, name: &'static str) -> Result<u64, String> {
        let (key, value) = match self.scalars.get(name) {
            Some((k, v)) => (k.clone(), v.clone()),
            None => return Ok(dialect::atoi_signed(Self::default_of(name)) as u64),
        };
        let n = dialect::atoi_signed(&value);
        if n < 0 {
            return Err(format!("invalid value for option \"{key}\": must be > 0"));
        }
        let trimmed = value.trim();
        if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            self.notices.push(format!(
                "warning: option \"{key}\" value \"{value}\" read as {n}"
            ));
        }
        Ok(n as u64)
    }

    fn bool(&self, name: &'static str) -> bool {
        match self.scalars.get(name) {
            Some((_, v)) => dialect::parse_bool(v),
            None => dialect::parse_bool(Self::default_of(name)),
        }
    }

    fn str(&self, name: &'static str) -> Option<&str> {
        self.scalars
            .get(name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn list(&self, name: &'static str) -> impl Iterator<Item = &String> {
        self.lists.get(name).into_iter().flatten()
    }
}

/// The fallback when the requested section is missing (lead's decision): `[server:main]`'s
/// `host`/`port`, one worker per CPU. Without `[server:main]` either, uWSGI's warning, exit 1.
fn server_main_fallback(
    text: &str,
    path: &Path,
    section: &str,
) -> Result<(Vec<(String, String)>, String), String> {
    let missing = format!(
        "*** WARNING: Can't find section \"{section}\" in INI configuration file {} ***",
        path.display()
    );
    // configparser-style: `key = value` or `key: value`, `%(name)s` from [DEFAULT] or the section
    // itself. Kinto's own template says `port = %(http_port)s`, which `kinto start` filled with
    // its --port (8888 by default).
    let mut current = String::new();
    let mut found = false;
    let mut defaults: HashMap<String, String> =
        HashMap::from([("http_port".to_string(), "8888".to_string())]);
    let mut server: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            current = line[1..line.len() - 1].to_string();
            found |= current == "server:main";
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((k, val)) = line.split_once(['=', ':']) {
            let (k, val) = (k.trim().to_string(), val.trim().to_string());
            match current.as_str() {
                "DEFAULT" => {
                    defaults.insert(k, val);
                }
                "server:main" => {
                    server.insert(k, val);
                }
                _ => {}
            }
        }
    }
    if !found {
        return Err(missing);
    }
    let interpolate = |value: &str| {
        let mut out = value.to_string();
        for (name, v) in defaults.iter().chain(server.iter()) {
            out = out.replace(&format!("%({name})s"), v);
        }
        out
    };
    let host = interpolate(server.get("host").map_or("127.0.0.1", String::as_str));
    let port = interpolate(server.get("port").map_or("8888", String::as_str));
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let line = format!(
        "{missing}\nno [{section}] section: serving [server:main] on {address} with {cpus} worker(s), one per CPU"
    );
    Ok((
        vec![
            ("http-socket".to_string(), address),
            ("processes".to_string(), cpus.to_string()),
        ],
        line,
    ))
}

/// `uid` as a number or a user name (`user <name> not found.`).
fn resolve_user(spec: &str) -> Result<(u32, Option<String>), String> {
    if let Ok(n) = spec.parse::<u32>() {
        let name = nix::unistd::User::from_uid(n.into())
            .ok()
            .flatten()
            .map(|u| u.name);
        return Ok((n, name));
    }
    match nix::unistd::User::from_name(spec) {
        Ok(Some(user)) => Ok((user.uid.as_raw(), Some(user.name))),
        _ => Err(format!("user {spec} not found.")),
    }
}

/// `gid` as a number or a group name (`group <name> not found.`).
fn resolve_group(spec: &str) -> Result<u32, String> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(spec) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        _ => Err(format!("group {spec} not found.")),
    }
}

/// The ini path made absolute against the working directory (uWSGI resolves it once).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Invocation;

    fn parse(text: &str) -> Result<ServerConfig, String> {
        parse_with(text, Vec::new())
    }

    fn parse_with(text: &str, overrides: Vec<(&str, &str)>) -> Result<ServerConfig, String> {
        let invocation = Invocation {
            ini: PathBuf::from("config/kinto.ini"),
            section: String::new(),
            overrides: overrides
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        ServerConfig::from_text(text, Path::new("/etc/kinto/kinto.ini"), &invocation)
    }

    #[test]
    fn production_section_of_the_kinto_docs() {
        // uid/gid left out: the `kinto` user need not exist on the test machine.
        let c = parse(
            "[uwsgi]\nwsgi-file = app.wsgi\nenable-threads = true\nhttp-socket = 127.0.0.1:8000\nprocesses =  3\nmaster = true\nmodule = kinto\nharakiri = 120\nvirtualenv = .\nlazy = true\nlazy-apps = true\nsingle-interpreter = true\nbuffer-size = 65535\npost-buffering = 65535\n",
        )
        .unwrap();
        assert_eq!(c.processes, 3);
        assert_eq!(c.harakiri, 120);
        assert_eq!(c.buffer_size, 65535);
        assert_eq!(c.post_buffering, 65535);
        assert!(c.lazy && c.lazy_apps);
        assert_eq!(c.sockets.len(), 1);
        assert_eq!(c.sockets[0].address, "127.0.0.1:8000");
        assert!(!c.sockets[0].keep_alive);
        for option in [
            "wsgi-file",
            "enable-threads",
            "module",
            "virtualenv",
            "single-interpreter",
        ] {
            let n = c
                .notices
                .iter()
                .filter(|l| {
                    l.starts_with(&format!(
                        "notice: option \"{option}\" is accepted for compatibility and has no effect ("
                    ))
                })
                .count();
            assert_eq!(n, 1, "{option}: {:?}", c.notices);
        }
        assert_eq!(c.notices.len(), 5, "{:?}", c.notices);
    }

    #[test]
    fn missing_user_is_the_uwsgi_error() {
        assert_eq!(
            parse("[uwsgi]\nhttp-socket = :8000\nuid = no-such-user-x\n").unwrap_err(),
            "user no-such-user-x not found."
        );
        assert_eq!(
            parse("[uwsgi]\nhttp-socket = :8000\ngid = no-such-group-x\n").unwrap_err(),
            "group no-such-group-x not found."
        );
        let c = parse("[uwsgi]\nhttp-socket = :8000\nuid = nobody\ngid = 65534\n").unwrap();
        assert_eq!(c.uid, Some((65534, Some("nobody".to_string()))));
        assert_eq!(c.gid, Some(65534));
    }

    #[test]
    fn substitutions_end_to_end() {
        let c = parse(
            "[uwsgi]\nhttp-socket = :8000\nprocs = 2\nprocesses = %(procs + 1)\npidfile = %d%n.pid\nadd-header = X-A: x%zy\nadd-header = X-B: 100%%\nadd-header = X-C: %(here)s\nadd-header = X-D: $(PROBABLY_UNSET_VAR_XYZ)\nadd-header = X-E: $(HOME)\n",
        )
        .unwrap();
        assert_eq!(c.processes, 3);
        assert_eq!(c.pidfile, Some(PathBuf::from("/etc/kinto/kinto.pid")));
        let home = std::env::var("HOME").unwrap();
        let values: Vec<&str> = c.add_headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            vec![
                "xy",
                "100%",
                "%(here)s",
                "$(PROBABLY_UNSET_VAR_XYZ)",
                home.as_str()
            ]
        );
        // `procs` is referenced: no notice for it.
        assert!(!c.notices.iter().any(|n| n.contains("\"procs\"")));
    }

    #[test]
    fn scalars_lists_booleans_and_integers() {
        let c = parse(
            "[uwsgi]\nhttp-socket = :8000\nhttp-socket = /run/k.sock\nprocesses = 2\nprocesses = 4\nvacuum = off\ndisable-logging\nlimit-post = 32768g\n",
        )
        .unwrap();
        assert_eq!(c.processes, 4);
        assert_eq!(c.sockets.len(), 2);
        assert!(!c.vacuum);
        assert!(c.disable_logging, "an empty value is true");
        assert_eq!(c.limit_post, 32768);
        assert!(c
            .notices
            .iter()
            .any(|n| n.starts_with("warning: option \"limit-post\"")));
        assert_eq!(
            parse("[uwsgi]\nhttp-socket = :8000\nlisten = -1\n").unwrap_err(),
            "invalid value for option \"listen\": must be > 0"
        );
        let c = parse("[uwsgi]\nhttp-socket = :8000\nbuffer-size = 100000\n").unwrap();
        assert_eq!(c.buffer_size, 65535);
    }

    #[test]
    fn environment_options_apply_before_the_file() {
        // An option no other test of this process looks at (tests share the environment).
        std::env::set_var("UWSGI_HARAKIRI_VERBOSE", "1");
        std::env::set_var("UWSGI_NOT_AN_OPTION_XYZ", "1");
        let from_env = parse("[uwsgi]\nhttp-socket = :8000\nstrict = true\n").unwrap();
        let from_file = parse("[uwsgi]\nhttp-socket = :8000\nharakiri-verbose = false\n").unwrap();
        std::env::remove_var("UWSGI_HARAKIRI_VERBOSE");
        std::env::remove_var("UWSGI_NOT_AN_OPTION_XYZ");
        assert!(from_env.harakiri_verbose);
        assert!(!from_file.harakiri_verbose, "the file wins for scalars");
    }

    #[test]
    fn overrides_apply_after_the_file() {
        let c = parse_with(
            "[uwsgi]\nhttp-socket = :8000\nprocesses = 2\n",
            vec![("processes", "6"), ("workers", "5")],
        )
        .unwrap();
        assert_eq!(c.processes, 5);
    }

    #[test]
    fn registry_driven_rejections_and_notices() {
        assert_eq!(
            parse("[uwsgi]\nhttp-socket = :8000\nspooler-processes = 2\n").unwrap_err(),
            "option \"spooler-processes\" is not supported by this server: the spooler is not supported"
        );
        assert!(parse("[uwsgi]\nhttp-socket = :8000\nif-env = X\n")
            .unwrap_err()
            .contains("no matching endif"));
        assert_eq!(
            parse("[uwsgi]\nhttp-socket = :8000\nstrict = true\nfoo = 1\n").unwrap_err(),
            "[strict-mode] unknown config directive: foo"
        );
        let c = parse("[uwsgi]\nhttp-socket = :8000\nfoo = 1\nmaster = false\n").unwrap();
        assert!(c.notices.contains(&"notice: option \"foo\" is accepted for compatibility and has no effect (unknown option, kept as a placeholder)".to_string()));
        assert!(c.notices.contains(&"notice: option \"master\" is accepted for compatibility and has no effect (the master process is always enabled)".to_string()));
        assert_eq!(
            parse("[uwsgi]\nhttp-socket = /tmp/s\nchmod-socket = true\n").unwrap_err(),
            "invalid chmod value: true"
        );
        assert_eq!(
            parse("[uwsgi]\nhttp-socket = /tmp/s\nchmod-socket = 660\n")
                .unwrap()
                .chmod_socket,
            Some(0o660)
        );
    }

    #[test]
    fn sockets_and_keep_alive() {
        assert!(parse("[uwsgi]\nsocket = 127.0.0.1:8000\n")
            .unwrap_err()
            .starts_with("option \"socket\" speaks the uwsgi protocol"));
        let c = parse("[uwsgi]\nsocket = 127.0.0.1:8000\nprotocol = http\nhttp11-socket = :9000\n")
            .unwrap();
        assert_eq!(
            c.sockets
                .iter()
                .map(|s| (s.kind, s.keep_alive))
                .collect::<Vec<_>>(),
            vec![(SocketKind::Http11, true), (SocketKind::Http, false)]
        );
        // Lead's decision: http-keepalive enables keep-alive on http-socket listeners too.
        let c = parse("[uwsgi]\nhttp-socket = :8000\nhttp-keepalive = 5\n").unwrap();
        assert!(c.sockets[0].keep_alive);
        assert_eq!(c.keepalive_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn worker_side_options_are_read_even_before_they_are_honoured() {
        let c = parse(
            "[uwsgi]\nhttp-socket = :8000\ntcp-nodelay = true\nreload-on-as = 512\ndel-header = Server\nlog-slow = 200\n",
        )
        .unwrap();
        assert!(c.tcp_nodelay);
        assert_eq!(c.reload_on_as, 512);
        assert_eq!(c.del_headers, vec!["Server".to_string()]);
        assert_eq!(c.log_slow, 200);
        assert!(c.notices.iter().any(|n| n.contains("\"tcp-nodelay\"")));
    }

    #[test]
    fn mercy_and_max_vars() {
        let c = parse("[uwsgi]\nhttp-socket = :8000\nreload-mercy = 2\n").unwrap();
        assert_eq!(c.worker_reload_mercy, Duration::from_secs(2));
        let c = parse("[uwsgi]\nhttp-socket = :8000\nreload-mercy = 2\nworker-reload-mercy = 7\n")
            .unwrap();
        assert_eq!(c.worker_reload_mercy, Duration::from_secs(7));
        assert_eq!(ServerConfig::default().max_headers, 119);
        assert_eq!(
            ServerConfig::default().socket_timeout,
            Duration::from_secs(4)
        );
    }

    #[test]
    fn missing_section_and_server_main_fallback() {
        assert_eq!(
            parse("[app:main]\nuse = egg:kinto\n").unwrap_err(),
            "*** WARNING: Can't find section \"uwsgi\" in INI configuration file /etc/kinto/kinto.ini ***"
        );
        let c =
            parse("[server:main]\nuse = egg:waitress#main\nhost = 0.0.0.0\nport = 8888\n").unwrap();
        assert_eq!(c.sockets[0].address, "0.0.0.0:8888");
        assert_eq!(
            c.processes,
            std::thread::available_parallelism().unwrap().get()
        );
        assert!(c.notices[0].starts_with("*** WARNING: Can't find section"));
    }

    #[test]
    fn server_main_of_the_kinto_template() {
        let c =
            parse("[server:main]\nuse = egg:waitress#main\nhost = 0.0.0.0\nport = %(http_port)s\n")
                .unwrap();
        assert_eq!(c.sockets[0].address, "0.0.0.0:8888");
        let c = parse("[DEFAULT]\nhttp_port = 9999\n[server:main]\nport: %(http_port)s\n").unwrap();
        assert_eq!(c.sockets[0].address, "127.0.0.1:9999");
    }

    #[test]
    fn invocation_from_args() {
        let (inv, rest) = Invocation::from_args(
            [
                "--ini",
                "/etc/k.ini:other",
                "--processes",
                "3",
                "--lazy",
                "start",
            ]
            .map(String::from),
        );
        assert_eq!(inv.ini, PathBuf::from("/etc/k.ini"));
        assert_eq!(inv.section, "other");
        assert_eq!(
            inv.overrides,
            vec![
                ("processes".to_string(), "3".to_string()),
                ("lazy".to_string(), String::new())
            ]
        );
        assert_eq!(rest, vec!["start".to_string()]);
    }
}

#[cfg(test)]
mod socket_form_tests {
    use super::*;

    #[test]
    fn shared_socket_references() {
        let c = ServerConfig::from_text(
            "[uwsgi]\nshared-socket = 127.0.0.1:0\nhttp-socket = =0\nhttp-socket = =1\n",
            Path::new("/x.ini"),
            &crate::Invocation::default(),
        )
        .unwrap();
        assert_eq!(
            c.effective_sockets().unwrap_err(),
            "unable to find shared socket =1"
        );
        let c = ServerConfig {
            sockets: c.sockets[..1].to_vec(),
            ..c
        };
        assert_eq!(c.effective_sockets().unwrap()[0].address, "127.0.0.1:0");
    }
}
