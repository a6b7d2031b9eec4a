//! Signals to the master: reloads (lazy rolling, re-exec, invalid config), graceful and brutal
//! shutdown, mercy, worker count changes, status lines.

mod process_support;

use process_support::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// Requests `/pid` in a loop until stopped; returns every outcome.
fn steady_traffic(
    port: u16,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Result<u16, String>>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            out.push(
                http_get(port, "/pid")
                    .map(|r| r.0)
                    .map_err(|e| e.to_string()),
            );
        }
        out
    })
}

#[test]
fn lazy_reload_replaces_every_worker_without_failed_requests() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nlazy = true\nsocket-timeout = 1\nworker-reload-mercy = 2\n\n[probe]\ngreeting = before\n",
    );
    let before = s.wait_workers(2, WAIT);
    assert_eq!(s.get("/greeting").unwrap().1, "before");
    let ini = s.dir.path("probe.ini");
    let text = std::fs::read_to_string(&ini)
        .unwrap()
        .replace("before", "after");
    std::fs::write(&ini, text).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = steady_traffic(s.port, stop.clone());
    let port = s.port;
    let in_flight = std::thread::spawn(move || http_get(port, "/sleep?ms=1500"));
    // Let the long request reach a worker before the reload.
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGHUP);
    let reloading = s.wait_notify("RELOADING=1", WAIT);
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    s.wait_notify_nth("READY=1", 2, WAIT);
    for n in 1..=2 {
        s.lines
            .wait_for(&format!("worker {n} killed successfully (pid: "), WAIT);
    }
    assert_eq!(
        in_flight.join().unwrap().unwrap().0,
        200,
        "the in-flight request completes"
    );
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let outcomes = traffic.join().unwrap();
    assert!(outcomes.len() > 5);
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
    let after = s.wait_workers(2, WAIT);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert_eq!(s.lines.count("Gracefully killing worker"), 2);
    assert_eq!(s.get("/greeting").unwrap().1, "after");
    assert_eq!(status_field(s.pid(), "Threads"), "1");
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn reload_with_an_invalid_config_keeps_the_workers() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nlazy = true\nsocket-timeout = 1\n",
    );
    let before = s.wait_workers(2, WAIT);
    let ini = s.dir.path("probe.ini");
    let mut text = std::fs::read_to_string(&ini).unwrap();
    text.push_str("spooler = /tmp\n");
    std::fs::write(&ini, text).unwrap();
    s.signal(libc::SIGHUP);
    let failed = s.wait_notify("STATUS=reload failed: ", WAIT);
    assert!(failed.contains("spooler"), "{failed}");
    s.wait_notify_nth("READY=1", 2, WAIT);
    s.lines
        .wait_for("option \"spooler\" is not supported by this server", WAIT);
    assert_eq!(s.workers(), before);
    assert_eq!(s.get("/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn reload_without_lazy_reexecutes_the_master() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\nworker-reload-mercy = 2\npidfile = %dmaster.pid\n");
    // The pidfile is not rewritten by the new image.
    let pidfile = s.dir.path("master.pid");
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", s.pid())
    );
    std::fs::write(&pidfile, "marker\n").unwrap();
    let before = s.wait_workers(2, WAIT);
    let port = s.port;
    let in_flight = std::thread::spawn(move || http_get(port, "/sleep?ms=1000"));
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGHUP);
    s.lines.wait_for("...gracefully killing workers...", WAIT);
    s.lines.wait_for("binary reloading uWSGI...", WAIT);
    s.lines.wait_for(
        &format!(
            "gracefully (RE)spawned uWSGI master process (pid: {})",
            s.pid()
        ),
        WAIT,
    );
    s.lines
        .wait_for("uwsgi socket 0 inherited INET address 127.0.0.1:", WAIT);
    s.wait_notify_nth("READY=1", 2, WAIT);
    assert_eq!(in_flight.join().unwrap().unwrap().0, 200);
    let after = s.wait_workers(2, WAIT);
    assert!(after.iter().all(|p| !before.contains(p)));
    assert_eq!(s.get("/pid").unwrap().0, 200);
    assert_eq!(status_field(s.pid(), "Threads"), "1");
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "marker\n");
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn sigterm_finishes_the_in_flight_request_then_exits_0() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\ndie-on-term = true\n");
    let workers = s.wait_workers(2, WAIT);
    let port = s.port;
    let in_flight = std::thread::spawn(move || http_get(port, "/sleep?ms=2000"));
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    s.wait_notify("STOPPING=1", WAIT);
    s.lines.wait_for("graceful shutdown triggered...", WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(
        refused.is_err(),
        "new connections are refused during a graceful shutdown"
    );
    assert_eq!(in_flight.join().unwrap().unwrap().0, 200);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    s.lines.wait_for("goodbye to uWSGI.", WAIT);
    assert!(
        workers.iter().all(|w| parent_of(*w).is_none()),
        "no process remains"
    );
}

#[test]
fn sigint_is_a_brutal_stop() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    let workers = s.wait_workers(2, WAIT);
    let port = s.port;
    let in_flight = std::thread::spawn(move || http_get(port, "/sleep?ms=5000"));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        in_flight.join().unwrap().is_err(),
        "the in-flight request is dropped"
    );
    s.lines
        .wait_for("SIGINT/SIGTERM received...killing workers...", WAIT);
    assert_eq!(s.lines.count(" buried after "), 2);
    s.lines.wait_for("goodbye to uWSGI.", WAIT);
    s.wait_notify("STOPPING=1", WAIT);
    assert!(workers.iter().all(|w| parent_of(*w).is_none()));
}

#[test]
fn sigint_right_after_start_leaves_nothing() {
    let mut s = spawn_with(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\n",
        |_| {},
    );
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(s.workers().is_empty());
}

#[test]
fn mercy_kills_a_worker_slow_to_stop() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nlazy = true\nharakiri = 30\nworker-reload-mercy = 2\nsocket-timeout = 1\n",
    );
    let port = s.port;
    let in_flight = std::thread::spawn(move || http_get(port, "/sleep?ms=8000"));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.signal(libc::SIGHUP);
    s.lines
        .wait_for("is taking too much time to die...NO MERCY !!!", WAIT);
    let elapsed = t.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(3500),
        "{elapsed:?}"
    );
    assert!(in_flight.join().unwrap().is_err());
    s.lines.wait_for("Respawned uWSGI worker 1", WAIT);
    assert_eq!(s.get("/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn ttin_ttou_usr1_usr2_keep_the_master_running() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    s.wait_workers(2, WAIT);
    s.signal(libc::SIGTTIN);
    s.lines.wait_for("spawned uWSGI worker 3 (pid: ", WAIT);
    s.wait_workers(3, WAIT);
    s.signal(libc::SIGTTOU);
    s.lines.wait_for("worker 3 killed successfully", WAIT);
    s.wait_workers(2, WAIT);
    assert_eq!(s.get("/pid").unwrap().0, 200);
    s.signal(libc::SIGUSR1);
    s.lines.wait_for("\tworkers total requests: 1", WAIT);
    s.lines.wait_for("\tworker 2 app 0 [] requests: ", WAIT);
    let port = s.port;
    let busy = std::thread::spawn(move || http_get(port, "/sleep?ms=1500"));
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGUSR2);
    s.lines
        .wait_for("is managing request /sleep?ms=1500 since ", WAIT);
    s.lines.wait_for(") is idle ---", WAIT);
    assert_eq!(busy.join().unwrap().unwrap().0, 200);
    let state = std::fs::read_to_string(format!("/proc/{}/stat", s.pid())).unwrap();
    assert!(!state.contains(") T "), "master not stopped: {state}");
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn touch_reload_triggers_a_reload() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nlazy = true\ntouch-reload = %dtouch.txt\nsocket-timeout = 1\n");
    let before = s.wait_workers(1, WAIT);
    let touch = s.dir.path("touch.txt");
    std::fs::write(&touch, "x").unwrap();
    s.lines
        .wait_for("touch.txt has been touched... grace them all !!! ***", WAIT);
    s.wait_notify_nth("READY=1", 2, WAIT);
    let after = s.wait_workers(1, WAIT);
    assert_ne!(before, after);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn sigtstp_pauses_and_resumes_the_workers() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    s.signal(libc::SIGTSTP);
    s.lines.wait_for("*** PAUSE (press start to resume", WAIT);
    s.lines.wait_for("*** worker 1 suspended ***", WAIT);
    s.lines.wait_for("*** worker 2 suspended ***", WAIT);
    let port = s.port;
    // Timed from before the spawn: the thread may start late on a loaded machine.
    let t = Instant::now();
    let waiting = std::thread::spawn(move || (http_get(port, "/pid"), t.elapsed()));
    std::thread::sleep(Duration::from_millis(700));
    assert!(!waiting.is_finished(), "a paused service does not answer");
    s.signal(libc::SIGTSTP);
    s.lines
        .wait_for("*** (SIGTSTP received) resuming workers ***", WAIT);
    let (result, elapsed) = waiting.join().unwrap();
    assert_eq!(result.unwrap().0, 200);
    assert!(elapsed >= Duration::from_millis(700));
    let state = std::fs::read_to_string(format!("/proc/{}/stat", s.pid())).unwrap();
    assert!(!state.contains(") T "), "{state}");
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn sigint_right_after_sighup_ends_the_service() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nlazy = true\nsocket-timeout = 1\n",
    );
    s.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(10));
    let t = Instant::now();
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(s.workers().is_empty());
}

#[test]
fn stop_and_reload_through_the_pidfile() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nlazy = true\npidfile = %d%n.pid\nsocket-timeout = 1\n");
    let pidfile = s.dir.path("probe.pid");
    master::signal_pidfile(&pidfile, true).unwrap();
    s.wait_notify("RELOADING=1", WAIT);
    s.wait_notify_nth("READY=1", 2, WAIT);
    master::signal_pidfile(&pidfile, false).unwrap();
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    assert!(master::signal_pidfile(&s.dir.path("nope.pid"), false).is_err());
}

fn fifo_command(s: &Server, command: &str) {
    use std::io::Write;
    let mut fifo = std::fs::OpenOptions::new()
        .write(true)
        .open(s.dir.path("master.fifo"))
        .unwrap();
    fifo.write_all(command.as_bytes()).unwrap();
}

#[test]
fn master_fifo_chain_workers_and_brutal_reloads() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nlazy = true\nmaster-fifo = %dmaster.fifo\nsocket-timeout = 1\nworker-reload-mercy = 2\n",
    );
    let before = s.wait_workers(2, WAIT);
    fifo_command(&s, "c");
    s.lines.wait_for("chain next victim is worker 1", WAIT);
    s.lines.wait_for("chain next victim is worker 2", WAIT);
    s.lines.wait_for("chain reloading complete", WAIT);
    s.wait_notify_nth("READY=1", 2, WAIT);
    let all = s.lines.all();
    let pos = |needle: &str| all.iter().position(|l| l.contains(needle)).unwrap();
    // Slot 2 is only touched once slot 1 runs its new worker.
    assert!(pos("Respawned uWSGI worker 1") < pos("chain next victim is worker 2"));
    let chained = s.wait_workers(2, WAIT);
    assert!(chained.iter().all(|p| !before.contains(p)));

    fifo_command(&s, "w");
    s.wait_notify_nth("READY=1", 3, WAIT);
    s.lines
        .wait_for_nth("worker 2 killed successfully", 2, WAIT);
    let reloaded = s.wait_workers(2, WAIT);
    assert!(reloaded.iter().all(|p| !chained.contains(p)));

    fifo_command(&s, "R");
    s.lines.wait_for("...brutally killing workers...", WAIT);
    s.lines.wait_for(
        &format!(
            "gracefully (RE)spawned uWSGI master process (pid: {})",
            s.pid()
        ),
        WAIT,
    );
    s.wait_notify_nth("READY=1", 4, WAIT);
    assert_eq!(s.get("/pid").unwrap().0, 200);

    fifo_command(&s, "q");
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    s.lines.wait_for("graceful shutdown triggered...", WAIT);
}

#[test]
fn sigterm_during_a_reexec_is_not_lost() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nsocket-timeout = 1\nworker-reload-mercy = 2\n");
    s.signal(libc::SIGHUP);
    s.lines.wait_for("binary reloading uWSGI...", WAIT);
    s.signal(libc::SIGTERM);
    let status = s.wait_exit(WAIT);
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}\n{}",
        s.lines.all().join("\n")
    );
    assert!(s.workers().is_empty());
}

#[test]
fn second_stop_signal_turns_a_graceful_shutdown_brutal() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nsocket-timeout = 1\n");
    let port = s.port;
    let in_flight = std::thread::spawn(move || http_get(port, "/sleep?ms=6000"));
    std::thread::sleep(Duration::from_millis(300));
    s.signal(libc::SIGTERM);
    s.lines.wait_for("graceful shutdown triggered...", WAIT);
    let t = Instant::now();
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        in_flight.join().unwrap().is_err(),
        "the in-flight request is dropped"
    );
    s.lines
        .wait_for("SIGINT/SIGTERM received...killing workers...", WAIT);
}

#[test]
fn sigquit_is_a_brutal_stop_even_with_die_on_term() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\ndie-on-term = true\nsocket-timeout = 1\n");
    let t = Instant::now();
    s.signal(libc::SIGQUIT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    s.lines
        .wait_for("SIGINT/SIGTERM received...killing workers...", WAIT);
    assert_eq!(s.lines.count(" buried after "), 2);
    assert!(s.workers().is_empty());
}

#[test]
fn exit_on_reload_exits_instead_of_reexecuting() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nexit-on-reload = true\nsocket-timeout = 1\n");
    s.signal(libc::SIGHUP);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    s.lines.wait_for("goodbye to uWSGI.", WAIT);
    assert_eq!(s.lines.count("binary reloading uWSGI"), 0);
}

#[test]
fn a_storm_of_reloads_settles_with_every_slot_served() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nlazy = true\nsocket-timeout = 1\nworker-reload-mercy = 2\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = steady_traffic(s.port, stop.clone());
    for _ in 0..5 {
        s.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(30));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        s.collect_notes(Duration::from_millis(100));
        let last_ready = s.notes.iter().rposition(|n| n.contains("READY=1"));
        let last_reload = s.notes.iter().rposition(|n| n.contains("RELOADING=1"));
        if last_ready > last_reload && s.workers().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", s.notes);
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes = traffic.join().unwrap();
    assert!(outcomes.iter().all(|o| *o == Ok(200)), "{outcomes:?}");
    assert_eq!(s.get("/pid").unwrap().0, 200);
    assert_eq!(status_field(s.pid(), "Threads"), "1");
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}
