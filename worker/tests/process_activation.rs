//! systemd socket activation: a listening socket passed as fd 3 with `LISTEN_PID`/`LISTEN_FDS`.

mod process_support;

use process_support::*;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// Starts the probe through `sh -c 'LISTEN_PID=$$ exec probe ...'` (same pid after exec) with
/// `listener` as fd 3.
fn activated(ini: &str, listener: &std::net::TcpListener) -> Server {
    let fd = listener.as_raw_fd();
    let mut s = spawn_with(ini, |cmd| {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut sh = std::process::Command::new("/bin/sh");
        sh.arg("-c")
            .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"")
            .arg(program)
            .args(args);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            sh.current_dir(dir);
        }
        sh.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // SAFETY: dup2 is async-signal-safe; fd 3 is what systemd would pass.
        unsafe {
            sh.pre_exec(move || {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if fd == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        *cmd = sh;
    });
    s.wait_ready();
    s
}

#[test]
fn matching_socket_is_served_and_not_bound_again() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut s = activated(
        &format!("[uwsgi]\nhttp-socket = {addr}\nprocesses = 2\nsocket-timeout = 1\n"),
        &listener,
    );
    drop(listener);
    s.lines
        .wait_for("- SystemD socket activation detected -", WAIT);
    s.lines.wait_for(
        &format!("uwsgi socket 0 attached to INET address {addr} fd 3"),
        WAIT,
    );
    assert_eq!(
        s.lines.count(" bound to "),
        0,
        "{}",
        s.lines.all().join("\n")
    );
    assert_eq!(http_get(addr.port(), "/pid").unwrap().0, 200);
    s.wait_workers(2, WAIT);
    for _ in 0..4 {
        let (status, env) = http_get(addr.port(), "/env").unwrap();
        assert_eq!(status, 200);
        assert!(env.contains("PATH="), "{env}");
        assert!(!env.contains("LISTEN_"), "worker env: {env}");
        assert!(!env.contains("NOTIFY_SOCKET"), "worker env: {env}");
    }
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn unmatched_inherited_socket_is_attached_as_http() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut s = activated(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nsocket-timeout = 1\n",
        &listener,
    );
    drop(listener);
    s.lines
        .wait_for(&format!("attached to INET address {addr} fd 3"), WAIT);
    assert_eq!(http_get(addr.port(), "/pid").unwrap().0, 200);
    assert_eq!(s.get("/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn fd_and_shared_socket_forms_and_chdir2() {
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let passed_port = passed.local_addr().unwrap().port();
    let fd = passed.as_raw_fd();
    let mut s = spawn_with(
        "[uwsgi]\nhttp-socket = fd://7\nshared-socket = 127.0.0.1:0\nhttp-socket = =0\nchdir2 = /\nprocesses = 1\nsocket-timeout = 1\n",
        |cmd| {
            // SAFETY: dup2/fcntl are async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    if fd == 7 {
                        if libc::fcntl(7, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, 7) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    s.wait_ready();
    drop(passed);
    s.lines.wait_for(
        &format!("uwsgi socket 0 inherited INET address 127.0.0.1:{passed_port} fd 7"),
        WAIT,
    );
    assert_eq!(http_get(passed_port, "/pid").unwrap().0, 200);
    // The shared socket is bound with an auto-assigned port; the harness read it.
    assert_ne!(s.port, 0);
    let (status, cwd) = s.get("/cwd").unwrap();
    assert_eq!((status, cwd.as_str()), (200, "/"));
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}
