//! How a worker stops (3.7, 3.8, 3.12, 3.13): master death, recycling, and the worker signals, the
//! latter in a forked process since they change process-wide signal dispositions.

mod http_harness;

use http_harness::{
    only_reply, read_reply, read_to_close, LogLines, Probe, RecordingSlot, TestServer, WAIT,
};
use master::ListenSocket;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use worker::{HttpConfig, HttpListener, Log, WorkerSetup, WorkerSignals};

/// One test at a time: several of them fork, and a child forked while another test runs would
/// hold that test's descriptors (closed below, but only once the child runs) and whatever lock
/// another thread held at the fork.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn master_death_finishes_the_request_then_exits_30() {
    let _serial = serial();
    let server = TestServer::start(HttpConfig::default(), true);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /sleep?ms=600 HTTP/1.1\r\n\r\n")
        .unwrap();
    // Wait until the handler runs, then let the master "die".
    let deadline = Instant::now() + WAIT;
    while server.request_events().is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let log = server.log.clone();
    let code = server.stop();
    assert_eq!(code, 30);
    let reply = only_reply(&read_to_close(&mut stream));
    assert_eq!(reply.body, b"slept\n");
    let line = log.wait_for("the master disconnected from this worker");
    assert!(
        line.ends_with(" - uWSGI worker 1 error: the master disconnected from this worker. Shutting down the worker."),
        "{line}"
    );
}

#[test]
fn max_requests_recycles_after_the_last_response() {
    let _serial = serial();
    let config = HttpConfig {
        max_requests: 2,
        min_worker_lifetime: Duration::ZERO,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, true);
    let mut stream = server.connect();
    let mut buffer = Vec::new();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(
        read_reply(&mut stream, &mut buffer, false).header("Connection"),
        None
    );
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    // The last request before recycling closes its connection.
    let reply = read_reply(&mut stream, &mut buffer, false);
    assert_eq!(reply.header("Connection"), Some("close"));
    let log = server.log.clone();
    let slot = server.slot.clone();
    assert_eq!(server.wait_exit(), 17);
    assert_eq!(
        slot.events.lock().unwrap().last(),
        Some(&http_harness::SlotEvent::Stopping)
    );
    log.wait_for(&format!(
        "...The work of process {} is done. Seeya!",
        std::process::id()
    ));
}

#[test]
fn recycling_waits_for_min_worker_lifetime() {
    let _serial = serial();
    let config = HttpConfig {
        max_requests: 2,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    for _ in 0..5 {
        assert_eq!(
            only_reply(&server.exchange(b"GET / HTTP/1.1\r\n\r\n")).status,
            200
        );
    }
    assert_eq!(server.log.count("Seeya"), 0);
}

#[test]
fn reload_on_rss_recycles() {
    let _serial = serial();
    let config = HttpConfig {
        reload_on_rss: 1,
        min_worker_lifetime: Duration::ZERO,
        ..HttpConfig::default()
    };
    let server = TestServer::start(config, false);
    assert_eq!(
        only_reply(&server.exchange(b"GET / HTTP/1.1\r\n\r\n")).status,
        200
    );
    assert_eq!(server.wait_exit(), 17);
}

/// A worker loop with its signal handlers, in a forked child.
struct Forked {
    pid: Pid,
    port: u16,
    log: LogLines,
    _alive: OwnedFd,
}

impl Forked {
    fn start(keep_alive: bool) -> Forked {
        Forked::start_with(keep_alive, None)
    }

    /// `graceful_harakiri`: the `harakiri-graceful-signal` in force.
    fn start_with(keep_alive: bool, graceful_harakiri: Option<i32>) -> Forked {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (alive_read, alive_write) = nix::unistd::pipe().unwrap();
        let (log_read, log_write) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only runs the worker loop and leaves with _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(log_read);
                drop(alive_write);
                // The other tests of this binary run in threads of the parent: the child must not
                // keep their pipes and sockets open (a liveness pipe that never reports the
                // master's death, a connection that never ends).
                let keep = [
                    listener.as_raw_fd(),
                    alive_read.as_raw_fd(),
                    log_write.as_raw_fd(),
                ];
                for fd in 3..1024 {
                    if !keep.contains(&fd) {
                        // SAFETY: closing descriptors this single-threaded child does not use.
                        unsafe { libc::close(fd) };
                    }
                }
                let code = match WorkerSignals::install(graceful_harakiri) {
                    Ok(signals) => {
                        let setup = WorkerSetup {
                            id: 1,
                            listeners: vec![HttpListener {
                                socket: ListenSocket::Tcp(listener),
                                keep_alive,
                            }],
                            config: HttpConfig {
                                harakiri: u64::from(graceful_harakiri.is_some()) * 30,
                                harakiri_graceful_signal: graceful_harakiri,
                                ..HttpConfig::default()
                            },
                            master_alive: Some(alive_read),
                            log: Log::to_fd(log_write),
                        };
                        worker::run(setup, &RecordingSlot::default(), Probe, Some(signals))
                    }
                    Err(_) => 99,
                };
                // SAFETY: leave without running the test harness's exit path.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(log_write);
                drop(alive_read);
                Forked {
                    pid: child,
                    port,
                    log: LogLines::from_fd(log_read),
                    _alive: alive_write,
                }
            }
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    }

    /// Serves one request, which proves the handlers are installed and the loop runs.
    fn ready(&self) {
        let mut stream = self.connect();
        stream
            .write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        assert_eq!(only_reply(&read_to_close(&mut stream)).status, 200);
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid, signal).unwrap();
    }

    fn wait(&self) -> WaitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = waitpid(self.pid, Some(WaitPidFlag::WNOHANG)).unwrap();
            if status != WaitStatus::StillAlive {
                return status;
            }
            if Instant::now() > deadline {
                let _ = kill(self.pid, Signal::SIGKILL);
                panic!("worker {} did not exit", self.pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn sighup_when_idle_exits_17() {
    let _serial = serial();
    let worker = Forked::start(false);
    worker.ready();
    worker.signal(Signal::SIGHUP);
    assert_eq!(worker.wait(), WaitStatus::Exited(worker.pid, 17));
    worker.log.wait_for(&format!(
        "Gracefully killing worker 1 (pid: {})...",
        worker.pid
    ));
}

#[test]
fn sighup_finishes_the_request_in_flight_with_connection_close() {
    let _serial = serial();
    let worker = Forked::start(true);
    worker.ready();
    let mut stream = worker.connect();
    stream
        .write_all(b"GET /sleep?ms=700 HTTP/1.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    worker.signal(Signal::SIGHUP);
    let reply = only_reply(&read_to_close(&mut stream));
    assert_eq!(reply.body, b"slept\n");
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(worker.wait(), WaitStatus::Exited(worker.pid, 17));
}

#[test]
fn sigterm_exits_30_at_once() {
    let _serial = serial();
    let worker = Forked::start(false);
    worker.ready();
    let mut stream = worker.connect();
    stream
        .write_all(b"GET /sleep?ms=5000 HTTP/1.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.wait(), WaitStatus::Exited(worker.pid, 30));
    assert!(sent.elapsed() < Duration::from_secs(3));
    assert!(
        read_to_close(&mut stream).is_empty(),
        "the request in flight is dropped"
    );
}

#[test]
fn sigint_exits_30() {
    let _serial = serial();
    let worker = Forked::start(false);
    worker.ready();
    worker.signal(Signal::SIGINT);
    assert_eq!(worker.wait(), WaitStatus::Exited(worker.pid, 30));
}

#[test]
fn sigusr1_sigusr2_and_sigtstp() {
    let _serial = serial();
    let worker = Forked::start(false);
    worker.ready();
    worker.signal(Signal::SIGUSR1);
    worker.log.wait_for("worker 1 total requests: 1");
    worker.log.wait_for("\tapp 0 [] requests: 1 exceptions: 0");
    worker.log.wait_for("-----------------");
    worker.signal(Signal::SIGUSR2);
    worker.log.wait_for(&format!(
        "SIGUSR2: --- uWSGI worker 1 (pid: {}) is idle ---",
        worker.pid
    ));
    // Paused: a new connection waits until the next SIGTSTP.
    worker.signal(Signal::SIGTSTP);
    worker.log.wait_for("*** worker 1 suspended ***");
    let mut stream = worker.connect();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let mut byte = [0u8; 1];
    let waiting = std::io::Read::read(&mut stream, &mut byte);
    assert!(waiting.is_err(), "served while paused: {waiting:?}");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    worker.signal(Signal::SIGTSTP);
    worker.log.wait_for("*** worker 1 resumed ***");
    assert_eq!(only_reply(&read_to_close(&mut stream)).status, 200);
    worker.signal(Signal::SIGHUP);
    assert_eq!(worker.wait(), WaitStatus::Exited(worker.pid, 17));
}

#[test]
fn graceful_harakiri_signal_answers_504_then_exits_30() {
    let _serial = serial();
    let worker = Forked::start_with(true, Some(libc::SIGTERM));
    worker.ready();
    let mut stream = worker.connect();
    stream
        .write_all(b"GET /sleep?ms=5000 HTTP/1.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.wait(), WaitStatus::Exited(worker.pid, 30));
    let reply = only_reply(&read_to_close(&mut stream));
    assert_eq!(reply.status, 504);
    assert_eq!(reply.header("Connection"), Some("close"));
    assert_eq!(reply.header("X-Error-By"), Some("probe"));
    assert!(reply.body_text().contains("\"code\":504"));
}

#[test]
fn graceful_harakiri_signal_when_idle_just_exits() {
    let _serial = serial();
    let worker = Forked::start_with(true, Some(libc::SIGUSR2));
    worker.ready();
    // A parked keep-alive connection gets no stray 504.
    let mut stream = worker.connect();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buffer = Vec::new();
    assert_eq!(read_reply(&mut stream, &mut buffer, false).status, 200);
    worker.signal(Signal::SIGUSR2);
    assert_eq!(worker.wait(), WaitStatus::Exited(worker.pid, 30));
    assert!(read_to_close(&mut stream).is_empty());
}
