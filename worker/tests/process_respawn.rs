//! Worker deaths: SIGKILL, harakiri, crashes, init failures and the fork-bomb guard.

mod process_support;

use process_support::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn sigkilled_worker_is_replaced_and_traffic_flows() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    let victim = pid_in(&s.lines.wait_for("spawned uWSGI worker 2 (pid: ", WAIT));
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let killed = Instant::now();
    s.lines.wait_for(
        &format!("DAMN ! worker 2 (pid: {victim}) died, killed by signal 9 :( trying respawn ..."),
        WAIT,
    );
    let new = pid_in(
        &s.lines
            .wait_for("Respawned uWSGI worker 2 (new pid: ", WAIT),
    );
    assert!(killed.elapsed() < Duration::from_secs(3));
    assert_ne!(new, victim);
    assert_eq!(parent_of(new), Some(s.pid()));
    for _ in 0..10 {
        assert_eq!(s.get("/pid").unwrap().0, 200);
    }
    // A worker exiting with a code is reported without a signal.
    let (status, _) = s.get("/exit?code=3").unwrap_or((0, String::new()));
    assert_eq!(status, 0, "no response from an exiting worker");
    s.lines.wait_for(") died :( trying respawn ...", WAIT);
    s.wait_workers(2, WAIT);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn harakiri_kills_the_stuck_worker_while_others_serve() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nharakiri = 2\nharakiri-verbose = true\nsocket-timeout = 1\n",
    );
    let port = s.port;
    let sent = Instant::now();
    let stuck = std::thread::spawn(move || {
        let r = http_get(port, "/sleep?ms=10000");
        (r, sent.elapsed())
    });
    // While one worker is stuck, the other serves.
    let line = s.lines.wait_for("*** HARAKIRI ON WORKER ", WAIT);
    let served = s.get("/pid").unwrap();
    assert_eq!(served.0, 200);
    let (result, elapsed) = stuck.join().unwrap();
    assert!(result.is_err(), "the client gets no response: {result:?}");
    assert!(
        elapsed >= Duration::from_millis(2000) && elapsed <= Duration::from_millis(3500),
        "harakiri after {elapsed:?}"
    );
    let n: usize = line
        .split("WORKER ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let pid = pid_in(&line);
    assert!(line.ends_with(&format!(
        "*** HARAKIRI ON WORKER {n} (pid: {pid}, try: 1, graceful: no) ***"
    )));
    let expected = [
        format!("HARAKIRI ON WORKER {n} (pid: {pid}"),
        "HARAKIRI: -- syscall> ".to_string(),
        "HARAKIRI: -- wchan> ".to_string(),
        format!("HARAKIRI !!! worker {n} status !!!"),
        "HARAKIRI [core 0] 127.0.0.1 - GET /sleep?ms=10000 since ".to_string(),
        format!("HARAKIRI !!! end of worker {n} status !!!"),
        format!("HARAKIRI triggered by worker {n} core 0 !!!"),
        format!("DAMN ! worker {n} (pid: {pid}) died, killed by signal 9 :( trying respawn ..."),
        format!("Respawned uWSGI worker {n} (new pid: "),
    ];
    s.lines.wait_for(&expected[8], WAIT);
    let all = s.lines.all();
    let mut at = 0;
    for want in &expected {
        let pos = all[at..]
            .iter()
            .position(|l| l.contains(want.as_str()))
            .unwrap_or_else(|| panic!("{want:?} missing or out of order:\n{}", all.join("\n")));
        at += pos + 1;
    }
    let replacement = pid_in(
        &s.lines
            .wait_for(&format!("Respawned uWSGI worker {n}"), WAIT),
    );
    assert_eq!(parent_of(replacement), Some(s.pid()));
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn requests_shorter_than_harakiri_are_never_killed() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nharakiri = 2\nsocket-timeout = 1\n",
    );
    for _ in 0..3 {
        assert_eq!(s.get("/sleep?ms=1500").unwrap().0, 200);
    }
    assert_eq!(s.lines.count("HARAKIRI"), 0);
    s.signal(libc::SIGTERM);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn init_failure_with_need_app_stops_the_service_with_22() {
    let mut s = spawn_with(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nneed-app = true\n",
        |cmd| {
            cmd.env("PROBE_INIT_FAIL", "1");
        },
    );
    let status = s.wait_exit(WAIT);
    assert_eq!(status.code(), Some(22));
    s.lines
        .wait_for("OOPS ! failed loading app in worker ", WAIT);
    s.lines
        .wait_for("need-app requested, destroying the instance...", WAIT);
}

#[test]
fn init_failure_without_need_app_is_retried() {
    let mut s = spawn_with(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\n",
        |cmd| {
            cmd.env("PROBE_INIT_FAIL", "1");
        },
    );
    s.lines.wait_for_nth(":( trying again...", 2, WAIT);
    assert_eq!(
        s.child.try_wait().unwrap(),
        None,
        "the master keeps running"
    );
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn fork_bomb_guard_does_not_block_the_master() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nforkbomb-delay = 4\nsocket-timeout = 1\n");
    // Kill the worker as soon as each replacement appears.
    let mut killed = 0;
    let deadline = Instant::now() + WAIT;
    while s.lines.count("worker respawning too fast") == 0 {
        assert!(Instant::now() < deadline, "{}", s.lines.all().join("\n"));
        if let Some(&w) = s.workers().first() {
            unsafe { libc::kill(w, libc::SIGKILL) };
            killed += 1;
            s.lines
                .wait_for_nth("died, killed by signal 9", killed, WAIT);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    s.lines.wait_for(
        "worker respawning too fast !!! i have to sleep a bit (4 seconds)...",
        WAIT,
    );
    // The master is not asleep: a SIGINT during the delay ends it at once.
    let t = Instant::now();
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn graceful_harakiri_signal_gets_504_then_exit() {
    // The worker answers the graceful signal (here SIGUSR1) with a 504 to the stuck client and
    // exits 30 (3.6 item 4), so no second harakiri (SIGKILL) is needed.
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nharakiri = 2\nharakiri-graceful-timeout = 1\nharakiri-graceful-signal = 10\nsocket-timeout = 1\n",
    );
    let pid = s.workers()[0];
    let port = s.port;
    let sent = Instant::now();
    let stuck = std::thread::spawn(move || (http_get(port, "/sleep?ms=8000"), sent.elapsed()));
    s.lines.wait_for(
        &format!("*** HARAKIRI ON WORKER 1 (pid: {pid}, try: 1, graceful: yes) ***"),
        WAIT,
    );
    s.lines.wait_for(
        "HARAKIRI: graceful termination attempt on worker 1 with signal 10. Next harakiri: ",
        WAIT,
    );
    s.lines.wait_for(
        &format!("DAMN ! worker 1 (pid: {pid}) died :( trying respawn ..."),
        WAIT,
    );
    let (result, elapsed) = stuck.join().unwrap();
    assert_eq!(result.unwrap().0, 504);
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(4000),
        "{elapsed:?}"
    );
    s.lines.wait_for("Respawned uWSGI worker 1", WAIT);
    assert_eq!(s.lines.count("try: 2"), 0);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn max_requests_recycles_without_fork_bomb_guard() {
    let mut s = start(
        "[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 1\nmax-requests = 2\nmin-worker-lifetime = 0\nsocket-timeout = 1\n",
    );
    let mut pids = Vec::new();
    for _ in 0..6 {
        let (status, body) = s.get("/pid").unwrap();
        assert_eq!(status, 200);
        pids.push(body.parse::<i32>().unwrap());
    }
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
    assert_eq!(pids[2], pids[3]);
    assert_ne!(pids[3], pids[4]);
    s.lines.wait_for(
        &format!("...The work of process {} is done. Seeya!", pids[0]),
        WAIT,
    );
    s.lines.wait_for(
        &format!("worker 1 killed successfully (pid: {})", pids[0]),
        WAIT,
    );
    assert_eq!(s.lines.count("respawning too fast"), 0);
    assert_eq!(s.lines.count("DAMN"), 0);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn signals_sent_to_one_worker() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    let workers = s.wait_workers(2, WAIT);
    unsafe { libc::kill(workers[0], libc::SIGHUP) };
    s.lines
        .wait_for(&format!("killed successfully (pid: {})", workers[0]), WAIT);
    s.lines.wait_for("Respawned uWSGI worker", WAIT);
    let after = s.wait_workers(2, WAIT);
    assert!(after.contains(&workers[1]), "only that worker is replaced");
    assert!(!after.contains(&workers[0]));
    unsafe { libc::kill(workers[1], libc::SIGTERM) };
    s.lines.wait_for("DAMN ! worker", WAIT);
    s.lines.wait_for_nth("Respawned uWSGI worker", 2, WAIT);
    assert_eq!(s.get("/pid").unwrap().0, 200);
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}

#[test]
fn workers_leave_when_the_master_is_killed() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    let workers = s.wait_workers(2, WAIT);
    s.signal(libc::SIGKILL);
    s.wait_exit(WAIT);
    let deadline = Instant::now() + Duration::from_secs(5);
    for w in &workers {
        while std::path::Path::new(&format!("/proc/{w}/stat")).exists() && parent_of(*w).is_some() {
            assert!(Instant::now() < deadline, "worker {w} outlived the master");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    s.lines.wait_for_nth(
        "error: the master disconnected from this worker. Shutting down the worker.",
        2,
        WAIT,
    );
}

#[test]
fn respawns_leak_no_descriptor_in_the_master() {
    let mut s = start("[uwsgi]\nhttp-socket = 127.0.0.1:0\nprocesses = 2\nsocket-timeout = 1\n");
    let fds = |pid: i32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds(s.pid());
    for round in 1..=6 {
        let victim = s.wait_workers(2, WAIT)[0];
        unsafe { libc::kill(victim, libc::SIGKILL) };
        s.lines.wait_for_nth("Respawned uWSGI worker", round, WAIT);
    }
    s.wait_workers(2, WAIT);
    assert_eq!(fds(s.pid()), before);
    assert_eq!(status_field(s.pid(), "Threads"), "1");
    s.signal(libc::SIGINT);
    assert_eq!(s.wait_exit(WAIT).code(), Some(0));
}
