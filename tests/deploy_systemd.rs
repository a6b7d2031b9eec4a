//! systemd, as `contrib/kinto.service` (Type=notify) and `contrib/kinto.socket` use it: socket
//! activation (`LISTEN_FDS`/`LISTEN_PID`, descriptor 3) through `systemd-socket-activate` and
//! through an fd-passing harness of our own, with the notifications (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`) received on a fake `NOTIFY_SOCKET`. The unit files are checked against the
//! contract (SERVER.md 5.3).

mod deploy_support;

use deploy_support::{free_port, http, sqlite_ini, Lines, NotifySocket, TempDir, KINTO, STARTUP};
use std::ffi::CString;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The value of `KEY=` in a datagram.
fn field<'a>(datagram: &'a str, key: &str) -> Option<&'a str> {
    datagram
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling a child this test spawned, by its pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Kills the child if a test fails half-way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        deploy_support::stop_child(&mut self.0, libc::SIGKILL);
    }
}

fn alive(child: &mut Child, lines: &Lines) -> Result<(), String> {
    match child.try_wait().unwrap() {
        Some(status) => Err(format!("kinto exited with {status}:\n{}", lines.text())),
        None => Ok(()),
    }
}

/// Pointers handed to the child between fork and exec, prepared before the fork.
struct ExecPlan {
    program: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    /// `LISTEN_PID=` followed by room for the pid digits and the NUL.
    listen_pid: Box<[u8; 40]>,
    listener_fd: i32,
}

impl ExecPlan {
    /// In the forked child: the listener becomes descriptor 3 (without close-on-exec),
    /// `LISTEN_PID` gets the child's own pid, then execve. Only async-signal-safe calls, no
    /// allocation. Returns only on failure.
    fn exec_in_child(&mut self) -> std::io::Error {
        // SAFETY: plain syscalls on descriptors and buffers owned by this plan.
        unsafe {
            if self.listener_fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(self.listener_fd, 3) < 0 {
                return std::io::Error::last_os_error();
            }
            let mut pid = libc::getpid() as u32;
            let mut digits = [0u8; 10];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            let start = "LISTEN_PID=".len();
            for i in 0..n {
                self.listen_pid[start + i] = digits[n - 1 - i];
            }
            self.listen_pid[start + n] = 0;
            let argv: [*const libc::c_char; 4] = [
                self.argv[0].as_ptr(),
                self.argv[1].as_ptr(),
                self.argv[2].as_ptr(),
                std::ptr::null(),
            ];
            let mut envp: [*const libc::c_char; 8] = [std::ptr::null(); 8];
            for (slot, var) in envp.iter_mut().zip(&self.env) {
                *slot = var.as_ptr();
            }
            envp[self.env.len()] = self.listen_pid.as_ptr() as *const libc::c_char;
            libc::execve(self.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            std::io::Error::last_os_error()
        }
    }
}

/// Starts kinto the way systemd does for a socket unit: `listener` as descriptor 3,
/// `LISTEN_FDS=1`, `LISTEN_PID` = the child's pid (set between fork and exec).
fn spawn_activated(listener: &TcpListener, ini: &Path, notify: &Path) -> Child {
    let mut listen_pid = Box::new([0u8; 40]);
    listen_pid[.."LISTEN_PID=".len()].copy_from_slice(b"LISTEN_PID=");
    let cstr = |s: &str| CString::new(s).unwrap();
    let mut plan = ExecPlan {
        program: cstr(KINTO),
        argv: vec![cstr(KINTO), cstr("--ini"), cstr(ini.to_str().unwrap())],
        env: vec![
            cstr("LISTEN_FDS=1"),
            cstr(&format!("NOTIFY_SOCKET={}", notify.display())),
            cstr(&format!(
                "PATH={}",
                std::env::var("PATH").unwrap_or_default()
            )),
        ],
        listen_pid,
        listener_fd: listener.as_raw_fd(),
    };
    let mut command = Command::new(KINTO);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: the closure only makes async-signal-safe calls (see exec_in_child).
    unsafe {
        command.pre_exec(move || Err(plan.exec_in_child()));
    }
    command
        .spawn()
        .expect("spawn kinto with an inherited socket")
}

fn ini_for(dir: &Path, port: u16) -> PathBuf {
    // The http-socket line names the inherited socket's address: it is matched, not bound.
    sqlite_ini(
        dir,
        "",
        &format!("http-socket = 127.0.0.1:{port}\nprocesses = 2\nmaster = true\nworker-reload-mercy = 10"),
    )
}

#[test]
fn socket_activation_and_notifications_through_a_reload_and_a_stop() {
    let dir = TempDir::new("systemd_harness");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ini = ini_for(dir.path(), port);
    let mut notify = NotifySocket::bind(dir.path());
    let mut child = spawn_activated(&listener, &ini, &notify.path);
    // The test keeps its copy open as systemd does: the socket outlives the service.
    let lines = Lines::collect(child.stderr.take().unwrap());
    let mut guard = Guard(child);

    let ready = notify.wait_for_line("READY=1", STARTUP, || alive(&mut guard.0, &lines));
    let pid = guard.0.id().to_string();
    assert_eq!(field(&ready, "MAINPID"), Some(pid.as_str()), "{ready:?}");
    let status = field(&ready, "STATUS").unwrap_or_default();
    assert!(status.starts_with("ready: "), "{ready:?}");
    assert!(status.ends_with(" of 2 workers accepting"), "{ready:?}");
    assert!(
        notify.received[0].contains("STATUS=initializing"),
        "{:?}",
        notify.received
    );
    let log = lines.text();
    assert!(
        log.contains("- SystemD socket activation detected -"),
        "{log}"
    );
    assert!(
        !log.contains("(port auto-assigned)"),
        "the inherited socket must not be bound again: {log}"
    );

    // Requests are served on the passed socket.
    let root = http(port, "GET", "/v1/", &[], None);
    assert_eq!(root.status, 200, "{root:?}");
    assert_eq!(root.json()["url"], format!("http://127.0.0.1:{port}/v1/"));

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC (what Type=notify-reload matches), then READY=1.
    let before = monotonic_usec();
    signal(&guard.0, libc::SIGHUP);
    let reloading = notify.wait_for_line("RELOADING=1", STARTUP, || alive(&mut guard.0, &lines));
    let usec: u64 = field(&reloading, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "MONOTONIC_USEC {usec} not in [{before}, now]"
    );
    assert_eq!(field(&reloading, "STATUS"), Some("reloading"));
    let ready = notify.wait_for_line("READY=1", STARTUP, || alive(&mut guard.0, &lines));
    assert!(
        field(&ready, "STATUS").is_some_and(|s| s.starts_with("ready: ")),
        "{ready:?}"
    );
    let root = http(port, "GET", "/v1/", &[], None);
    assert_eq!(root.status, 200, "served after the reload: {root:?}");

    // SIGTERM (systemd's KillSignal): STOPPING=1, then a clean exit.
    signal(&guard.0, libc::SIGTERM);
    let stopping = notify.wait_for_line("STOPPING=1", STARTUP, || Ok(()));
    assert_eq!(field(&stopping, "STATUS"), Some("stopping"));
    deploy_support::wait_for(
        STARTUP,
        || guard.0.try_wait().unwrap().is_some(),
        || format!("kinto still running after SIGTERM:\n{}", lines.text()),
    );
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "{status}: {}", lines.text());
    drop(listener);
}

/// `systemd-socket-activate` (Debian's systemd package), installed when missing.
fn socket_activate_binary() -> PathBuf {
    let path = PathBuf::from("/usr/bin/systemd-socket-activate");
    if !path.exists() {
        // The package only installs files in a container; nothing is started.
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "systemd"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    assert!(
        path.exists(),
        "systemd-socket-activate is missing and `apt-get install -y systemd` failed"
    );
    path
}

#[test]
fn systemd_socket_activate_starts_kinto_on_first_connection() {
    let tool = socket_activate_binary();
    let dir = TempDir::new("systemd_tool");
    let mut attempt = 0;
    let (mut guard, lines, port, mut notify) = loop {
        attempt += 1;
        let port = free_port();
        let ini = ini_for(dir.path(), port);
        let _ = std::fs::remove_file(dir.path().join("notify.sock"));
        let notify = NotifySocket::bind(dir.path());
        let mut child = Command::new(&tool)
            .arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-E")
            .arg(format!("NOTIFY_SOCKET={}", notify.path.display()))
            .arg(KINTO)
            .arg("--ini")
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start systemd-socket-activate");
        let lines = Lines::collect(child.stderr.take().unwrap());
        let mut guard = Guard(child);
        // It binds, then waits for a first connection before it execs kinto.
        let listening = format!("Listening on 127.0.0.1:{port} as 3.");
        let mut exited = false;
        deploy_support::wait_for(
            STARTUP,
            || {
                exited = guard.0.try_wait().unwrap().is_some();
                exited || lines.text().contains(&listening)
            },
            || lines.text(),
        );
        if !exited {
            break (guard, lines, port, notify);
        }
        assert!(
            attempt < 5,
            "systemd-socket-activate failed: {}",
            lines.text()
        );
    };
    // The first request wakes it: it waits in the backlog until kinto accepts.
    let root = http(port, "GET", "/v1/", &[], None);
    assert_eq!(root.status, 200, "{root:?}");
    let ready = notify.wait_for_line("READY=1", STARTUP, || alive(&mut guard.0, &lines));
    // The tool execs kinto in place: MAINPID is the pid it was started with.
    assert_eq!(
        field(&ready, "MAINPID"),
        Some(guard.0.id().to_string().as_str())
    );
    let log = lines.text();
    assert!(
        log.contains("- SystemD socket activation detected -"),
        "{log}"
    );
    signal(&guard.0, libc::SIGTERM);
    notify.wait_for_line("STOPPING=1", STARTUP, || Ok(()));
    deploy_support::wait_for(
        STARTUP,
        || guard.0.try_wait().unwrap().is_some(),
        || lines.text(),
    );
}

/// `[Section]` → `key=value` pairs of a unit file, comments dropped.
fn unit(path: &str) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn has(unit: &[(String, String, String)], section: &str, key: &str, value: &str) -> bool {
    unit.iter()
        .any(|(s, k, v)| s == section && k == key && v == value)
}

#[test]
fn contrib_units_follow_the_contract() {
    let service = unit("contrib/kinto.service");
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("ExecStart", "/usr/bin/kinto --ini /etc/kinto/kinto.ini"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("KillMode", "mixed"),
        ("TimeoutStopSec", "70"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "1 2 22"),
        ("RuntimeDirectory", "kinto"),
        ("LimitNOFILE", "65536"),
    ] {
        assert!(
            has(&service, "Service", key, value),
            "[Service] {key}={value}"
        );
    }
    assert!(has(&service, "Install", "WantedBy", "multi-user.target"));
    // TimeoutStopSec must exceed worker-reload-mercy's default (60 s): SIGTERM is graceful.
    let socket = unit("contrib/kinto.socket");
    assert!(has(&socket, "Socket", "ListenStream", "127.0.0.1:8000"));
    assert!(has(&socket, "Socket", "Backlog", "100"));
    assert!(has(&socket, "Install", "WantedBy", "sockets.target"));
    // The service names the socket unit (commented out: socket activation is optional).
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/kinto.service"),
    )
    .unwrap();
    assert!(text.contains("Requires=kinto.socket") && text.contains("After=kinto.socket"));
}
