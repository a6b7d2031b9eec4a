//! Shared pieces of the deployment tests: temporary directories, free ports, the real `kinto`
//! binary started on an ini (readiness from `NOTIFY_SOCKET`, port from the `(port auto-assigned)`
//! line, stderr collected), and a small HTTP/1.1 client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const KINTO: &str = env!("CARGO_BIN_EXE_kinto");
/// Generous: the machine may be loaded by parallel builds and tests.
pub const STARTUP: Duration = Duration::from_secs(15);

pub fn unique(kind: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("kinto_deploy_{kind}_{}_{n}", std::process::id())
}

/// A temporary directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(kind: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(kind));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago (bound to port 0, read back, released), for
/// programs that cannot report the port they bound themselves (nginx, systemd-socket-activate).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `what` holds, polling every 50 ms; panics with `describe()` after `timeout`.
pub fn wait_for(timeout: Duration, mut what: impl FnMut() -> bool, describe: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !what() {
        assert!(Instant::now() < deadline, "timed out: {}", describe());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lines a process wrote to stderr, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    pub fn collect(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                (sink.0).0.lock().unwrap().push(line);
                (sink.0).1.notify_all();
            }
        });
        lines
    }

    pub fn text(&self) -> String {
        (self.0).0.lock().unwrap().join("\n")
    }

    pub fn snapshot(&self) -> Vec<String> {
        (self.0).0.lock().unwrap().clone()
    }

    /// The first line for which `pick` gives a value, waiting up to `timeout` for it.
    pub fn wait_map<T>(&self, timeout: Duration, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let (lock, cond) = &*self.0;
        let deadline = Instant::now() + timeout;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(found) = lines.iter().find_map(|l| pick(l)) {
                return found;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no such line within {timeout:?}:\n{}",
                lines.join("\n")
            );
            lines = cond.wait_timeout(lines, left).unwrap().0;
        }
    }
}

/// The port of a `... bound to TCP address 127.0.0.1:<port> (port auto-assigned) fd <n>` line.
pub fn auto_assigned_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("bound to TCP address ")?;
    let (address, tail) = rest.split_once(' ')?;
    if !tail.starts_with("(port auto-assigned)") {
        return None;
    }
    address.rsplit_once(':')?.1.parse().ok()
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
pub struct NotifySocket {
    pub path: PathBuf,
    socket: UnixDatagram,
    /// Every datagram received so far, in order.
    pub received: Vec<String>,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        NotifySocket {
            path,
            socket,
            received: Vec::new(),
        }
    }

    /// Receives datagrams until one has the line `line`; returns that datagram. `alive` is
    /// checked between reads so that a dead server fails at once.
    pub fn wait_for_line(
        &mut self,
        line: &str,
        timeout: Duration,
        mut alive: impl FnMut() -> Result<(), String>,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.received.push(datagram.clone());
                if datagram.lines().any(|l| l == line) {
                    return datagram;
                }
                continue;
            }
            if let Err(why) = alive() {
                panic!(
                    "waiting for {line}: {why}; datagrams so far: {:?}",
                    self.received
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {line} within {timeout:?}; datagrams so far: {:?}",
                self.received
            );
        }
    }
}

/// The real binary, started on `<dir>/kinto.ini`; stopped with SIGTERM (then SIGKILL) when
/// dropped.
pub struct Kinto {
    pub child: Child,
    pub port: u16,
    pub lines: Lines,
    pub notify: NotifySocket,
}

/// An ini with SQLite backends in `dir`, basic auth, and the given extra lines.
pub fn sqlite_ini(dir: &Path, app_main_extra: &str, uwsgi: &str) -> PathBuf {
    let db = dir.join("kinto.db");
    let ini = dir.join("kinto.ini");
    std::fs::write(
        &ini,
        format!(
            "[app:main]\nuse = egg:kinto\n\
             kinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///{db}\n\
             kinto.permission_backend = sqlite\nkinto.permission_url = sqlite:///{db}\n\
             kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///{db}\n\
             multiauth.policies = basicauth\nkinto.userid_hmac_secret = deploy-secret\n\
             kinto.bucket_create_principals = system.Authenticated\n\
             {app_main_extra}\n\n[uwsgi]\n{uwsgi}\n",
            db = db.display()
        ),
    )
    .unwrap();
    ini
}

impl Kinto {
    /// Starts `kinto --ini <ini>` and waits for `READY=1` and the auto-assigned port.
    pub fn start(dir: &Path, ini: &Path) -> Kinto {
        let notify = NotifySocket::bind(dir);
        let mut child = Command::new(KINTO)
            .arg("--ini")
            .arg(ini)
            .current_dir(dir)
            .env("NOTIFY_SOCKET", &notify.path)
            .env_remove("KINTO_INI")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Lines::collect(child.stderr.take().unwrap());
        let mut kinto = Kinto {
            child,
            port: 0,
            lines,
            notify,
        };
        let (child, lines) = (&mut kinto.child, &kinto.lines);
        kinto
            .notify
            .wait_for_line("READY=1", STARTUP, || match child.try_wait().unwrap() {
                Some(status) => Err(format!("kinto exited with {status}:\n{}", lines.text())),
                None => Ok(()),
            });
        kinto.port = kinto.lines.wait_map(STARTUP, auto_assigned_port);
        kinto
    }

    /// Request log lines (`[pid: ...] <addr> () {...} [...] METHOD PATH => ...`) for `path`.
    pub fn request_lines(&self, method: &str, path: &str) -> Vec<String> {
        let needle = format!("] {method} {path} => ");
        self.lines
            .snapshot()
            .into_iter()
            .filter(|l| l.starts_with("[pid: ") && l.contains(&needle))
            .collect()
    }

    /// Sends a request straight to kinto and waits for its request line, so that every request
    /// the single worker served before it is logged too.
    pub fn flush_log(&self) {
        let marker = format!("/v1/?flush={}", unique("marker"));
        let response = http(self.port, "GET", &marker, &[], None);
        assert_eq!(response.status, 200);
        let needle = format!("] GET {marker} => ");
        self.lines
            .wait_map(STARTUP, |l| l.contains(&needle).then_some(()));
    }
}

impl Drop for Kinto {
    fn drop(&mut self) {
        stop_child(&mut self.child, libc::SIGTERM);
    }
}

/// Signals `child` by its pid, waits up to 10 s, then SIGKILLs it.
pub fn stop_child(child: &mut Child, signal: i32) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: signalling a child this test spawned, by its pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// `Authorization` value of basic auth for `user` (any password works with Kinto's basicauth).
pub fn basic(user: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
    format!("Basic {token}")
}

/// One request on a fresh `Connection: close` connection to 127.0.0.1:`port`.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
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
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {text:?}"));
    let mut head_lines = head.split("\r\n");
    let status = head_lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers = head_lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut response = Response {
        status,
        headers,
        body: body.to_string(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body);
    }
    response
}

/// The payload of a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|e| panic!("bad chunk size {size:?}: {e}"));
        if size == 0 {
            break;
        }
        out.push_str(&tail[..size]);
        rest = &tail[size + 2..];
    }
    out
}
