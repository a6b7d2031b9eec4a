//! The option registry: every `[uwsgi]` option this server knows, in one table.
//!
//! Each entry gives the name, aliases, kind, default, priority and a one-line doc, plus what the
//! server does with it. The startup notices, the rejections and the generated documentation
//! ([`docs_markdown`]) all come from this table, so they cannot drift apart.

/// How a value is read (1.2 rules 5-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `false`/`off`/`no`/`0` are false, anything else (empty included) true.
    Bool,
    /// C `atoi`: leading digits, trailing junk ignored with a warning; negative is an error.
    Int,
    /// A single string; the last line wins.
    Str,
    /// One entry per line, accumulated in file order.
    List,
}

/// The priority of the option in the contract (SERVER.md section 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Must,
    Should,
    Wont,
}

/// What the server does when the option is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Honoured.
    Honoured,
    /// Accepted with the compatibility notice; the text is the reason.
    Notice(&'static str),
    /// Startup ends with exit 1; the text is the reason.
    Reject(&'static str),
}

/// One registry entry. A name ending in `*` covers every option starting with the prefix.
#[derive(Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub default: &'static str,
    pub priority: Priority,
    pub effect: Effect,
    pub doc: &'static str,
}

use Effect::{Honoured, Notice, Reject};
use Kind::{Bool, Int, List, Str};
use Priority::{Must, Should, Wont};

const PYTHON: &str = "the application is compiled in, there is no Python";
const LATER: &str = "not implemented yet";

macro_rules! opt {
    ($name:expr, [$($alias:expr),*], $kind:expr, $default:expr, $prio:expr, $effect:expr, $doc:expr) => {
        OptionSpec {
            name: $name,
            aliases: &[$($alias),*],
            kind: $kind,
            default: $default,
            priority: $prio,
            effect: $effect,
            doc: $doc,
        }
    };
}

/// The table. Order is documentation order.
#[rustfmt::skip]
pub static OPTIONS: &[OptionSpec] = &[
    // Sockets (2.2).
    opt!("http-socket", [], List, "", Must, Honoured, "HTTP listener (`host:port`, `:port`, `[v6]:port`, Unix path, `@abstract`, `fd://N`, `=N`); repeatable"),
    opt!("http11-socket", [], List, "", Should, Honoured, "HTTP listener with keep-alive connections"),
    opt!("http", [], List, "", Should, Honoured, "HTTP router address; served directly by the workers (no router process)"),
    opt!("socket", ["uwsgi-socket", "s"], List, "", Should, Honoured, "with `protocol = http`, an HTTP listener; the uwsgi protocol itself is refused at startup (use `http-socket`)"),
    opt!("protocol", ["socket-protocol"], Str, "uwsgi", Must, Honoured, "protocol of `socket` lines: only `http` is served"),
    opt!("listen", ["l"], Int, "100", Must, Honoured, "backlog of self-bound listeners; must not exceed net.core.somaxconn"),
    opt!("chmod-socket", ["chmod", "C"], Str, "", Must, Honoured, "mode of Unix socket files: `1`/empty = 666, or three octal digits"),
    opt!("chown-socket", [], Str, "", Must, Honoured, "`user[:group]` owning Unix socket files"),
    opt!("umask", [], Str, "", Should, Honoured, "process umask (octal), applied at startup"),
    opt!("vacuum", [], Bool, "false", Must, Honoured, "remove Unix sockets and the pidfile at exit"),
    opt!("shared-socket", [], List, "", Should, Honoured, "socket bound early, referenced as `=N`"),
    opt!("abstract-socket", [], Bool, "false", Should, Honoured, "force abstract Unix socket names"),
    opt!("reuse-port", [], Bool, "false", Should, Honoured, "SO_REUSEPORT on listeners"),
    opt!("so-keepalive", [], Bool, "false", Should, Honoured, "SO_KEEPALIVE on listeners"),
    opt!("freebind", [], Bool, "false", Should, Honoured, "IP_FREEBIND on listeners"),
    opt!("tcp-nodelay", [], Bool, "false", Should, Notice(LATER), "TCP_NODELAY on accepted connections"),
    opt!("no-defer-accept", [], Bool, "false", Should, Honoured, "disable TCP_DEFER_ACCEPT"),
    opt!("https-socket", [], List, "", Wont, Reject("TLS ends at the reverse proxy (nginx)"), "TLS listener"),
    opt!("https*", [], Str, "", Wont, Reject("TLS ends at the reverse proxy (nginx)"), "TLS listeners"),
    opt!("ssl-*", [], Str, "", Wont, Reject("TLS ends at the reverse proxy (nginx)"), "TLS options"),
    opt!("suwsgi-socket", [], List, "", Wont, Reject("TLS ends at the reverse proxy (nginx)"), "TLS uwsgi listener"),
    opt!("fastcgi-socket", [], List, "", Wont, Reject("only HTTP is served"), "FastCGI listener"),
    opt!("scgi-socket", [], List, "", Wont, Reject("only HTTP is served"), "SCGI listener"),
    opt!("raw-socket", [], List, "", Wont, Reject("only HTTP is served"), "raw listener"),
    opt!("puwsgi-socket", [], List, "", Wont, Reject("only HTTP is served"), "persistent uwsgi listener"),
    opt!("zerg*", [], Str, "", Wont, Reject("socket routing between instances is not supported"), "zerg mode"),
    opt!("map-socket", [], List, "", Wont, Reject("every worker serves every socket"), "socket to worker mapping"),
    // Processes (2.1, 2.3).
    opt!("processes", ["workers", "p"], Int, "1", Must, Honoured, "number of worker processes"),
    opt!("master", ["M"], Bool, "true", Must, Honoured, "the master process is always enabled"),
    opt!("lazy", [], Bool, "false", Must, Honoured, "SIGHUP reloads worker by worker; the master stays"),
    opt!("lazy-apps", [], Bool, "false", Must, Honoured, "accepted: the application is always built in the workers"),
    opt!("harakiri", ["t"], Int, "0", Must, Honoured, "seconds a request may run before its worker is killed (0 = off)"),
    opt!("harakiri-verbose", [], Bool, "false", Must, Honoured, "log /proc syscall and wchan of a worker before killing it"),
    opt!("harakiri-graceful-timeout", [], Int, "0", Should, Honoured, "send a graceful signal before the harakiri SIGKILL"),
    opt!("harakiri-graceful-signal", [], Int, "15", Should, Honoured, "signal of the graceful harakiri"),
    opt!("harakiri-queue-threshold", [], Int, "0", Wont, Notice("backlog-gated harakiri is not supported"), "backlog-gated harakiri"),
    opt!("harakiri-no-arh", ["no-harakiri-arh", "no-harakiri-after-req-hook"], Bool, "false", Wont, Notice("there are no after-request hooks"), "harakiri of after-request hooks"),
    opt!("max-requests", ["R"], Int, "0", Must, Honoured, "recycle a worker after this many requests"),
    opt!("max-requests-delta", [], Int, "0", Must, Honoured, "worker N recycles after max-requests + (N-1) x delta requests"),
    opt!("min-worker-lifetime", [], Int, "10", Must, Honoured, "seconds a worker lives before it may recycle"),
    opt!("max-worker-lifetime", [], Int, "0", Should, Honoured, "recycle a worker older than this many seconds"),
    opt!("max-worker-lifetime-delta", [], Int, "0", Should, Honoured, "per-slot addition to max-worker-lifetime"),
    opt!("reload-on-rss", [], Int, "0", Must, Honoured, "recycle a worker whose RSS reaches this many megabytes"),
    opt!("reload-on-as", [], Int, "0", Should, Notice(LATER), "recycle a worker whose address space reaches this many megabytes"),
    opt!("evil-reload-on-rss", [], Int, "0", Should, Honoured, "SIGKILL a worker over this RSS (megabytes)"),
    opt!("evil-reload-on-as", [], Int, "0", Should, Honoured, "SIGKILL a worker over this address space (megabytes)"),
    opt!("worker-reload-mercy", [], Int, "60", Must, Honoured, "seconds a stopping worker may take before SIGKILL"),
    opt!("reload-mercy", [], Int, "0", Must, Honoured, "the mercy for workers when worker-reload-mercy is not set"),
    opt!("die-on-term", [], Bool, "false", Must, Notice("SIGTERM always stops gracefully and SIGQUIT brutally"), "uWSGI 2.0 signal swap"),
    opt!("exit-on-reload", [], Bool, "false", Should, Honoured, "exit 0 instead of re-executing on a non-lazy reload"),
    opt!("forkbomb-delay", [], Int, "2", Must, Honoured, "seconds respawns are postponed when workers die too fast"),
    opt!("no-orphans", [], Bool, "false", Should, Honoured, "workers get SIGKILL when the master dies"),
    opt!("need-app", [], Bool, "false", Must, Honoured, "a worker failing to initialise stops the service (exit 22)"),
    opt!("thunder-lock", [], Bool, "false", Should, Notice(LATER), "serialise accept() between workers"),
    opt!("touch-reload", [], List, "", Must, Honoured, "files whose mtime change triggers a graceful reload"),
    opt!("touch-workers-reload", [], List, "", Should, Honoured, "files triggering a rolling worker reload"),
    opt!("touch-chain-reload", [], List, "", Should, Honoured, "files triggering a chain reload"),
    opt!("touch-logreopen", [], List, "", Should, Honoured, "files triggering a log reopen"),
    opt!("master-fifo", [], List, "", Should, Honoured, "FIFO of single-letter master commands"),
    opt!("pidfile", [], Str, "", Must, Honoured, "file receiving the master pid, written before privileges are dropped"),
    opt!("pidfile2", [], Str, "", Should, Honoured, "pidfile written after privileges are dropped"),
    opt!("safe-pidfile", [], Str, "", Should, Honoured, "pidfile written via rename"),
    opt!("safe-pidfile2", [], Str, "", Should, Honoured, "pidfile2 written via rename"),
    opt!("shutdown-sockets", [], Bool, "false", Should, Honoured, "accepted: the graceful shutdown always shuts the listeners down"),
    opt!("uid", [], Str, "", Must, Honoured, "user (name or number) to run as after binding"),
    opt!("gid", [], Str, "", Must, Honoured, "group (name or number) to run as after binding"),
    opt!("add-gid", [], List, "", Should, Honoured, "extra supplementary groups"),
    opt!("no-initgroups", [], Bool, "false", Should, Honoured, "do not set the supplementary groups of uid"),
    opt!("daemonize", [], Str, "", Should, Honoured, "detach and log to a file"),
    opt!("daemonize2", [], Str, "", Should, Honoured, "detach after loading and log to a file"),
    opt!("chdir", [], Str, "", Must, Honoured, "working directory, entered after the pidfile is written"),
    opt!("chdir2", [], Str, "", Should, Honoured, "working directory of the workers"),
    opt!("env", [], List, "", Must, Honoured, "`KEY=VALUE` set in the environment before the settings are read"),
    opt!("unenv", [], List, "", Should, Honoured, "environment variable to remove"),
    opt!("stats", ["stats-server"], Str, "", Should, Honoured, "stats server address"),
    opt!("stats-http", [], Bool, "false", Should, Honoured, "HTTP head before the stats document"),
    opt!("stats-minified", [], Bool, "false", Should, Honoured, "compact stats document"),
    opt!("stats-no-cores", [], Bool, "false", Should, Honoured, "omit cores from the stats document"),
    opt!("memory-report", ["m"], Bool, "false", Should, Notice(LATER), "memory figures in request lines"),
    opt!("procname-prefix", [], Str, "", Should, Honoured, "process title prefix"),
    opt!("procname-prefix-spaced", [], Str, "", Should, Honoured, "process title prefix followed by a space"),
    opt!("procname-append", [], Str, "", Should, Honoured, "process title suffix"),
    opt!("procname", [], Str, "", Should, Honoured, "process title of the workers"),
    opt!("procname-master", [], Str, "", Should, Honoured, "process title of the master"),
    opt!("auto-procname", [], Bool, "false", Should, Honoured, "descriptive process titles"),
    opt!("max-fd", [], Int, "0", Should, Honoured, "RLIMIT_NOFILE"),
    opt!("cheaper*", [], Str, "", Wont, Notice("all processes always run"), "adaptive worker count"),
    opt!("idle", [], Int, "0", Wont, Notice("all processes always run"), "sleep when idle"),
    opt!("die-on-idle", [], Bool, "false", Wont, Notice("all processes always run"), "exit when idle"),
    opt!("threads", [], Int, "1", Wont, Notice("one request at a time per worker: capacity is `processes` concurrent requests"), "threads per worker"),
    opt!("async", [], Int, "0", Wont, Reject("cooperative concurrency is not provided: use more processes"), "async cores"),
    opt!("gevent", [], Int, "0", Wont, Reject("cooperative concurrency is not provided: use more processes"), "gevent cores"),
    opt!("ugreen", [], Bool, "false", Wont, Reject("cooperative concurrency is not provided: use more processes"), "uGreen cores"),
    opt!("greenlet", [], Bool, "false", Wont, Reject("cooperative concurrency is not provided: use more processes"), "greenlet cores"),
    // HTTP (2.1, 2.4).
    opt!("buffer-size", ["b"], Int, "4096", Must, Honoured, "maximum request head size in bytes (clamped to 65535)"),
    opt!("post-buffering", [], Int, "0", Must, Honoured, "bodies above this size may be spooled to a file"),
    opt!("post-buffering-bufsize", [], Int, "8192", Should, Notice("bodies are read whole before the handler runs"), "read-chunk size hint"),
    opt!("socket-timeout", ["z"], Int, "4", Must, Honoured, "per-read/write inactivity timeout in seconds"),
    opt!("limit-post", [], Int, "0", Must, Honoured, "maximum request body size in bytes (0 = unlimited)"),
    opt!("max-vars", ["v"], Int, "64", Should, Honoured, "more than 2 x max-vars - 9 header fields get 431"),
    opt!("add-header", [], List, "", Must, Honoured, "`Name: value` appended to every response"),
    opt!("del-header", ["rem-header"], List, "", Should, Notice(LATER), "response header to remove"),
    opt!("http-timeout", [], Int, "60", Should, Honoured, "socket timeout of `http` listeners"),
    opt!("http-keepalive", [], Int, "0", Should, Honoured, "keep-alive on `http` and `http-socket` listeners (idle timeout when > 1)"),
    opt!("http-auto-chunked", [], Bool, "false", Should, Notice("there is no HTTP router"), "router option"),
    opt!("http-processes", ["http-workers"], Int, "1", Should, Notice("there is no HTTP router"), "router option"),
    opt!("log-x-forwarded-for", [], Bool, "false", Must, Honoured, "request lines show X-Forwarded-For instead of the peer"),
    opt!("enable-proxy-protocol", [], Bool, "false", Should, Notice(LATER), "PROXY v1 line before requests"),
    opt!("manage-script-name", [], Bool, "false", Wont, Notice("mount the service at the root and route prefixes in nginx"), "SCRIPT_NAME handling"),
    opt!("mount", [], List, "", Wont, Honoured, "only an empty or `/` mountpoint is accepted"),
    // Logging (2.5).
    opt!("logto", [], Str, "", Must, Honoured, "log file (append), opened before privileges are dropped"),
    opt!("logto2", [], Str, "", Should, Honoured, "log file opened after privileges are dropped"),
    opt!("log-reopen", [], Bool, "false", Should, Honoured, "reopen the log file on reload"),
    opt!("log-maxsize", [], Int, "0", Should, Honoured, "size-based log rotation"),
    opt!("log-backupname", [], Str, "", Should, Honoured, "name of the rotated log"),
    opt!("disable-logging", ["L"], Bool, "false", Must, Honoured, "no request log lines"),
    opt!("log-4xx", [], Bool, "false", Should, Honoured, "with disable-logging, still log 4xx requests"),
    opt!("log-5xx", [], Bool, "false", Must, Honoured, "with disable-logging, still log 5xx requests"),
    opt!("log-slow", [], Int, "0", Should, Notice(LATER), "log requests slower than this many ms"),
    opt!("log-big", [], Int, "0", Should, Notice(LATER), "log responses bigger than this many bytes"),
    opt!("log-zero", [], Bool, "false", Should, Notice(LATER), "log empty responses"),
    opt!("log-ioerror", [], Bool, "false", Should, Notice(LATER), "log requests with I/O errors"),
    opt!("log-format", ["logformat"], Str, "", Must, Honoured, "request line template of `%(var)` variables"),
    opt!("log-micros", [], Bool, "false", Should, Honoured, "response times in microseconds"),
    opt!("log-date", ["logdate"], Str, "", Should, Honoured, "date prefix on lifecycle lines"),
    opt!("log-master", [], Bool, "false", Wont, Notice("workers write their lines directly, one write(2) each"), "route logs through the master"),
    opt!("threaded-logger", [], Bool, "false", Wont, Notice("workers write their lines directly, one write(2) each"), "logger thread"),
    opt!("log-master-bufsize", [], Int, "0", Wont, Notice("workers write their lines directly, one write(2) each"), "logger buffer"),
    opt!("logger", [], List, "", Should, Honoured, "`file:PATH` (as `logto`) and `stdio`; other loggers get a notice"),
    opt!("req-logger", [], List, "", Should, Notice(LATER), "pluggable request logger"),
    opt!("log-encoder", [], List, "", Should, Notice(LATER), "log line encoder"),
    opt!("log-route", [], List, "", Should, Notice(LATER), "log routing"),
    // Configuration (1.2, 1.3).
    opt!("strict", [], Bool, "false", Must, Honoured, "unknown options end startup"),
    opt!("set", [], List, "", Must, Honoured, "`name=value` placeholder"),
    opt!("set-placeholder", [], List, "", Must, Honoured, "`name=value` placeholder"),
    opt!("ini", [], Str, "", Should, Honoured, "read the section of another file (`PATH[:SECTION]`) at this point"),
    opt!("include", [], Str, "", Should, Honoured, "read the section of another file (`PATH[:SECTION]`) at this point"),
    opt!("inherit", [], Str, "", Should, Honoured, "read the section of another file (`PATH[:SECTION]`) at this point"),
    opt!("if-env", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-not-env", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-exists", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-not-exists", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-file", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-dir", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-not-file", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-not-dir", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-not-reload", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-opt", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-not-opt", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("if-reload", [], Str, "", Should, Honoured, "configuration logic: keeps the lines up to `endif` when the condition holds"),
    opt!("for", [], Str, "", Should, Honoured, "configuration logic: repeats the lines up to `endfor`, `%(_)` set to each item"),
    opt!("for-glob", [], Str, "", Should, Honoured, "configuration logic: repeats the lines up to `endfor`, `%(_)` set to each item"),
    opt!("for-times", [], Str, "", Should, Honoured, "configuration logic: repeats the lines up to `endfor`, `%(_)` set to each item"),
    opt!("endif", ["end-if"], Str, "", Should, Honoured, "configuration logic: ends an `if-*` block"),
    opt!("endfor", ["end-for"], Str, "", Should, Honoured, "configuration logic: ends a `for*` block"),
    // Python and uWSGI internals (2.1, 2.6): ignored.
    opt!("wsgi-file", [], Str, "", Wont, Notice(PYTHON), "Python WSGI file"),
    opt!("enable-threads", [], Bool, "false", Wont, Notice("workers serve one request at a time; internal threads need no switch"), "Python GIL threads"),
    opt!("module", [], Str, "", Wont, Notice(PYTHON), "Python WSGI module"),
    opt!("virtualenv", ["home", "venv", "pyhome", "H"], Str, "", Wont, Notice(PYTHON), "Python home"),
    opt!("single-interpreter", ["i"], Bool, "false", Wont, Notice(PYTHON), "Python sub-interpreters"),
    opt!("plugin", ["plugins"], List, "", Wont, Notice("there are no plugins"), "uWSGI plugins"),
    opt!("plugin-dir", [], Str, "", Wont, Notice("there are no plugins"), "uWSGI plugin directory"),
    opt!("pythonpath", ["python-path"], List, "", Wont, Notice(PYTHON), "Python path"),
    opt!("callable", [], Str, "", Wont, Notice(PYTHON), "WSGI callable name"),
    opt!("wsgi", ["file"], Str, "", Wont, Notice(PYTHON), "Python WSGI module"),
    opt!("paste", [], Str, "", Wont, Notice(PYTHON), "PasteDeploy app"),
    opt!("ini-paste", [], Str, "", Wont, Notice(PYTHON), "PasteDeploy app"),
    opt!("paste-logger", [], Bool, "false", Wont, Notice(PYTHON), "PasteDeploy logging"),
    opt!("py-autoreload", [], Int, "0", Wont, Notice(PYTHON), "Python autoreload"),
    opt!("py-tracebacker", [], Str, "", Wont, Notice(PYTHON), "Python tracebacker"),
    opt!("pyargv", [], Str, "", Wont, Notice(PYTHON), "Python argv"),
    opt!("optimize", ["O"], Int, "0", Wont, Notice(PYTHON), "Python optimisation level"),
    opt!("import", [], List, "", Wont, Notice(PYTHON), "Python import"),
    opt!("shared-import", [], List, "", Wont, Notice(PYTHON), "Python import"),
    opt!("pymodule-alias", [], List, "", Wont, Notice(PYTHON), "Python module alias"),
    opt!("py-call-osafterfork", [], Bool, "false", Wont, Notice(PYTHON), "Python after-fork hook"),
    opt!("enable-metrics", [], Bool, "false", Wont, Notice("uWSGI metrics subsystem"), "uWSGI metrics"),
    opt!("stats-push", [], List, "", Wont, Notice("uWSGI metrics subsystem"), "stats push"),
    opt!("carbon", [], List, "", Wont, Notice("uWSGI metrics subsystem"), "carbon push"),
    opt!("reaper", ["r"], Bool, "false", Wont, Notice("the master always reaps"), "reaper"),
    opt!("close-on-exec", [], Bool, "false", Wont, Notice("descriptors are always close-on-exec"), "close-on-exec"),
    opt!("master-as-root", [], Bool, "false", Wont, Notice("privileges are dropped after binding"), "master as root"),
    opt!("drop-after-init", [], Bool, "false", Wont, Notice("privileges are dropped after binding"), "late drop"),
    opt!("drop-after-apps", [], Bool, "false", Wont, Notice("privileges are dropped after binding"), "late drop"),
    opt!("no-threads-wait", [], Bool, "false", Wont, Notice("uWSGI internals"), "thread wait"),
    opt!("mule-reload-mercy", [], Int, "0", Wont, Notice("there are no mules"), "mule mercy"),
    opt!("ignore-sigpipe", [], Bool, "false", Wont, Notice("SIGPIPE is always ignored"), "ignore SIGPIPE"),
    opt!("ignore-write-errors", [], Bool, "false", Wont, Notice("write errors are never logged as exceptions"), "write errors"),
    opt!("disable-write-exception", [], Bool, "false", Wont, Notice("write errors are never logged as exceptions"), "write errors"),
    opt!("backtrace-depth", [], Int, "0", Wont, Notice("uWSGI internals"), "backtrace depth"),
    opt!("response-headers-limit", [], Int, "0", Wont, Notice("uWSGI internals"), "response headers limit"),
    opt!("cpu-affinity", [], Int, "0", Wont, Notice("uWSGI internals"), "CPU affinity"),
    // Rejected (2.6): they change where traffic goes, what runs, or the security boundary.
    opt!("emperor*", [], Str, "", Wont, Reject("the Emperor is not supported: run one service per unit"), "Emperor"),
    opt!("vassal*", [], Str, "", Wont, Reject("the Emperor is not supported: run one service per unit"), "Emperor vassals"),
    opt!("spooler*", [], Str, "", Wont, Reject("the spooler is not supported"), "spooler"),
    opt!("mule", [], List, "", Wont, Reject("mules are not supported"), "mule"),
    opt!("mules", [], Int, "0", Wont, Reject("mules are not supported"), "mules"),
    opt!("farm", [], List, "", Wont, Reject("mules are not supported"), "mule farm"),
    opt!("attach-daemon*", [], Str, "", Wont, Reject("attached daemons are not supported: use systemd units"), "attached daemons"),
    opt!("smart-attach-daemon*", [], Str, "", Wont, Reject("attached daemons are not supported: use systemd units"), "attached daemons"),
    opt!("cron*", [], Str, "", Wont, Reject("cron is not supported: use systemd timers"), "cron"),
    opt!("unique-cron", [], Str, "", Wont, Reject("cron is not supported: use systemd timers"), "cron"),
    opt!("route*", [], Str, "", Wont, Reject("internal routing is not supported: route in nginx"), "routing"),
    opt!("static-map*", [], Str, "", Wont, Reject("static files are served by nginx"), "static files"),
    opt!("check-static", [], Str, "", Wont, Reject("static files are served by nginx"), "static files"),
    opt!("chroot", [], Str, "", Wont, Reject("use systemd sandboxing (RootDirectory=)"), "chroot"),
    opt!("jail*", [], Str, "", Wont, Reject("use systemd sandboxing"), "jails"),
    opt!("unshare*", [], Str, "", Wont, Reject("use systemd sandboxing"), "namespaces"),
    opt!("namespace*", [], Str, "", Wont, Reject("use systemd sandboxing"), "namespaces"),
    opt!("cap", [], Str, "", Wont, Reject("use systemd capabilities (AmbientCapabilities=)"), "capabilities"),
    opt!("cgroup*", [], Str, "", Wont, Reject("use systemd resource control"), "cgroups"),
    opt!("legion*", [], Str, "", Wont, Reject("clustering is not supported"), "legions"),
    opt!("subscribe*", [], Str, "", Wont, Reject("subscriptions are not supported"), "subscriptions"),
    opt!("fastrouter*", [], Str, "", Wont, Reject("routers are not supported: use nginx"), "fastrouter"),
    opt!("rawrouter*", [], Str, "", Wont, Reject("routers are not supported: use nginx"), "rawrouter"),
    opt!("sslrouter*", [], Str, "", Wont, Reject("routers are not supported: use nginx"), "sslrouter"),
    opt!("cache2", [], List, "", Wont, Reject("uWSGI's shared cache is not provided"), "shared cache"),
    opt!("cache", [], Int, "0", Wont, Reject("uWSGI's shared cache is not provided"), "shared cache"),
];

/// Finds the entry for `key` (name, alias, or prefix entry), returning it and its canonical name
/// (for prefix entries the key itself, so messages name what the user wrote).
pub fn lookup(key: &str) -> Option<&'static OptionSpec> {
    OPTIONS
        .iter()
        .find(|o| !o.name.ends_with('*') && (o.name == key || o.aliases.contains(&key)))
        .or_else(|| {
            OPTIONS.iter().find(|o| {
                o.name
                    .strip_suffix('*')
                    .is_some_and(|prefix| key.starts_with(prefix))
            })
        })
}

/// The registry as a markdown table, for the generated documentation.
pub fn docs_markdown() -> String {
    let mut out = String::from(
        "| Option | Aliases | Kind | Default | Priority | Behaviour | Description |\n|---|---|---|---|---|---|---|\n",
    );
    for o in OPTIONS {
        let aliases = o
            .aliases
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let kind = match o.kind {
            Bool => "boolean",
            Int => "integer",
            Str => "string",
            List => "list",
        };
        let prio = match o.priority {
            Must => "must",
            Should => "should",
            Wont => "won't",
        };
        let effect = match o.effect {
            Honoured => "honoured".to_string(),
            Notice(why) => format!("accepted, no effect ({why})"),
            Reject(why) => format!("rejected ({why})"),
        };
        let default = if o.default.is_empty() {
            String::new()
        } else {
            format!("`{}`", o.default)
        };
        out.push_str(&format!(
            "| `{}` | {aliases} | {kind} | {default} | {prio} | {effect} | {} |\n",
            o.name,
            o.doc.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for o in OPTIONS {
            assert!(seen.insert(o.name), "duplicate {}", o.name);
            for a in o.aliases {
                assert!(seen.insert(a), "duplicate alias {a}");
            }
        }
    }

    #[test]
    fn lookup_resolves_aliases_and_prefixes() {
        assert_eq!(lookup("workers").unwrap().name, "processes");
        assert_eq!(lookup("spooler-processes").unwrap().name, "spooler*");
        assert_eq!(lookup("https-socket").unwrap().name, "https-socket");
        assert!(lookup("no-such-option").is_none());
    }

    #[test]
    fn docs_have_one_row_per_option() {
        let docs = docs_markdown();
        assert_eq!(docs.lines().count(), OPTIONS.len() + 2);
        assert!(docs.contains("| `harakiri` | `t` | integer | `0` | must | honoured |"));
    }
}

#[cfg(test)]
mod docs_file {
    /// `master/OPTIONS.md` is generated from the registry; regenerate it with
    /// `UPDATE_OPTIONS_DOC=1 cargo test -p master docs_file`.
    #[test]
    fn options_doc_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("OPTIONS.md");
        let expected = format!(
            "# `[uwsgi]` options\n\nGenerated from `master/src/registry.rs` (`master::docs_markdown()`); do not edit.\n\n{}",
            super::docs_markdown()
        );
        if std::env::var_os("UPDATE_OPTIONS_DOC").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == expected,
            "master/OPTIONS.md is stale: run UPDATE_OPTIONS_DOC=1 cargo test -p master docs_file"
        );
    }
}
