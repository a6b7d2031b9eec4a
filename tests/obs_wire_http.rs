//! Metrics and logs of real requests: the binary started on an ini in a temporary directory
//! (`127.0.0.1:0`, port from the `(port auto-assigned)` line), talked to over HTTP. StatsD
//! datagrams are read on a UDP socket of the test, the Heka request summaries on the server's
//! stdout, and `/v1/__metrics__` is scraped until both workers have answered it.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const KINTO: &str = env!("CARGO_BIN_EXE_kinto");
const PATIENCE: Duration = Duration::from_secs(15);

const SQLITE: &str = "kinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///kinto.db\n\
    kinto.permission_backend = sqlite\nkinto.permission_url = sqlite:///kinto.db\n\
    kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///kinto.db\n\
    multiauth.policies = basicauth\nkinto.userid_hmac_secret = wire-secret\n";

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(kind: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("obs_wire_{kind}_{}_{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines of one output stream of the server, collected by a reader thread.
#[derive(Clone, Default)]
struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn follow(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.0 .0.lock().unwrap().push(line);
                sink.0 .1.notify_all();
            }
        });
        lines
    }

    fn all(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().clone()
    }

    /// Waits until `found` returns something for the lines so far.
    fn wait_for<T>(&self, what: &str, mut found: impl FnMut(&[String]) -> Option<T>) -> T {
        let (lock, cond) = &*self.0;
        let deadline = Instant::now() + PATIENCE;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(value) = found(&lines) {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {what} in:\n{}", lines.join("\n"));
            lines = cond.wait_timeout(lines, left).unwrap().0;
        }
    }
}

/// The running binary; stopped with SIGTERM (then SIGKILL) when dropped.
struct Server {
    child: Child,
    port: u16,
    stdout: Lines,
    stderr: Lines,
}

impl Server {
    fn start(dir: &TempDir, app_main: &str, processes: usize, extra_ini: &str) -> Server {
        let ini = dir.0.join("kinto.ini");
        std::fs::write(
            &ini,
            format!(
                "[app:main]\n{app_main}\n\n[uwsgi]\nhttp-socket = 127.0.0.1:0\n\
                 processes = {processes}\nmaster = true\nharakiri = 10\n\
                 log-format = served-by %(pid) %(uri)\n\n{extra_ini}"
            ),
        )
        .unwrap();
        let mut child = Command::new(KINTO)
            .arg("--ini")
            .arg(&ini)
            .current_dir(&dir.0)
            .env_remove("KINTO_INI")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let stderr: ChildStderr = child.stderr.take().unwrap();
        let stdout = Lines::follow(stdout);
        let stderr = Lines::follow(stderr);
        let port = stderr.wait_for("(port auto-assigned) line", |lines| {
            lines.iter().find_map(|line| {
                let (_, rest) = line.split_once("bound to TCP address ")?;
                let (address, tail) = rest.split_once(' ')?;
                tail.starts_with("(port auto-assigned)")
                    .then(|| address.rsplit_once(':')?.1.parse().ok())?
            })
        });
        let server = Server {
            child,
            port,
            stdout,
            stderr,
        };
        server.wait_serving();
        server
    }

    /// Waits until a worker answers (the port is bound before the workers are ready).
    fn wait_serving(&self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                if raw_request(stream, self.port, "GET", "/v1/__lbheartbeat__", &[], "").is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("not serving:\n{}", self.stderr.all().join("\n"));
    }

    /// One request on a fresh connection: status, headers and body text.
    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, String, String) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let body = body.map(Value::to_string).unwrap_or_default();
        raw_request(stream, self.port, method, path, headers, &body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// A request as `user` (basic auth) with a JSON body; returns the status.
    fn call(&self, method: &str, path: &str, user: &str, body: Option<&Value>) -> u16 {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
        let authorization = format!("Basic {token}");
        self.send(method, path, &[("Authorization", &authorization)], body)
            .0
    }

    /// Waits until the request log shows `count` requests of `uri`; the pids that served them.
    fn served_by(&self, uri: &str, count: usize) -> BTreeSet<String> {
        self.stderr.wait_for("request lines", |lines| {
            let pids: Vec<&str> = lines
                .iter()
                .filter_map(|line| {
                    let rest = line.strip_prefix("served-by ")?;
                    let (pid, served) = rest.split_once(' ')?;
                    (served == uri).then_some(pid)
                })
                .collect();
            (pids.len() >= count).then(|| pids.into_iter().map(str::to_string).collect())
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling the child this test spawned, by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raw_request(
    mut stream: TcpStream,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("incomplete response: {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status: {head:?}")))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// Creates bucket `b1` and collection `c1` as `alice`.
fn create_parents(server: &Server) {
    assert_eq!(server.call("PUT", "/v1/buckets/b1", "alice", None), 201);
    assert_eq!(
        server.call("PUT", "/v1/buckets/b1/collections/c1", "alice", None),
        201
    );
}

/// StatsD with the production docs' setting (`statsd_url` alone): cliquet's names.
#[test]
fn statsd_datagrams_of_record_requests() {
    let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let statsd_port = statsd.local_addr().unwrap().port();
    let dir = TempDir::new("statsd");
    let server = Server::start(
        &dir,
        &format!("{SQLITE}kinto.statsd_url = udp://127.0.0.1:{statsd_port}\n"),
        1,
        "",
    );
    create_parents(&server);
    let record = json!({"data": {"title": "hello"}});
    let path = "/v1/buckets/b1/collections/c1/records/r1";
    assert_eq!(server.call("PUT", path, "alice", Some(&record)), 201);
    assert_eq!(server.call("GET", path, "alice", None), 200);

    let wanted = [
        "kinto.view.record-record.PUT:",
        "kinto.view.record-record.GET:",
        "kinto.view.bucket-record.PUT:",
        "kinto.storage.",
        "kinto.permission.",
        "kinto.users:basicauth.",
        "kinto.authn_type.basicauth:1|c",
        "kinto.authentication.permits:",
    ];
    let mut datagrams: Vec<String> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 2048];
    let authentications = |datagrams: &[String]| {
        datagrams
            .iter()
            .filter(|d| *d == "kinto.authn_type.basicauth:1|c")
            .count()
    };
    // Four authenticated requests: each counts its authentication after its view timer.
    while !wanted
        .iter()
        .all(|w| datagrams.iter().any(|d| d.starts_with(w)))
        || authentications(&datagrams) < 4
    {
        assert!(
            Instant::now() < deadline,
            "missing {:?} in {datagrams:#?}",
            wanted
                .iter()
                .filter(|w| !datagrams.iter().any(|d| d.starts_with(*w)))
                .collect::<Vec<_>>()
        );
        if let Ok(n) = statsd.recv(&mut buf) {
            datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    // Timers are milliseconds; the record PUT creates, the GET reads.
    let timer = |prefix: &str| {
        datagrams
            .iter()
            .filter(|d| d.starts_with(prefix) && d.ends_with("|ms"))
            .count()
    };
    assert_eq!(timer("kinto.view.record-record.GET:"), 1, "{datagrams:#?}");
    assert!(timer("kinto.storage.get:") >= 1, "{datagrams:#?}");
    assert!(
        datagrams
            .iter()
            .any(|d| d.starts_with("kinto.permission.") && d.ends_with("|ms")),
        "{datagrams:#?}"
    );
    assert_eq!(authentications(&datagrams), 4, "{datagrams:#?}");
    // One user: the set value is the same on every request.
    let users: BTreeSet<&String> = datagrams
        .iter()
        .filter(|d| d.starts_with("kinto.users:"))
        .collect();
    assert_eq!(users.len(), 1, "{datagrams:#?}");
}

/// StatsD with `kinto.plugins.statsd` in `includes`: Kinto 26's names and labels.
#[test]
fn statsd_kinto_names() {
    let statsd = UdpSocket::bind("127.0.0.1:0").unwrap();
    statsd
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let statsd_port = statsd.local_addr().unwrap().port();
    let dir = TempDir::new("statsd26");
    let server = Server::start(
        &dir,
        &format!(
            "{SQLITE}kinto.includes = kinto.plugins.statsd\n\
             kinto.statsd_url = udp://127.0.0.1:{statsd_port}\n"
        ),
        1,
        "",
    );
    create_parents(&server);
    let path = "/v1/buckets/b1/collections/c1/records/r1";
    assert_eq!(server.call("PUT", path, "alice", None), 201);
    assert_eq!(server.call("GET", path, "alice", None), 200);
    assert_eq!(
        server.call(
            "GET",
            "/v1/buckets/b1/collections/c1/records/nope",
            "alice",
            None
        ),
        404
    );
    let summary = |method: &str, rid: &str, status: u16| {
        format!(
            "kinto.request_summary:method.{method}.endpoint.record-object.bucket_id.b1.\
             collection_id.c1.group_id..record_id.{rid}.status.{status}|s"
        )
    };
    let wanted = [
        summary("put", "r1", 201),
        summary("get", "r1", 200),
        // Ids are empty for error statuses.
        "kinto.request_summary:method.get.endpoint.record-object.bucket_id..collection_id..\
         group_id..record_id..status.404|s"
            .to_string(),
        "kinto.request_duration_seconds.method.get.endpoint.record-object.bucket_id.b1.\
         collection_id.c1.group_id..record_id.r1:"
            .to_string(),
        "kinto.backend.storage.seconds.method.get:".to_string(),
        "kinto.backend.permission.seconds.method.replace_object_permissions:".to_string(),
        "kinto.users:auth.basicauth.userid.".to_string(),
        "kinto.authentication:type.basicauth|s".to_string(),
        "kinto.request_size:".to_string(),
        "kinto.authentication.basicauth.seconds.method.authenticated_userid:".to_string(),
    ];
    let mut datagrams: Vec<String> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [0u8; 2048];
    while !wanted
        .iter()
        .all(|w| datagrams.iter().any(|d| d.starts_with(w.as_str())))
    {
        assert!(
            Instant::now() < deadline,
            "missing some of {wanted:#?} in {datagrams:#?}"
        );
        if let Ok(n) = statsd.recv(&mut buf) {
            datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(
        !datagrams.iter().any(|d| d.starts_with("kinto.view.")),
        "{datagrams:#?}"
    );
}

/// The production docs' logging sections: a Heka JSON request summary on stdout per request, and
/// one per sub-request of a batch.
#[test]
fn heka_request_summaries_on_stdout() {
    // The docs' Sentry DSN, pointed at a closed local port: only errors would be sent.
    let seed = std::fs::read_to_string("/work/shared/seed/000_bad27d3498efbfc1.txt")
        .expect("the production docs");
    let start = seed.find("    [loggers]").expect("the logging sections");
    let end = seed[start..].find("\n\n\nPostgreSQL").unwrap() + start;
    let sections: String = seed[start..end]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("example.com", "127.0.0.1:9");
    let dir = TempDir::new("heka");
    let server = Server::start(
        &dir,
        &format!("{SQLITE}kinto.logging_renderer = cliquet.logs.MozillaHekaRenderer\n"),
        1,
        &sections,
    );
    create_parents(&server);
    let token = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    let authorization = format!("Basic {token}");
    let (status, _, _) = server.send(
        "GET",
        "/v1/buckets/b1/collections/c1/records?_limit=1&x=a%20b",
        &[
            ("Authorization", &authorization),
            ("X-Request-Id", "wire-rid-1"),
            ("User-Agent", "wire-test/1.0"),
            ("Accept-Language", "fr"),
        ],
        None,
    );
    assert_eq!(status, 200);
    let summary = server.stdout.wait_for("request summary", |lines| {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["Fields"]["rid"] == "wire-rid-1")
    });
    assert_eq!(summary["Type"], "request.summary", "{summary}");
    assert_eq!(summary["Logger"], "kinto");
    assert_eq!(summary["Severity"], 6);
    assert_eq!(summary["EnvVersion"], "2.0");
    let fields = &summary["Fields"];
    assert_eq!(fields["path"], "/v1/buckets/b1/collections/c1/records");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["code"], 200);
    assert_eq!(fields["errno"], 0);
    assert_eq!(fields["agent"], "wire-test/1.0");
    assert_eq!(fields["lang"], "fr");
    assert_eq!(fields["authn_type"], "basicauth");
    assert_eq!(fields["querystring"], json!({"_limit": "1", "x": "a b"}));
    let uid = fields["uid"].as_str().unwrap();
    assert!(!uid.is_empty() && !uid.contains(':'), "{fields}");
    assert!(fields["t"].is_u64(), "{fields}");

    // A failing request: its errno; an unknown URL.
    let (status, _, _) = server.send(
        "GET",
        "/v1/nowhere",
        &[("X-Request-Id", "wire-rid-2")],
        None,
    );
    assert_eq!(status, 404);
    let missing = server.stdout.wait_for("404 summary", |lines| {
        lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["Fields"]["rid"] == "wire-rid-2")
    });
    assert_eq!(missing["Fields"]["errno"], 111, "{missing}");
    assert_eq!(missing["Fields"]["code"], 404);
    assert!(missing["Fields"].get("uid").is_none(), "{missing}");

    // An unexpected error (no version file): logged on the root logger with its request.
    let (status, _, _) = server.send(
        "GET",
        "/v1/__version__?v=1",
        &[("X-Request-Id", "wire-rid-4")],
        None,
    );
    assert_eq!(status, 500);
    let lines = server.stdout.wait_for("500 lines", |lines| {
        let found: Vec<Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["Fields"]["rid"] == "wire-rid-4")
            .collect();
        (found.len() >= 2).then_some(found)
    });
    assert_eq!(lines[0]["Type"], "root", "{lines:?}");
    assert_eq!(lines[0]["Severity"], 3);
    assert_eq!(lines[0]["Fields"]["path"], "/v1/__version__");
    assert_eq!(lines[0]["Fields"]["errno"], 999);
    assert_eq!(lines[0]["Fields"]["querystring"], json!({"v": "1"}));
    assert!(lines[0]["Fields"]["error"]
        .as_str()
        .unwrap()
        .contains("version file"));
    assert_eq!(lines[1]["Type"], "request.summary");
    assert_eq!(lines[1]["Fields"]["code"], 500);

    // A batch: one summary per sub-request, then the batch's with its size.
    let batch = json!({"requests": [
        {"method": "GET", "path": "/buckets/b1"},
        {"method": "GET", "path": "/buckets/b1/collections/nope"},
    ]});
    let (status, _, _) = server.send(
        "POST",
        "/v1/batch",
        &[
            ("Authorization", &authorization),
            ("X-Request-Id", "wire-rid-3"),
        ],
        Some(&batch),
    );
    assert_eq!(status, 200);
    let lines = server.stdout.wait_for("batch summaries", |lines| {
        let found: Vec<Value> = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["Fields"]["rid"] == "wire-rid-3")
            .collect();
        (found.len() >= 3).then_some(found)
    });
    let types: Vec<&str> = lines.iter().map(|v| v["Type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "subrequest.summary",
            "subrequest.summary",
            "request.summary"
        ]
    );
    assert_eq!(lines[0]["Fields"]["path"], "/v1/buckets/b1");
    assert_eq!(lines[0]["Fields"]["msg"], "subrequest.summary");
    assert_eq!(lines[1]["Fields"]["code"], 404);
    assert_eq!(lines[1]["Fields"]["errno"], 110);
    assert_eq!(lines[1]["Fields"]["authn_type"], "basicauth");
    assert_eq!(lines[2]["Fields"]["batch_size"], 2);
    assert_eq!(lines[2]["Fields"]["path"], "/v1/batch");
    assert!(lines[2]["Fields"].get("uid").is_none(), "{}", lines[2]);
}

/// The value of the first Prometheus line starting with `series`.
fn series_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

/// Runs `per_client` requests from each of two clients at once; returns the results.
fn two_clients<T: Send + 'static>(
    server: &Arc<Server>,
    per_client: usize,
    request: fn(&Server) -> T,
) -> Vec<T> {
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                (0..per_client)
                    .map(|_| request(&server))
                    .collect::<Vec<T>>()
            })
        })
        .collect();
    clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect()
}

/// `/v1/__metrics__` with two workers: whichever worker answers, the counters are the totals.
#[test]
fn prometheus_totals_across_workers() {
    let dir = TempDir::new("prometheus");
    let server = Arc::new(Server::start(
        &dir,
        &format!("{SQLITE}kinto.includes = kinto.plugins.prometheus\n"),
        2,
        "",
    ));
    let deadline = Instant::now() + PATIENCE;
    // Hello requests from two clients at once until both workers have served some.
    let mut sent = 0;
    loop {
        for status in two_clients(&server, 10, |s| s.send("GET", "/v1/", &[], None).0) {
            assert_eq!(status, 200);
        }
        sent += 20;
        if server.served_by("/v1/", sent).len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "one worker served every request");
    }
    assert_eq!(server.send("GET", "/v1/__heartbeat__", &[], None).0, 200);

    let hello = "kinto_request_summary_total{method=\"get\",endpoint=\"hello\",\
                 bucket_id=\"\",collection_id=\"\",group_id=\"\",record_id=\"\",status=\"200\"}";
    let durations = "kinto_request_duration_seconds_count{method=\"get\",endpoint=\"hello\",";
    let mut scrapes = 0;
    loop {
        let answers = two_clients(&server, 3, |s| s.send("GET", "/v1/__metrics__", &[], None));
        scrapes += answers.len();
        for (status, head, text) in answers {
            assert_eq!(status, 200, "{text}");
            assert!(
                head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
                "{head}"
            );
            assert_eq!(series_value(&text, hello), Some(sent as u64), "{text}");
            assert_eq!(series_value(&text, durations), Some(sent as u64), "{text}");
            for role in ["storage", "cache"] {
                let ping = format!("kinto_backend_{role}_seconds_count{{method=\"ping\"}}");
                assert_eq!(series_value(&text, &ping), Some(1), "{text}");
            }
        }
        if server.served_by("/v1/__metrics__", scrapes).len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "one worker answered every scrape"
        );
    }
}

/// A backend that cannot be reached: the request's 503 and a CRITICAL line.
#[test]
fn backend_failures_are_critical() {
    let dir = TempDir::new("down");
    let down = "postgresql://postgres@127.0.0.1:1/kinto";
    let server = Server::start(
        &dir,
        &format!(
            "kinto.storage_backend = kinto.core.storage.postgresql\nkinto.storage_url = {down}\n\
             kinto.permission_backend = kinto.core.permission.postgresql\n\
             kinto.permission_url = {down}\n\
             kinto.cache_backend = kinto.core.cache.postgresql\nkinto.cache_url = {down}\n\
             multiauth.policies = basicauth\nkinto.userid_hmac_secret = wire-secret\n\
             kinto.logging_renderer = kinto.core.logs.JsonLogFormatter\n"
        ),
        1,
        "[loggers]\nkeys = root\n[handlers]\nkeys = console\n[formatters]\nkeys = json\n\
         [logger_root]\nlevel = INFO\nhandlers = console\n\
         [handler_console]\nclass = StreamHandler\nargs = (sys.stdout,)\nlevel = INFO\n\
         formatter = json\n[formatter_json]\nformat = %(message)s\n",
    );
    let token = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    let authorization = format!("Basic {token}");
    let (status, _, _) = server.send(
        "GET",
        "/v1/buckets",
        &[
            ("Authorization", &authorization),
            ("X-Request-Id", "wire-down"),
        ],
        None,
    );
    assert_eq!(status, 503);
    let lines = server
        .stdout
        .wait_for("CRITICAL and summary lines", |lines| {
            let found: Vec<Value> = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["Fields"]["rid"] == "wire-down")
                .collect();
            found
                .iter()
                .any(|v| v["Type"] == "request.summary")
                .then_some(found)
        });
    let critical = lines
        .iter()
        .find(|v| v["Severity"] == 2)
        .unwrap_or_else(|| panic!("no CRITICAL line in {lines:?}"));
    assert_eq!(critical["Type"], "kinto.core.views.errors", "{critical}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["Fields"]["code"], 503, "{summary}");
    assert_eq!(summary["Fields"]["errno"], 201, "{summary}");
}
