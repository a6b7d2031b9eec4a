//! Shared harness of the process tests: starts the probe binary (master + workers) with an ini in
//! a temporary directory, a `NOTIFY_SOCKET` to wait for `READY=1`, and a reader collecting its log.
//! No fixed ports (`127.0.0.1:0`, the port is read back from the log) and no sleeps for readiness.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PROBE: &str = env!("CARGO_BIN_EXE_probe");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "probe-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The log lines of a child process, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn collect(stream: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits for a line containing `needle` and returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_nth(needle, 1, timeout)
    }

    /// Waits until `n` lines contain `needle`; returns the n-th.
    pub fn wait_for_nth(&self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<String> = self
                .all()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line #{n} containing {needle:?} within {timeout:?}; log:\n{}",
                self.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn count(&self, needle: &str) -> usize {
        self.all().iter().filter(|l| l.contains(needle)).count()
    }
}

/// A running probe.
pub struct Server {
    pub dir: TempDir,
    pub child: Child,
    pub lines: Lines,
    pub notify: UnixDatagram,
    pub notes: Vec<String>,
    pub port: u16,
    exited: Option<ExitStatus>,
}

/// Writes `ini` to `probe.ini` in a new directory.
pub fn write_ini(dir: &TempDir, ini: &str) -> PathBuf {
    let path = dir.path("probe.ini");
    std::fs::write(&path, ini).unwrap();
    path
}

/// Starts the probe on an ini and waits for `READY=1`.
pub fn start(ini: &str) -> Server {
    start_with(ini, |_| {})
}

/// Same, letting the test adjust the command (environment, fds).
pub fn start_with(ini: &str, adjust: impl FnOnce(&mut Command)) -> Server {
    let mut server = spawn_with(ini, adjust);
    server.wait_ready();
    server
}

/// Starts the probe without waiting for readiness.
pub fn spawn_with(ini: &str, adjust: impl FnOnce(&mut Command)) -> Server {
    let dir = TempDir::new();
    let ini_path = write_ini(&dir, ini);
    let notify_path = dir.path("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    // Writable by everyone, as systemd's: the master may have dropped privileges.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut cmd = Command::new(PROBE);
    cmd.arg("--ini")
        .arg(&ini_path)
        .current_dir(&dir.0)
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("PROBE_INIT_FAIL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    adjust(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let lines = Lines::collect(child.stderr.take().unwrap());
    Server {
        dir,
        child,
        lines,
        notify,
        notes: Vec::new(),
        port: 0,
        exited: None,
    }
}

impl Server {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for `READY=1` and reads the auto-assigned port (if any) from the log.
    pub fn wait_ready(&mut self) {
        self.wait_notify("READY=1", Duration::from_secs(15));
        if let Some(line) = self
            .lines
            .all()
            .into_iter()
            .find(|l| l.contains("(port auto-assigned)"))
        {
            let addr = line.split(" address ").nth(1).unwrap();
            let port = addr.split(' ').next().unwrap().rsplit(':').next().unwrap();
            self.port = port.parse().unwrap();
        }
    }

    /// Waits for a notification datagram containing `key`; returns it. Datagrams are kept.
    pub fn wait_notify(&mut self, key: &str, timeout: Duration) -> String {
        self.wait_notify_nth(key, 1, timeout)
    }

    pub fn wait_notify_nth(&mut self, key: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            let found: Vec<&String> = self.notes.iter().filter(|m| m.contains(key)).collect();
            if found.len() >= n {
                return found[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no notification #{n} with {key:?} within {timeout:?}; got {:?}; log:\n{}",
                self.notes,
                self.lines.all().join("\n")
            );
            if let Ok(len) = self.notify.recv(&mut buf) {
                self.notes
                    .push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        }
    }

    /// Collects the datagrams arriving within `timeout` (no assertion).
    pub fn collect_notes(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(len) = self.notify.recv(&mut buf) {
                self.notes
                    .push(String::from_utf8_lossy(&buf[..len]).into_owned());
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill on the pid of a child we started.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Pids of the processes whose parent is the master.
    pub fn workers(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    /// Waits until the master has exactly `n` children and returns them.
    pub fn wait_workers(&self, n: usize, timeout: Duration) -> Vec<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let w = self.workers();
            if w.len() == n {
                return w;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} workers, have {w:?}; log:\n{}",
                self.lines.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.port, path)
    }

    /// Waits for the master to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.exited = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "master still running after {timeout:?}; log:\n{}",
                self.lines.all().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let workers = self.workers();
            // SAFETY: kill of pids we started (the master and its children).
            unsafe { libc::kill(self.pid(), libc::SIGKILL) };
            for w in workers {
                unsafe { libc::kill(w, libc::SIGKILL) };
            }
            let _ = self.child.wait();
        }
    }
}

/// Children of `pid`, from `/proc/<n>/stat`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(n) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if parent_of(n) == Some(pid) {
            out.push(n);
        }
    }
    out.sort();
    out
}

/// The parent pid of `pid`, while it exists and is not a zombie.
pub fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let state = fields.next()?;
    if state == "Z" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// A field of `/proc/<pid>/status` (`Uid`, `Gid`, `Groups`, `Threads`).
pub fn status_field(pid: i32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One GET with `Connection: close`; returns the status and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A worker pid from a `spawned`/`Respawned` line.
pub fn pid_in(line: &str) -> i32 {
    let after = line.split("pid: ").nth(1).expect("line with a pid");
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// One GET over a Unix socket; returns the status and body.
pub fn unix_get(path: &std::path::Path, target: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}
