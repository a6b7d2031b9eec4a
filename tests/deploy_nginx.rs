//! nginx in front of kinto-rs, as Kinto's production docs describe it: the seed's cache
//! configuration (`proxy_cache_path`, `proxy_cache_key`, `proxy_cache`, `include proxy_params`,
//! `proxy_pass`), `X-Forwarded-*` handling, and keep-alive from nginx to an `http11-socket`.
//! A real nginx (Debian package, installed when missing) runs as a child of the test with a
//! configuration generated in a temporary directory, and is stopped by its pid.

mod deploy_support;

use deploy_support::{basic, free_port, http, sqlite_ini, stop_child, Kinto, TempDir, STARTUP};
use serde_json::json;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Debian's `/etc/nginx/proxy_params`, written next to the generated configuration so that the
/// seed's `include proxy_params;` resolves the same way on any machine.
const PROXY_PARAMS: &str = "proxy_set_header Host $host;
proxy_set_header X-Real-IP $remote_addr;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_set_header X-Forwarded-Proto $scheme;
";

/// The nginx binary; installs the Debian package when it is missing (once per test binary).
fn nginx_binary() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        let find = || {
            ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        };
        if let Some(path) = find() {
            return path;
        }
        let install = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !install(&["install", "-y", "-qq", "nginx-light"]) {
            install(&["update", "-qq"]);
            install(&["install", "-y", "-qq", "nginx-light"]);
        }
        find().expect(
            "nginx is not installed and `apt-get install -y nginx-light` failed: \
             install nginx to run the deployment tests",
        )
    })
}

/// A real nginx master (`daemon off`), stopped by its pid when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx with `servers` (server/upstream blocks, where `{listen}` is replaced by this
    /// nginx's port) in the http block, the seed's cache zone declared. The port is found by
    /// binding port 0 first; a lost race (another process took it) is retried.
    fn start(dir: &Path, servers: &str) -> Nginx {
        let nginx = nginx_binary();
        std::fs::write(dir.join("proxy_params"), PROXY_PARAMS).unwrap();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.join("nginx.conf");
            std::fs::write(
                &conf,
                config(dir, &servers.replace("{listen}", &port.to_string())),
            )
            .unwrap();
            let error_log = dir.join("error.log");
            let _ = std::fs::remove_file(&error_log);
            let child = Command::new(nginx)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(&error_log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start nginx");
            let mut nginx = Nginx {
                child,
                port,
                dir: dir.to_path_buf(),
            };
            let deadline = Instant::now() + STARTUP;
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // The port answers, but it may be someone else's: nginx must still run.
                    std::thread::sleep(Duration::from_millis(100));
                    if nginx.child.try_wait().unwrap().is_none() {
                        return nginx;
                    }
                }
                if let Some(status) = nginx.child.try_wait().unwrap() {
                    last_error = format!("nginx exited with {status}: {}", nginx.error_log());
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx not listening on {port} within {STARTUP:?}: {}",
                    nginx.error_log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            if !last_error.contains("Address already in use") {
                break;
            }
        }
        panic!("{last_error}");
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM);
    }
}

/// The whole nginx configuration: everything nginx writes (pid, logs, temporary files, the
/// cache) stays in `dir`.
fn config(dir: &Path, servers: &str) -> String {
    let d = dir.display();
    // As root the workers would otherwise run as `nobody`, who cannot write in `dir`.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;

    # From Kinto's production docs, the cache path moved into the test directory and the
    # docs' trailing `$` dropped from the key (nginx refuses it: \"invalid variable name\").
    proxy_cache_path {d}/cache levels=1:2 keys_zone=my_zone:100m inactive=200m;
    proxy_cache_key \"$scheme$request_method$host$request_uri\";

{servers}
}}
"
    )
}

/// The seed's server block, with the cache status exposed.
fn cache_server(kinto_port: u16) -> String {
    format!(
        "    server {{
        listen 127.0.0.1:{{listen}};
        add_header X-Cache-Status $upstream_cache_status;
        location / {{
            proxy_cache my_zone;
            include proxy_params;
            proxy_pass http://127.0.0.1:{kinto_port};
        }}
    }}"
    )
}

const ADMIN: &str = "admin";

/// Creates `/buckets/<bucket>` readable by everyone, and its collection `collection` with `data`.
fn public_collection(port: u16, bucket: &str, collection: &str, data: serde_json::Value) {
    let auth = basic(ADMIN);
    let headers = [("Authorization", auth.as_str())];
    let r = http(
        port,
        "PUT",
        &format!("/v1/buckets/{bucket}"),
        &headers,
        Some(&json!({"permissions": {"read": ["system.Everyone"]}})),
    );
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    let r = http(
        port,
        "PUT",
        &format!("/v1/buckets/{bucket}/collections/{collection}"),
        &headers,
        Some(&json!({ "data": data })),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = http(
        port,
        "PUT",
        &format!("/v1/buckets/{bucket}/collections/{collection}/records/r1"),
        &headers,
        Some(&json!({"data": {"title": collection}})),
    );
    assert_eq!(r.status, 201, "{r:?}");
}

/// Two anonymous reads of `path` through nginx: their `X-Cache-Status` values and the first
/// response's `Cache-Control`.
fn read_twice(nginx: &Nginx, path: &str) -> (Vec<String>, String) {
    let mut statuses = Vec::new();
    let mut cache_control = String::new();
    for i in 0..2 {
        let r = http(nginx.port, "GET", path, &[], None);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.json()["data"]["id"], "r1");
        statuses.push(r.header("X-Cache-Status").unwrap_or("").to_string());
        if i == 0 {
            cache_control = r.header("Cache-Control").unwrap_or("").to_string();
        }
    }
    (statuses, cache_control)
}

#[test]
fn reads_with_cache_headers_are_served_from_nginx_cache() {
    let dir = TempDir::new("nginx_cache");
    let ini = sqlite_ini(
        dir.path(),
        "kinto.bset.cset.record_cache_expires_seconds = 60",
        "http-socket = 127.0.0.1:0\nprocesses = 1\nmaster = true",
    );
    let kinto = Kinto::start(dir.path(), &ini);
    let nginx = Nginx::start(dir.path(), &cache_server(kinto.port));

    // Writes go through nginx too: POST/PUT are never cached.
    public_collection(nginx.port, "b", "cached", json!({"cache_expires": 60}));
    public_collection(nginx.port, "b", "plain", json!({}));
    public_collection(nginx.port, "bset", "cset", json!({}));

    let cached = "/v1/buckets/b/collections/cached/records/r1";
    let by_setting = "/v1/buckets/bset/collections/cset/records/r1";
    let plain = "/v1/buckets/b/collections/plain/records/r1";
    let (cached_status, cached_cc) = read_twice(&nginx, cached);
    let (setting_status, setting_cc) = read_twice(&nginx, by_setting);
    let (plain_status, plain_cc) = read_twice(&nginx, plain);

    assert_eq!(cached_cc, "max-age=60");
    assert_eq!(cached_status, ["MISS", "HIT"], "collection cache_expires");
    assert_eq!(setting_cc, "max-age=60");
    assert_eq!(
        setting_status,
        ["MISS", "HIT"],
        "<bid>.<cid>.record_cache_expires_seconds"
    );
    assert_eq!(plain_cc, "no-cache, no-store");
    assert_eq!(
        plain_status,
        ["MISS", "MISS"],
        "no cache headers: not stored"
    );

    // Upstream counts from kinto's own request log.
    kinto.flush_log();
    assert_eq!(
        kinto.request_lines("GET", cached).len(),
        1,
        "{}",
        kinto.lines.text()
    );
    assert_eq!(kinto.request_lines("GET", by_setting).len(), 1);
    assert_eq!(kinto.request_lines("GET", plain).len(), 2);
    // nginx stored exactly the two cacheable responses.
    let stored = walk_files(&dir.path().join("cache"));
    assert_eq!(stored, 2, "files in the cache directory");
}

/// The number of regular files under `dir`, recursively.
fn walk_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_files(&path)
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn global_record_setting_and_forwarded_headers() {
    let dir = TempDir::new("nginx_fwd");
    let ini = sqlite_ini(
        dir.path(),
        "kinto.record_cache_expires_seconds = 30",
        "http-socket = 127.0.0.1:0\nprocesses = 1\nmaster = true",
    );
    let kinto = Kinto::start(dir.path(), &ini);
    // Second server: what nginx sends behind `listen 443 ssl` ($scheme is https there), without
    // the cache so that the two servers' cache keys cannot meet.
    let tls_port = free_port();
    let servers = format!(
        "{}
    server {{
        listen 127.0.0.1:{tls_port};
        location / {{
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_pass http://127.0.0.1:{kinto_port};
        }}
    }}",
        cache_server(kinto.port),
        kinto_port = kinto.port
    );
    let nginx = Nginx::start(dir.path(), &servers);

    // Global record setting: every public record read is cacheable.
    public_collection(nginx.port, "b", "any", json!({}));
    let record = "/v1/buckets/b/collections/any/records/r1";
    let (statuses, cc) = read_twice(&nginx, record);
    assert_eq!(cc, "max-age=30");
    assert_eq!(statuses, ["MISS", "HIT"]);

    // X-Forwarded-Proto: generated URLs follow the scheme nginx reports.
    let root = http(tls_port, "GET", "/v1/", &[], None);
    assert_eq!(root.status, 200, "{root:?}");
    assert_eq!(root.json()["url"], "https://127.0.0.1/v1/");
    let plain_root = http(nginx.port, "GET", "/v1/", &[], None);
    assert_eq!(plain_root.json()["url"], "http://127.0.0.1/v1/");
    let redirect = http(tls_port, "GET", "/v1/buckets/", &[], None);
    assert_eq!(redirect.status, 307, "{redirect:?}");
    assert_eq!(
        redirect.header("Location"),
        Some("https://127.0.0.1/v1/buckets")
    );
    let redirect = http(tls_port, "GET", "/", &[], None);
    assert_eq!(redirect.status, 307, "{redirect:?}");
    assert_eq!(redirect.header("Location"), Some("https://127.0.0.1/v1/"));

    // X-Forwarded-For does not change the client address (log-x-forwarded-for is off).
    let marker = "/v1/?xff=1";
    let r = http(
        tls_port,
        "GET",
        marker,
        &[("X-Forwarded-For", "203.0.113.9")],
        None,
    );
    assert_eq!(r.status, 200);
    kinto.flush_log();
    let lines = kinto.request_lines("GET", marker);
    assert_eq!(lines.len(), 1, "{}", kinto.lines.text());
    assert!(lines[0].contains("] 127.0.0.1 () {"), "{}", lines[0]);
    assert!(!lines[0].contains("203.0.113.9"), "{}", lines[0]);
    assert_eq!(kinto.request_lines("GET", record).len(), 1);
}

/// TCP connections on loopback, from `/proc/net/tcp`: (local port, remote port, state).
fn tcp_sockets() -> Vec<(u16, u16, u8)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next().unwrap(), 16).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
            Some((port(fields[1]), port(fields[2]), state))
        })
        .collect()
}

const ESTABLISHED: u8 = 0x01;
const TIME_WAIT: u8 = 0x06;

#[test]
fn keep_alive_from_nginx_to_http11_socket() {
    let dir = TempDir::new("nginx_keepalive");
    let ini = sqlite_ini(
        dir.path(),
        "",
        "http11-socket = 127.0.0.1:0\nhttp-keepalive = 30\nprocesses = 2\nmaster = true",
    );
    let kinto = Kinto::start(dir.path(), &ini);
    let servers = format!(
        "    upstream kinto {{
        server 127.0.0.1:{kinto_port};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{{listen}};
        location / {{
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            include proxy_params;
            proxy_pass http://kinto;
        }}
    }}",
        kinto_port = kinto.port
    );
    let nginx = Nginx::start(dir.path(), &servers);

    let requests = 8;
    for i in 0..requests {
        let r = http(nginx.port, "GET", &format!("/v1/?ka={i}"), &[], None);
        assert_eq!(r.status, 200, "{r:?}");
    }
    // One upstream connection, kept open (nginx side: remote port = kinto's), none closed.
    let sockets: Vec<_> = tcp_sockets()
        .into_iter()
        .filter(|(l, r, _)| *l == kinto.port || *r == kinto.port)
        .collect();
    let open: Vec<_> = sockets
        .iter()
        .filter(|(_, remote, state)| *remote == kinto.port && *state == ESTABLISHED)
        .collect();
    let closed = sockets
        .iter()
        .filter(|(_, _, state)| *state == TIME_WAIT)
        .count();
    assert_eq!(
        open.len(),
        1,
        "established upstream connections (local, remote, state): {sockets:?}"
    );
    assert_eq!(closed, 0, "connections closed after a request: {sockets:?}");
    // All requests were served by the one worker holding that connection.
    let log = kinto.lines.snapshot();
    let pids: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|l| l.contains("] GET /v1/?ka="))
        .filter_map(|l| l.strip_prefix("[pid: ")?.split('|').next())
        .collect();
    assert_eq!(pids.len(), 1, "{}", kinto.lines.text());
    drop(nginx);
    drop(kinto);
}
