//! Privileges and files: uid/gid drop after binding, socket ownership, pidfile, vacuum.
//! These tests need root (the test machine runs them as root); without it they fail loudly.

mod process_support;

use process_support::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

fn require_root() {
    assert!(
        nix_is_root(),
        "privilege tests must run as root (uid/gid drop to nobody/nogroup)"
    );
}

fn nix_is_root() -> bool {
    // SAFETY: plain getter.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn drops_to_nobody_after_binding_in_a_root_only_directory() {
    require_root();
    let private = TempDir::new();
    std::fs::set_permissions(&private.0, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = private.path("kinto.sock");
    let mut s = start(&format!(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nhttp-socket = {}\nprocesses = 2\nuid = nobody\ngid = nogroup\nsocket-timeout = 1\n",
        sock.display()
    ));
    let workers = s.wait_workers(2, WAIT);
    for pid in workers.iter().chain([s.pid()].iter()) {
        assert_eq!(
            status_field(*pid, "Uid"),
            "65534\t65534\t65534\t65534",
            "pid {pid}"
        );
        assert_eq!(
            status_field(*pid, "Gid"),
            "65534\t65534\t65534\t65534",
            "pid {pid}"
        );
        assert!(!status_field(*pid, "Groups")
            .split_whitespace()
            .any(|g| g == "0"));
    }
    let all = s.lines.all();
    let socket_line = all
        .iter()
        .rposition(|l| l.starts_with("uwsgi socket 1 bound to UNIX address"))
        .unwrap();
    let setgid = all.iter().position(|l| l == "setgid() to 65534").unwrap();
    let setuid = all.iter().position(|l| l == "setuid() to 65534").unwrap();
    assert!(socket_line < setgid && setgid < setuid);
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    // The socket sits in a root-only directory: connect as root.
    assert_eq!(unix_get(&sock, "/pid").unwrap().0, 200);
    assert_eq!(s.get("/pid").unwrap().0, 200);
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn chown_socket_without_uid_and_chmod_lazy() {
    require_root();
    let dir = TempDir::new();
    let sock = dir.path("s.sock");
    std::fs::write(&sock, "stale").unwrap();
    let mut s = start(&format!(
        "[uwsgi]\nhttp-socket = {}\nchown-socket = nobody:nogroup\nchmod-socket = 1\nprocesses = 1\nsocket-timeout = 1\n",
        sock.display()
    ));
    s.lines
        .wait_for("chmod() socket to 666 for lazy and brave users", WAIT);
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(meta.mode() & 0o777, 0o666);
    assert_eq!(unix_get(&sock, "/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn pidfile_and_vacuum() {
    let dir = TempDir::new();
    let sock = dir.path("v.sock");
    let mut s = start(&format!(
        "[uwsgi]\nhttp-socket = {}\npidfile = %d%n.pid\nvacuum = true\nprocesses = 1\nsocket-timeout = 1\n",
        sock.display()
    ));
    let pidfile = s.dir.path("probe.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", s.pid())
    );
    assert_eq!(unix_get(&sock, "/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    s.lines.wait_for("VACUUM: pidfile removed.", WAIT);
    s.lines.wait_for(
        &format!("VACUUM: unix socket {} removed.", sock.display()),
        WAIT,
    );
    assert!(!pidfile.exists() && !sock.exists());
}

#[test]
fn logto_pidfile2_and_safe_pidfile() {
    let dir = TempDir::new();
    let log = dir.path("server.log");
    let mut s = start(&format!(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nlogto = {}\nsafe-pidfile = %dsafe.pid\npidfile2 = %dsecond.pid\nvacuum = true\nprocesses = 1\nsocket-timeout = 1\n",
        log.display()
    ));
    let pid = s.pid();
    for name in ["safe.pid", "second.pid"] {
        assert_eq!(
            std::fs::read_to_string(s.dir.path(name)).unwrap(),
            format!("{pid}\n")
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("spawned uWSGI master process (pid: {pid})")),
        "{text}"
    );
    assert!(!s
        .lines
        .all()
        .iter()
        .any(|l| l.contains("spawned uWSGI master")));
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("VACUUM: pidfile2 removed."), "{text}");
    assert!(text.trim_end().ends_with("goodbye to uWSGI."), "{text}");
    assert!(!s.dir.path("second.pid").exists());
}

#[test]
fn log_rotation_by_size() {
    let dir = TempDir::new();
    let log = dir.path("server.log");
    let mut s = start(&format!(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nlogger = file:{}\nlog-maxsize = 200\nlog-backupname = %dold.log\nprocesses = 1\nsocket-timeout = 1\n",
        log.display()
    ));
    let backup = s.dir.path("old.log");
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("logfile rotated to")
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&backup)
        .unwrap()
        .contains("spawned uWSGI master process"));
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}
