//! Shared parts of the fault and hostile-input tests: the real `kinto` binary started on an ini
//! in a temporary directory, a raw HTTP/1.1 client that reports transport failures separately
//! from answers, worker discovery through `/proc`, fresh PostgreSQL databases on the shared
//! server and a private PostgreSQL cluster that a test may stop and start.

#![allow(dead_code)]

use base64::Engine;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const KINTO: &str = env!("CARGO_BIN_EXE_kinto");
const STARTUP: Duration = Duration::from_secs(20);

pub fn unique(kind: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("kinto_chaos_{kind}_{}_{n}", std::process::id())
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
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Authentication lines of the `[app:main]` section used by every test server.
pub const AUTH: &str = "multiauth.policies = basicauth\nkinto.userid_hmac_secret = chaos-secret\n\
                        kinto.bucket_create_principals = system.Authenticated\n";

/// `[app:main]` lines putting the three backends on one PostgreSQL database.
pub fn pg_backends(url: &str, pool: u32, pool_timeout: u64) -> String {
    format!(
        "kinto.storage_backend = kinto.core.storage.postgresql\nkinto.storage_url = {url}\n\
         kinto.permission_backend = kinto.core.permission.postgresql\nkinto.permission_url = {url}\n\
         kinto.cache_backend = kinto.core.cache.postgresql\nkinto.cache_url = {url}\n\
         kinto.storage_pool_size = {pool}\nkinto.permission_pool_size = {pool}\n\
         kinto.cache_pool_size = {pool}\nkinto.storage_pool_timeout = {pool_timeout}\n\
         kinto.permission_pool_timeout = {pool_timeout}\nkinto.cache_pool_timeout = {pool_timeout}\n"
    )
}

/// `[app:main]` lines putting the three backends on one SQLite file.
pub const SQLITE_BACKENDS: &str =
    "kinto.storage_backend = sqlite\nkinto.storage_url = sqlite:///kinto.db\n\
     kinto.permission_backend = sqlite\nkinto.permission_url = sqlite:///kinto.db\n\
     kinto.cache_backend = sqlite\nkinto.cache_url = sqlite:///kinto.db\n";

/// Lines the server wrote to stderr, collected by a reader thread.
pub type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// The running binary; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
    lines: Lines,
}

impl Server {
    /// Writes `<dir>/kinto.ini` (`[app:main]` = `app_main`, `[uwsgi]` = loopback port 0,
    /// `processes`, `master` and the `uwsgi_extra` lines), runs `kinto migrate` and starts
    /// `kinto --ini`, waiting for `READY=1` and the auto-assigned port.
    pub fn start(app_main: &str, processes: usize, uwsgi_extra: &str) -> Server {
        let dir = TempDir::new("srv");
        let ini = dir.0.join("kinto.ini");
        std::fs::write(
            &ini,
            format!(
                "[app:main]\n{app_main}\n\n[uwsgi]\nhttp-socket = 127.0.0.1:0\n\
                 processes = {processes}\nmaster = true\n{uwsgi_extra}\n"
            ),
        )
        .unwrap();
        let out = Command::new(KINTO)
            .arg("--ini")
            .arg(&ini)
            .arg("migrate")
            .current_dir(&dir.0)
            .env_remove("KINTO_INI")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kinto migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let Started {
            child,
            lines,
            notify,
        } = spawn(&dir.0, &ini, &[]);
        let mut server = Server {
            child,
            port: 0,
            dir,
            lines,
        };
        server.wait_ready(&notify);
        server.port = server.auto_assigned_port();
        server.wait_workers(processes, STARTUP);
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    fn wait_ready(&mut self, notify: &UnixDatagram) {
        let lines = self.lines.clone();
        wait_notify(&mut self.child, notify, &lines, "READY=1");
    }

    fn auto_assigned_port(&self) -> u16 {
        auto_assigned_port(&self.lines)
    }

    /// Pids of the master's live (not zombie) children: its workers.
    pub fn worker_pids(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    /// Waits until the master has `n` live workers; the time it took.
    pub fn wait_workers(&self, n: usize, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.worker_pids().len() == n {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let (lock, cond) = &*self.lines;
        let deadline = Instant::now() + timeout;
        let mut lines = lock.lock().unwrap();
        loop {
            if lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            lines = cond.wait_timeout(lines, left).unwrap().0;
        }
    }

    pub fn client(&self) -> Client {
        Client { port: self.port }
    }

    /// True while the master process is alive.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        signal(self.pid(), libc::SIGTERM);
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

/// A started `kinto --ini` process: its stderr lines (collected by a reader thread) and the
/// `NOTIFY_SOCKET` it reports to.
pub struct Started {
    pub child: Child,
    pub lines: Lines,
    pub notify: UnixDatagram,
}

/// Starts `kinto --ini <ini>` in `dir` with `env` added, its notify socket at
/// `<dir>/notify.sock`.
pub fn spawn(dir: &Path, ini: &Path, env: &[(&str, &str)]) -> Started {
    let notify_path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    // A master running as `uid = nobody` must still be able to send READY=1.
    std::fs::set_permissions(
        &notify_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut child = Command::new(KINTO)
        .arg("--ini")
        .arg(ini)
        .current_dir(dir)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("KINTO_INI")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            sink.0.lock().unwrap().push(line);
            sink.1.notify_all();
        }
    });
    Started {
        child,
        lines,
        notify,
    }
}

/// Waits for a datagram on `notify` with a line starting with `line`; returns that line.
pub fn wait_notify(child: &mut Child, notify: &UnixDatagram, lines: &Lines, line: &str) -> String {
    let log = || lines.0.lock().unwrap().join("\n");
    let deadline = Instant::now() + STARTUP;
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = notify.recv(&mut buf) {
            let datagram = String::from_utf8_lossy(&buf[..n]);
            if let Some(found) = datagram.lines().find(|l| l.starts_with(line)) {
                return found.to_string();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kinto exited with {status} before {line}:\n{}", log());
        }
    }
    panic!("no {line} within {STARTUP:?}:\n{}", log());
}

/// The port of the `... bound to TCP address 127.0.0.1:<port> (port auto-assigned) fd <n>` line.
pub fn auto_assigned_port(lines: &Lines) -> u16 {
    let (lock, cond) = &**lines;
    let deadline = Instant::now() + STARTUP;
    let mut lines = lock.lock().unwrap();
    loop {
        for line in lines.iter() {
            let Some((_, rest)) = line.split_once("bound to TCP address ") else {
                continue;
            };
            let Some((address, tail)) = rest.split_once(' ') else {
                continue;
            };
            if tail.starts_with("(port auto-assigned)") {
                return address.rsplit_once(':').unwrap().1.parse().unwrap();
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no (port auto-assigned) line:\n{}",
            lines.join("\n")
        );
        lines = cond.wait_timeout(lines, left).unwrap().0;
    }
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a pid this test started (the master or one of its workers).
    unsafe { libc::kill(pid, sig) };
}

/// Live children of `parent` (from `/proc/*/stat`; zombies excluded).
pub fn children_of(parent: i32) -> Vec<i32> {
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent && state != "Z" && state != "X" {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How a request failed without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Connection refused (nobody listening).
    Refused,
    /// Reset or EOF before a complete answer: the worker died mid-request.
    Cut(String),
    /// No answer within the client's timeout.
    Timeout,
}

/// A raw HTTP/1.1 client: one connection per request (`Connection: close`).
#[derive(Clone, Copy)]
pub struct Client {
    pub port: u16,
}

pub fn basic(user: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
    format!("Basic {token}")
}

impl Client {
    /// A JSON request as `user` (None: anonymous); panics on transport failure.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        self.try_call(method, path, user, body, &[], Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"))
    }

    pub fn try_call(
        &self,
        method: &str,
        path: &str,
        user: Option<&str>,
        body: Option<&Value>,
        extra_headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Answer, Transport> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        let typed = extra_headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !typed {
            head.push_str("Content-Type: application/json\r\n");
        }
        if let Some(user) = user {
            head.push_str(&format!("Authorization: {}\r\n", basic(user)));
        }
        for (name, value) in extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body.as_bytes());
        self.raw(&raw, timeout)
    }

    /// Sends `bytes` as they are and reads one answer (up to EOF or the announced length).
    pub fn raw(&self, bytes: &[u8], timeout: Duration) -> Result<Answer, Transport> {
        let mut stream = match TcpStream::connect(("127.0.0.1", self.port)) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(Transport::Refused)
            }
            Err(e) => return Err(Transport::Cut(format!("connect: {e}"))),
        };
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        if let Err(e) = stream.write_all(bytes) {
            // The server may answer (e.g. 413) and close before reading the whole body.
            if let Ok(answer) = read_answer(&mut stream) {
                return Ok(answer);
            }
            return Err(Transport::Cut(format!("write: {e}")));
        }
        read_answer(&mut stream)
    }
}

/// Reads one answer from `stream`: the head, then `Content-Length` bytes or up to EOF.
pub fn read_answer(stream: &mut TcpStream) -> Result<Answer, Transport> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Transport::Cut(format!("EOF after {} bytes", buf.len()))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return Err(Transport::Timeout),
            Err(e) => return Err(Transport::Cut(e.to_string())),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Transport::Cut(format!("bad status line: {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: Option<usize> = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok());
    let mut body = buf[head_end + 4..].to_vec();
    loop {
        if let Some(length) = length {
            if body.len() >= length {
                body.truncate(length);
                break;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                if length.is_some() {
                    return Err(Transport::Cut("EOF inside the body".into()));
                }
                break;
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => return Err(Transport::Timeout),
            Err(e) => return Err(Transport::Cut(e.to_string())),
        }
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A fresh database on the shared PostgreSQL server, dropped afterwards.
pub struct PgDb {
    pub name: String,
    admin: String,
}

pub fn admin_url() -> String {
    std::env::var("KINTO_TEST_PG_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/postgres".to_string())
}

impl PgDb {
    pub fn create() -> PgDb {
        PgDb::create_on(&admin_url())
    }

    pub fn create_on(admin: &str) -> PgDb {
        let name = unique("db");
        let mut client = postgres::Client::connect(admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL unreachable at {admin}: {e}"));
        client
            .batch_execute(&format!(
                "CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
            ))
            .unwrap();
        PgDb {
            name,
            admin: admin.to_string(),
        }
    }

    pub fn url(&self) -> String {
        let (base, _) = self.admin.rsplit_once('/').unwrap();
        format!("{base}/{}", self.name)
    }

    pub fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.url(), postgres::NoTls).unwrap()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private PostgreSQL cluster (initdb in a temporary directory, owned by the `postgres` OS
/// user, trust auth on loopback, a free port) that tests may stop and start at will: the shared
/// server on 5432 is never touched.
pub struct PrivatePg {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn pg_bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries under /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn as_postgres(program: &Path) -> Command {
    let mut command = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command.stdin(Stdio::null());
    command
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = pg_bin_dir();
        let dir = std::env::temp_dir().join(unique("pgdata"));
        std::fs::create_dir_all(&dir).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let out = as_postgres(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PrivatePg {
            dir,
            port: free_port(),
            bin,
        };
        pg.start_server();
        pg
    }

    pub fn admin_url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl start` (waits until it accepts connections).
    pub fn start_server(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self.dir.display()
        );
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "30", "-D"])
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// `pg_ctl stop -m fast` (disconnects every client).
    pub fn stop_server(&self) {
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "30", "-m", "fast", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["-w", "-t", "30", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates bucket `b` and collection `c` as `user`.
pub fn make_collection(client: &Client, user: &str, bucket: &str, collection: &str) {
    let a = client.call(
        "PUT",
        &format!("/v1/buckets/{bucket}"),
        Some(user),
        Some(&serde_json::json!({})),
    );
    assert!(matches!(a.status, 200 | 201), "{} {:?}", a.status, a.json());
    let a = client.call(
        "PUT",
        &format!("/v1/buckets/{bucket}/collections/{collection}"),
        Some(user),
        Some(&serde_json::json!({})),
    );
    assert!(matches!(a.status, 200 | 201), "{} {:?}", a.status, a.json());
}

/// What a load run saw.
#[derive(Debug, Default, Clone)]
pub struct LoadStats {
    pub sent: usize,
    /// Answers by status code.
    pub statuses: std::collections::BTreeMap<u16, usize>,
    /// Requests cut by a reset or EOF (in flight on a dying worker).
    pub cut: usize,
    pub timeouts: usize,
    pub refused: usize,
    /// 2xx answers whose content was not what was written.
    pub wrong: Vec<String>,
    /// 503 answers without `Retry-After` or without errno 201.
    pub malformed_503: usize,
    /// Ids of records whose creation was acknowledged (2xx), with the value written.
    pub acked: Vec<(String, u64)>,
    /// First answers that were neither 2xx nor a well-formed 503 (for the failure message).
    pub samples: Vec<String>,
}

impl LoadStats {
    pub fn merge(&mut self, other: LoadStats) {
        self.sent += other.sent;
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        self.cut += other.cut;
        self.timeouts += other.timeouts;
        self.refused += other.refused;
        self.wrong.extend(other.wrong);
        self.malformed_503 += other.malformed_503;
        self.acked.extend(other.acked);
        self.samples.extend(other.samples.into_iter().take(5));
    }

    pub fn count(&self, status: u16) -> usize {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    pub fn non_2xx(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests without a 2xx answer.
    pub fn failed(&self) -> usize {
        self.non_2xx() + self.cut + self.timeouts + self.refused
    }

    pub fn summary(&self) -> String {
        format!(
            "sent={} failed={} cut={} timeouts={} refused={} statuses={:?} wrong={} malformed_503={} writes_acked={}",
            self.sent,
            self.failed(),
            self.cut,
            self.timeouts,
            self.refused,
            self.statuses,
            self.wrong.len(),
            self.malformed_503,
            self.acked.len()
        )
    }
}

/// Steady traffic: `threads` clients, each alternating a record creation (PUT of a new id in
/// `/buckets/<bucket>/collections/<collection>`) and a read of one of its acknowledged records,
/// until `stop` is set.
pub fn start_load(
    client: Client,
    threads: usize,
    user: &'static str,
    bucket: &str,
    collection: &str,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<LoadStats>> {
    (0..threads)
        .map(|t| {
            let stop = stop.clone();
            let base = format!("/v1/buckets/{bucket}/collections/{collection}/records");
            let tag = unique("w");
            std::thread::spawn(move || {
                let mut stats = LoadStats::default();
                let mut n: u64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let id = format!("{tag}-{t}-{n}");
                    let body = serde_json::json!({"data": {"n": n, "thread": t}});
                    let result = client.try_call(
                        "PUT",
                        &format!("{base}/{id}"),
                        Some(user),
                        Some(&body),
                        &[],
                        Duration::from_secs(30),
                    );
                    stats.sent += 1;
                    if let Some(answer) = stats.record(result) {
                        if answer.json()["data"]["n"] != serde_json::json!(n) {
                            stats.wrong.push(format!("PUT {id}: {:?}", answer.json()));
                        }
                        stats.acked.push((id, n));
                    }
                    if stats.acked.is_empty() {
                        continue;
                    }
                    let (id, value) = stats.acked[n as usize % stats.acked.len()].clone();
                    let result = client.try_call(
                        "GET",
                        &format!("{base}/{id}"),
                        Some(user),
                        None,
                        &[],
                        Duration::from_secs(30),
                    );
                    stats.sent += 1;
                    if let Some(answer) = stats.record(result) {
                        if answer.json()["data"]["n"] != serde_json::json!(value) {
                            stats.wrong.push(format!("GET {id}: {:?}", answer.json()));
                        }
                    }
                }
                stats
            })
        })
        .collect()
}

impl LoadStats {
    /// Counts one result; returns the answer when it is a 2xx.
    pub fn record(&mut self, result: Result<Answer, Transport>) -> Option<Answer> {
        match result {
            Ok(answer) => {
                *self.statuses.entry(answer.status).or_default() += 1;
                if (200..300).contains(&answer.status) {
                    return Some(answer);
                }
                let well_formed_503 = answer.status == 503
                    && answer.header("Retry-After").is_some()
                    && answer.json()["errno"] == serde_json::json!(201);
                if answer.status == 503 && !well_formed_503 {
                    self.malformed_503 += 1;
                }
                if !well_formed_503 && self.samples.len() < 5 {
                    self.samples.push(format!(
                        "{} {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    ));
                }
                None
            }
            Err(Transport::Cut(_)) => {
                self.cut += 1;
                None
            }
            Err(Transport::Timeout) => {
                self.timeouts += 1;
                None
            }
            Err(Transport::Refused) => {
                self.refused += 1;
                None
            }
        }
    }
}

pub fn join_load(handles: Vec<std::thread::JoinHandle<LoadStats>>) -> LoadStats {
    let mut total = LoadStats::default();
    for h in handles {
        total.merge(h.join().unwrap());
    }
    total
}

/// Ids (and `data.n`) of the live records of a collection, read directly from PostgreSQL.
pub fn pg_records(
    client: &mut postgres::Client,
    bucket: &str,
    collection: &str,
) -> std::collections::HashMap<String, Value> {
    let parent = format!("/buckets/{bucket}/collections/{collection}");
    client
        .query(
            "SELECT id, data::text FROM objects WHERE resource_name = 'record' AND parent_id = $1 AND NOT deleted",
            &[&parent],
        )
        .unwrap()
        .into_iter()
        .map(|row| {
            let data: String = row.get(1);
            (row.get::<_, String>(0), serde_json::from_str::<Value>(&data).unwrap())
        })
        .collect()
}

/// A duration or count a test uses by default, raised by `scripts/chaos.sh` through the
/// environment (`CHAOS_KILL_SECS=30`, ...) for the long runs.
pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
