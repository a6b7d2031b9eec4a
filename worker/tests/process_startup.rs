//! Startup of the probe (master + workers): worker count, the dialect end to end, startup errors.

mod process_support;

use process_support::*;
use std::process::{Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// Runs the probe on an ini expected to fail at startup; returns (exit code, stderr).
fn failing(ini: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = TempDir::new();
    let path = write_ini(&dir, ini);
    let mut cmd = Command::new(PROBE);
    cmd.arg("--ini")
        .arg(&path)
        .current_dir(&dir.0)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn worker_count_placeholders_and_single_thread() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocs = 2\nprocesses = %(procs + 1)\nsocket-timeout = 1\n",
    );
    let spawned: Vec<i32> = (1..=3)
        .map(|n| {
            pid_in(
                &s.lines
                    .wait_for(&format!("spawned uWSGI worker {n} (pid: "), WAIT),
            )
        })
        .collect();
    let mut expected = spawned.clone();
    expected.sort();
    assert_eq!(s.wait_workers(3, WAIT), expected);
    assert_eq!(status_field(s.pid(), "Threads"), "1");
    let (status, body) = s.get("/pid").unwrap();
    assert_eq!(status, 200);
    assert!(spawned.contains(&body.parse().unwrap()));
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains("STATUS=ready: 3 of 3 workers accepting")));
    assert!(s
        .notes
        .iter()
        .any(|n| n.contains(&format!("MAINPID={}", s.pid()))));
    // `procs` is referenced, so no notice for it.
    assert_eq!(s.lines.count("option \"procs\""), 0);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn env_options_and_two_sockets() {
    let mut s = start_with(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nhttp-socket = 127.0.0.1:0\nsocket-timeout = 1\n",
        |cmd| {
            cmd.env("UWSGI_PROCESSES", "2");
        },
    );
    s.wait_workers(2, WAIT);
    let ports: Vec<u16> = s
        .lines
        .all()
        .iter()
        .filter(|l| l.contains("(port auto-assigned)"))
        .map(|l| {
            l.split(" address 127.0.0.1:")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(ports.len(), 2);
    for port in ports {
        assert_eq!(http_get(port, "/pid").unwrap().0, 200);
    }
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn startup_errors_exit_1_with_one_clear_line() {
    let cases: &[(&str, &str)] = &[
        (
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nspooler = /tmp\n",
            "option \"spooler\" is not supported by this server: ",
        ),
        (
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nstrict = true\nbogus = 1\n",
            "[strict-mode] unknown config directive: bogus",
        ),
        (
            "[uwsgi]\nhttp-socket = /tmp/x.sock\nchmod-socket = true\n",
            "invalid chmod value: true",
        ),
        (
            "[app:main]\nuse = egg:kinto\n",
            "*** WARNING: Can't find section \"uwsgi\" in INI configuration file ",
        ),
        (
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nharakiri = -3\n",
            "invalid value for option \"harakiri\": must be > 0",
        ),
        (
            "[uwsgi]\nsocket = 127.0.0.1:0\n",
            "option \"socket\" speaks the uwsgi protocol",
        ),
        (
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nlisten = 100000000\n",
            "Listen queue size is greater than the system max net.core.somaxconn",
        ),
        (
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nuid = no-such-user-here\n",
            "user no-such-user-here not found.",
        ),
    ];
    for (ini, expected) in cases {
        let (code, err) = failing(ini, &[]);
        assert_eq!(code, 1, "{ini}: {err}");
        assert!(
            err.contains(expected),
            "{ini}: expected {expected:?} in\n{err}"
        );
    }
    let out = Command::new(PROBE)
        .args(["--ini", "/nonexistent/dir/kinto.ini"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/kinto.ini: No such file")
    );
}

#[test]
fn address_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (code, err) = failing(&format!("[uwsgi]\nhttp-socket = {addr}\n"), &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "probably another instance of uWSGI is running on the same address ({addr})."
        )),
        "{err}"
    );
}

#[test]
fn kinto_production_section_loads_unchanged() {
    let section = "[uwsgi]\nwsgi-file = app.wsgi\nenable-threads = true\nhttp-socket = 127.0.0.1:0\nprocesses =  3\nmaster = true\nmodule = kinto\nharakiri = 120\nuid = kinto\ngid = kinto\nvirtualenv = .\nlazy = true\nlazy-apps = true\nsingle-interpreter = true\nbuffer-size = 65535\npost-buffering = 65535\n";
    let kinto_exists = nix_user_exists("kinto");
    if kinto_exists {
        let mut s = start(section);
        s.wait_workers(3, WAIT);
        for option in [
            "wsgi-file",
            "enable-threads",
            "module",
            "virtualenv",
            "single-interpreter",
        ] {
            assert_eq!(s.lines.count(&format!("notice: option \"{option}\"")), 1);
        }
        s.signal(libc::SIGINT);
        s.wait_exit(WAIT);
    } else {
        // Every option is accepted; the first error is the missing user.
        let (code, err) = failing(section, &[]);
        assert_eq!(code, 1);
        assert!(err.trim_end().ends_with("user kinto not found."), "{err}");
    }
}

fn nix_user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

#[test]
fn server_main_fallback_without_uwsgi_section() {
    // The lead's decision: [server:main] host/port, one worker per CPU.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut s = start(&format!(
        "[app:main]\nuse = egg:kinto\n\n[server:main]\nuse = egg:waitress#main\nhost = 127.0.0.1\nport = {port}\n"
    ));
    let cpus = std::thread::available_parallelism().unwrap().get();
    s.wait_workers(cpus, WAIT);
    s.lines
        .wait_for("serving [server:main] on 127.0.0.1:", WAIT);
    assert_eq!(http_get(port, "/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn wildcard_and_loopback_addresses() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = :0\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nsocket-timeout = 1\n",
    );
    let ports: Vec<u16> = s
        .lines
        .all()
        .iter()
        .filter(|l| l.contains("(port auto-assigned)"))
        .map(|l| {
            l.split(" address ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(ports.len(), 2);
    let (wildcard, loopback) = (ports[0], ports[1]);
    assert!(s.lines.all().iter().any(|l| l.contains(&format!(
        "bound to TCP address :{wildcard} (port auto-assigned)"
    ))));
    assert_eq!(http_get_at("127.0.0.1", wildcard).unwrap().0, 200);
    assert_eq!(http_get_at("127.0.0.2", wildcard).unwrap().0, 200);
    assert_eq!(http_get_at("127.0.0.1", loopback).unwrap().0, 200);
    assert!(std::net::TcpStream::connect(("127.0.0.2", loopback)).is_err());
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

fn http_get_at(host: &str, port: u16) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

#[test]
fn daemonize_refused_under_notify_and_detaches_otherwise() {
    let (code, err) = failing(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\ndaemonize = /tmp/never.log\n",
        &[("NOTIFY_SOCKET", "/tmp/probe-notify-unused.sock")],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("daemonize cannot be used under systemd Type=notify"),
        "{err}"
    );

    let dir = TempDir::new();
    let log = dir.path("daemon.log");
    let ini = write_ini(
        &dir,
        &format!(
            "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\ndaemonize = {}\npidfile = %ddaemon.pid\nsocket-timeout = 1\nlog-date = true\n",
            log.display()
        ),
    );
    let status = Command::new(PROBE)
        .arg("--ini")
        .arg(&ini)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the foreground process exits at once"
    );
    let deadline = std::time::Instant::now() + WAIT;
    let port: u16 = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("spawned uWSGI worker 1") {
            let line = text
                .lines()
                .find(|l| l.contains("(port auto-assigned)"))
                .unwrap();
            break line
                .split(" address 127.0.0.1:")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid: i32 = std::fs::read_to_string(dir.path("daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(http_get(port, "/pid").unwrap().0, 200);
    // log-date prefixes the master's lifecycle lines with the ctime form.
    let text = std::fs::read_to_string(&log).unwrap();
    let spawned = text
        .lines()
        .find(|l| l.contains("spawned uWSGI master process"))
        .unwrap();
    assert!(spawned.len() > 27 && &spawned[24..27] == " - ", "{spawned}");
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = std::time::Instant::now() + WAIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("goodbye to uWSGI."));
}

#[test]
fn non_root_cannot_switch_user() {
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ini = write_ini(&dir, "[uwsgi]\nhttp-socket = 127.0.0.1:0\nuid = root\n");
    let out = Command::new(PROBE)
        .arg("--ini")
        .arg(&ini)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot setuid() as non-root user"), "{err}");
}

fn cmdline(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

#[test]
fn process_titles_survive_a_reexec() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nprocname-prefix-spaced = kinto\nauto-procname = true\nsocket-timeout = 1\nworker-reload-mercy = 2\n",
    );
    assert_eq!(cmdline(s.pid()), "kinto uWSGI master");
    let worker = s.wait_workers(1, WAIT)[0];
    assert_eq!(cmdline(worker), "kinto uWSGI worker 1");
    let comm = std::fs::read_to_string(format!("/proc/{worker}/comm")).unwrap();
    assert_eq!(comm.trim_end(), "kinto uWSGI wor");
    // The re-exec uses the original arguments, not the title.
    s.signal(libc::SIGHUP);
    s.lines
        .wait_for("gracefully (RE)spawned uWSGI master process", WAIT);
    s.wait_notify_nth("READY=1", 2, WAIT);
    assert_eq!(cmdline(s.pid()), "kinto uWSGI master");
    assert_eq!(s.get("/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}
