//! systemd notifications: readiness timing, reload and stop framing, watchdog pings.

mod process_support;

use process_support::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn ready_means_answering_and_stop_is_announced() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    let t = Instant::now();
    assert_eq!(s.get("/pid").unwrap().0, 200);
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(s.notes[0], "STATUS=initializing\n");
    s.signal(libc::SIGINT);
    s.wait_notify("STOPPING=1", WAIT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn watchdog_pings_from_the_master_loop() {
    let mut s = start_with(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nsocket-timeout = 1\n",
        |cmd| {
            cmd.env("WATCHDOG_USEC", "1000000");
        },
    );
    let first = Instant::now();
    s.wait_notify_nth("WATCHDOG=1", 1, WAIT);
    s.wait_notify_nth("WATCHDOG=1", 4, WAIT);
    // Four pings at most 0.5 s apart (plus loop jitter) within about 2 s.
    assert!(
        first.elapsed() < Duration::from_millis(3000),
        "{:?}",
        first.elapsed()
    );
    let (_, env) = s.get("/env").unwrap();
    assert!(
        !env.contains("WATCHDOG_"),
        "workers do not see the watchdog: {env}"
    );
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn max_worker_lifetime_recycles_gracefully() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nmax-worker-lifetime = 1\nsocket-timeout = 1\n",
    );
    let first = pid_in(&s.lines.wait_for("spawned uWSGI worker 1 (pid: ", WAIT));
    s.lines.wait_for(
        "worker 1 lifetime reached, it was running for 1 second(s)",
        WAIT,
    );
    s.lines.wait_for(
        &format!("worker 1 killed successfully (pid: {first})"),
        WAIT,
    );
    let second = pid_in(
        &s.lines
            .wait_for("Respawned uWSGI worker 1 (new pid: ", WAIT),
    );
    assert_ne!(first, second);
    assert_eq!(s.lines.count("DAMN"), 0);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

fn stats_document(port: u16) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn stats_server_document() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stats_port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut s = start(&format!(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nstats = 127.0.0.1:{stats_port}\nstats-minified = true\nsocket-timeout = 1\n"
    ));
    s.lines.wait_for(
        &format!("*** Stats server enabled on 127.0.0.1:{stats_port} fd: "),
        WAIT,
    );
    let doc = stats_document(stats_port);
    for key in [
        "\"version\":",
        "\"listen_queue\":",
        "\"load\":",
        "\"sockets\":[{\"name\":\"127.0.0.1:0\",\"proto\":\"http\"",
        "\"workers\":[{\"id\":1,",
        "\"respawn_count\":1,",
        "\"status\":\"idle\"",
        "\"cores\":[{\"id\":0,",
    ] {
        assert!(doc.contains(key), "{key} missing in {doc}");
    }
    assert!(doc.contains(&format!("\"pid\":{},", s.pid())));
    let port = s.port;
    let busy = std::thread::spawn(move || http_get(port, "/sleep?ms=1500"));
    let deadline = Instant::now() + WAIT;
    loop {
        let doc = stats_document(stats_port);
        if doc.contains("\"status\":\"busy\"") {
            assert!(doc.contains("\"in_request\":1"), "{doc}");
            assert!(doc.contains("\"REQUEST_URI=/sleep?ms=1500\""), "{doc}");
            break;
        }
        assert!(Instant::now() < deadline, "never busy: {doc}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(busy.join().unwrap().unwrap().0, 200);
    // The 1.5 s request counts in running_time (microseconds).
    let doc = stats_document(stats_port);
    let running: u64 = doc
        .split("\"running_time\":")
        .skip(1)
        .map(|rest| rest.split(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(running >= 1_400_000, "{doc}");
    let victim = s.workers()[0];
    unsafe { libc::kill(victim, libc::SIGKILL) };
    s.lines.wait_for("Respawned uWSGI worker", WAIT);
    assert!(stats_document(stats_port).contains("\"respawn_count\":2,"));
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}
