//! The worker loop (7.4): one `mio::Poll` over the listeners, the master-liveness pipe, the worker's
//! signals and the parked connections (idle keep-alive ones and heads still arriving); requests are
//! served one at a time, synchronously, once their head is complete.

use crate::config::{HttpConfig, HttpListener, MAX_PARKED};
use crate::connection::Waiting;
use crate::head::{HeadLimits, HeadParser};
use crate::log::{hostname, memory, Log};
use crate::logformat::LogFormat;
use crate::request::Request;
use crate::signals::{WorkerSignal, WorkerSignals};
use crate::slot::Slot;
use crate::stream::{accept, Peer, Stream};
use crate::Handler;
use master::{ListenSocket, EXIT_END, EXIT_GRACEFUL, EXIT_INIT_FAILED};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the loop serves with, independent of the master (tests build it directly).
pub struct WorkerSetup {
    /// Slot number, 1-based, as shown in log lines.
    pub id: usize,
    pub listeners: Vec<HttpListener>,
    pub config: HttpConfig,
    /// Read end of the master-liveness pipe: end-of-file means the master is gone.
    pub master_alive: Option<OwnedFd>,
    pub log: Log,
}

const LIVENESS: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
/// Parked connection `i` has token `PARKED + i`; listener `i` has token `i`.
const PARKED: usize = 1 << 20;

/// A client connection and where it came from.
#[derive(Debug)]
pub(crate) struct Conn {
    pub stream: Stream,
    pub peer: Peer,
    pub listener: usize,
    /// The listener allows keep-alive.
    pub keep_alive: bool,
    /// A response was written on it: when idle, it may be closed at a stop.
    pub served: bool,
}

#[derive(Debug)]
struct Parked {
    conn: Conn,
    /// Last activity: the oldest is closed first when the table is full.
    since: Instant,
    /// Closed past this (with a 408 when part of a request is pending).
    expires: Instant,
    waiting: Waiting,
}

impl Parked {
    /// A request is owed on it: accepted and never answered, or partly received.
    fn owed(&self) -> bool {
        !self.conn.served || !matches!(self.waiting, Waiting::Request)
    }
}

/// What became of a connection after serving it.
pub(crate) enum Served {
    Closed,
    /// Nothing more to read now: parked until readable again.
    Park(Conn, Waiting),
}

struct Acceptor {
    socket: ListenSocket,
    tcp: bool,
    port: u16,
}

impl Acceptor {
    fn fd(&self) -> RawFd {
        match &self.socket {
            ListenSocket::Tcp(l) => l.as_raw_fd(),
            ListenSocket::Unix(l) => l.as_raw_fd(),
        }
    }
}

/// The worker's state between requests. Fields are shared with `connection.rs`.
pub(crate) struct Worker<'s, H, S: ?Sized> {
    pub id: usize,
    pub pid: u32,
    pub config: HttpConfig,
    pub limits: HeadLimits,
    pub handler: H,
    pub slot: &'s S,
    pub log: Log,
    pub parser: HeadParser,
    /// Receive buffer of `buffer-size` bytes; `buf[..filled]` is received and not yet consumed.
    pub buf: Vec<u8>,
    pub filled: usize,
    /// The last read filled all the room it was given: the socket may hold more.
    pub maybe_more: bool,
    pub req: Request,
    /// A request's allocations kept while a parked body's request is being served.
    pub spare_req: Option<Request>,
    pub head_out: Vec<u8>,
    pub hup: Arc<AtomicBool>,
    /// The graceful-harakiri handler needs the client descriptor while the handler runs.
    pub graceful_harakiri: bool,
    /// Exit code once a stop was decided.
    pub stopping: Option<i32>,
    pub requests: u64,
    pub exceptions: u64,
    pub started: Instant,
    pub server_name: String,
    ports: Vec<u16>,
    acceptors: Vec<Option<Acceptor>>,
    keep_alive: Vec<bool>,
    parked: Vec<Option<Parked>>,
    /// No parked connection expires before this (recomputed when reached).
    next_expiry: Instant,
    poll: Poll,
    master_alive: Option<OwnedFd>,
    signals: Option<WorkerSignals>,
    paused: bool,
}

/// Serves until told to stop; returns the worker's exit code (17 graceful, 30 master gone).
pub fn run<H: Handler, S: Slot + ?Sized>(
    setup: WorkerSetup,
    slot: &S,
    handler: H,
    signals: Option<WorkerSignals>,
) -> i32 {
    let id = setup.id;
    match Worker::new(setup, slot, handler, signals) {
        Ok(mut worker) => worker.run(),
        Err((mut log, e)) => {
            log.dated(&format!("worker {id} cannot start its loop: {e}"));
            EXIT_INIT_FAILED
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl<'s, H: Handler, S: Slot + ?Sized> Worker<'s, H, S> {
    fn new(
        setup: WorkerSetup,
        slot: &'s S,
        handler: H,
        mut signals: Option<WorkerSignals>,
    ) -> Result<Self, (Log, io::Error)> {
        let WorkerSetup {
            id,
            listeners,
            config,
            master_alive,
            mut log,
        } = setup;
        log.configure(
            config.log_format.as_deref().map(LogFormat::parse),
            config.log_micros,
        );
        let prepare = || -> io::Result<(Poll, Vec<Option<Acceptor>>, Vec<bool>)> {
            let poll = Poll::new()?;
            let mut acceptors = Vec::new();
            let mut keep_alive = Vec::new();
            for (i, listener) in listeners.into_iter().enumerate() {
                let (tcp, port) = match &listener.socket {
                    ListenSocket::Tcp(l) => (true, l.local_addr()?.port()),
                    ListenSocket::Unix(_) => (false, 80),
                };
                let acceptor = Acceptor {
                    socket: listener.socket,
                    tcp,
                    port,
                };
                // Shared with the other workers: they all accept without blocking.
                set_nonblocking(acceptor.fd())?;
                poll.registry().register(
                    &mut SourceFd(&acceptor.fd()),
                    Token(i),
                    Interest::READABLE,
                )?;
                acceptors.push(Some(acceptor));
                keep_alive.push(listener.keep_alive);
            }
            if let Some(fd) = &master_alive {
                set_nonblocking(fd.as_raw_fd())?;
                poll.registry().register(
                    &mut SourceFd(&fd.as_raw_fd()),
                    LIVENESS,
                    Interest::READABLE,
                )?;
            }
            if let Some(signals) = signals.as_mut() {
                signals.register(poll.registry(), SIGNALS)?;
            }
            Ok((poll, acceptors, keep_alive))
        };
        let (poll, acceptors, keep_alive) = match prepare() {
            Ok(parts) => parts,
            Err(e) => return Err((log, e)),
        };
        let hup = signals
            .as_ref()
            .map_or_else(|| Arc::new(AtomicBool::new(false)), |s| s.hup_flag());
        let graceful_harakiri = signals.as_ref().is_some_and(|s| s.graceful_harakiri());
        let limits = HeadLimits {
            buffer_size: config.buffer_size,
            max_headers: config.max_headers,
            limit_post: config.limit_post,
        };
        let mut worker = Worker {
            id,
            pid: std::process::id(),
            buf: vec![0; config.buffer_size],
            limits,
            config,
            handler,
            slot,
            log,
            parser: HeadParser::new(),
            filled: 0,
            maybe_more: false,
            req: Request::empty(),
            spare_req: None,
            head_out: Vec::with_capacity(1024),
            hup,
            graceful_harakiri,
            stopping: None,
            requests: 0,
            exceptions: 0,
            started: Instant::now(),
            server_name: hostname(),
            ports: acceptors
                .iter()
                .map(|a| a.as_ref().map_or(80, |a| a.port))
                .collect(),
            acceptors,
            keep_alive,
            parked: (0..MAX_PARKED).map(|_| None).collect(),
            next_expiry: Instant::now() + Duration::from_secs(1),
            poll,
            master_alive,
            signals,
            paused: false,
        };
        if graceful_harakiri {
            worker.prepare_timeout_response();
        }
        Ok(worker)
    }

    pub fn port_of(&self, listener: usize) -> u16 {
        self.ports.get(listener).copied().unwrap_or(80)
    }

    fn run(&mut self) -> i32 {
        let mut events = Events::with_capacity(256);
        self.slot.accepting();
        loop {
            if let Some(code) = self.stopping {
                // A stop still serves the requests already accepted, each bounded by its timeouts.
                if !self.parked.iter().flatten().any(Parked::owed) {
                    return code;
                }
            }
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.log
                    .dated(&format!("worker {} poll error: {e}", self.id));
                return EXIT_END;
            }
            for event in events.iter() {
                match event.token() {
                    LIVENESS => self.check_master(),
                    SIGNALS => self.handle_signals(),
                    Token(i) if i < PARKED => self.accept_from(i),
                    Token(i) => self.serve_parked(i - PARKED),
                }
            }
            let now = Instant::now();
            if now >= self.next_expiry {
                self.expire_parked(now);
            }
        }
    }

    /// Until the next expiry sweep, at most 1 s.
    fn poll_timeout(&self) -> Duration {
        self.next_expiry
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1))
    }

    /// A stop was requested by a signal not yet read from the poll, or decided already.
    pub fn stop_requested(&self) -> bool {
        self.stopping.is_some() || self.hup.load(Ordering::Relaxed)
    }

    fn accept_from(&mut self, index: usize) {
        if self.paused {
            return;
        }
        // Edge-triggered: take every pending connection, one at a time, until none is left.
        while !self.stop_requested() {
            let Some(acceptor) = self.acceptors.get(index).and_then(|a| a.as_ref()) else {
                return;
            };
            match accept(acceptor.fd(), acceptor.tcp) {
                Ok(Some((stream, peer))) => {
                    let conn = Conn {
                        stream,
                        peer,
                        listener: index,
                        keep_alive: self.keep_alive[index],
                        served: false,
                    };
                    let served = self.serve(conn, Waiting::Request);
                    self.park_new(served);
                    self.after_request();
                }
                Ok(None) => return,
                Err(e) => {
                    // EMFILE and friends: the connection stays queued; try again on the next event.
                    self.log.dated(&format!("accept(): {e}"));
                    return;
                }
            }
        }
    }

    fn serve_parked(&mut self, index: usize) {
        let Some(parked) = self.parked.get_mut(index).and_then(Option::take) else {
            return;
        };
        let served = self.serve(parked.conn, parked.waiting);
        // Still registered under the same token: just put it back.
        if let Some(entry) = self.parked_entry(served) {
            self.parked[index] = Some(entry);
        }
        self.after_request();
    }

    /// The parked form of a served connection (none for an idle one at a stop).
    fn parked_entry(&mut self, served: Served) -> Option<Parked> {
        let Served::Park(conn, waiting) = served else {
            return None;
        };
        if self.stop_requested() && conn.served && matches!(waiting, Waiting::Request) {
            return None;
        }
        let now = Instant::now();
        let expires = match &waiting {
            Waiting::Request => now + self.config.keepalive_timeout,
            // Silence in the middle of a request is bounded like any read (4.5), and a head
            // also by its total time.
            Waiting::Head(_, deadline) => (now + self.config.socket_timeout).min(*deadline),
            Waiting::Body(_) => now + self.config.socket_timeout,
        };
        self.next_expiry = self.next_expiry.min(expires);
        Some(Parked {
            conn,
            since: now,
            expires,
            waiting,
        })
    }

    /// Parks a connection that is not registered yet, closing the oldest one when full.
    fn park_new(&mut self, served: Served) {
        let Some(entry) = self.parked_entry(served) else {
            return;
        };
        let index = match self.parked.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let oldest = self
                    .parked
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.as_ref().map(|p| (i, p.since)))
                    .min_by_key(|&(_, since)| since)
                    .map_or(0, |(i, _)| i);
                drop(self.unpark(oldest));
                oldest
            }
        };
        let fd = entry.conn.stream.raw_fd();
        if self
            .poll
            .registry()
            .register(
                &mut SourceFd(&fd),
                Token(PARKED + index),
                Interest::READABLE,
            )
            .is_ok()
        {
            self.parked[index] = Some(entry);
        }
    }

    /// Takes a connection out of the parked table and the poll.
    fn unpark(&mut self, index: usize) -> Option<Parked> {
        let parked = self.parked[index].take()?;
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&parked.conn.stream.raw_fd()));
        Some(parked)
    }

    /// Closes the expired connections (a 408 for a pending head, silently otherwise) and sets
    /// the next sweep at the earliest remaining expiry.
    fn expire_parked(&mut self, now: Instant) {
        let mut next = now + Duration::from_secs(1);
        for i in 0..self.parked.len() {
            let Some(expires) = self.parked[i].as_ref().map(|p| p.expires) else {
                continue;
            };
            if now < expires {
                next = next.min(expires);
                continue;
            }
            // Bytes that arrived while this worker was busy with a long request are not the
            // client's silence: the poll reports them next.
            if self.parked[i]
                .as_ref()
                .is_some_and(|p| p.conn.stream.readable_now())
            {
                continue;
            }
            match self.unpark(i) {
                Some(Parked {
                    conn,
                    waiting: Waiting::Head(..),
                    ..
                }) => self.expire_head(conn),
                Some(Parked {
                    conn,
                    waiting: Waiting::Body(pending),
                    ..
                }) => self.expire_body(conn, pending),
                _ => {}
            }
        }
        self.next_expiry = next;
    }

    /// After a request: recycling (3.7) and stop requests noticed during it.
    fn after_request(&mut self) {
        if self.stopping.is_none() && self.recycle_due() {
            self.log.line(&format!(
                "...The work of process {} is done. Seeya!",
                self.pid
            ));
            self.stop(EXIT_GRACEFUL);
        }
    }

    /// The request count (or memory) calls for recycling and the worker is old enough.
    pub fn recycle_due(&self) -> bool {
        if self.started.elapsed() < self.config.min_worker_lifetime {
            return false;
        }
        if self.config.max_requests > 0 && self.requests >= self.config.max_requests {
            return true;
        }
        self.config.reload_on_rss > 0 && memory().1 >= self.config.reload_on_rss * 1024 * 1024
    }

    /// Stops serving: closes the listeners and every parked connection.
    fn stop(&mut self, code: i32) {
        self.stopping.get_or_insert(code);
        self.slot.stopping();
        for acceptor in self.acceptors.iter_mut() {
            if let Some(a) = acceptor.take() {
                let _ = self.poll.registry().deregister(&mut SourceFd(&a.fd()));
            }
        }
        // A graceful stop keeps the connections a request is owed on (see `run`).
        let graceful = code == EXIT_GRACEFUL;
        for i in 0..self.parked.len() {
            if !(graceful && self.parked[i].as_ref().is_some_and(Parked::owed)) {
                drop(self.unpark(i));
            }
        }
    }

    fn check_master(&mut self) {
        let Some(fd) = &self.master_alive else {
            return;
        };
        let mut byte = [0u8; 64];
        loop {
            // SAFETY: reading into a local buffer from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), byte.as_mut_ptr().cast(), byte.len()) };
            if n > 0 {
                continue;
            }
            if n == 0 {
                self.log.dated(&format!(
                    "uWSGI worker {} error: the master disconnected from this worker. Shutting down the worker.",
                    self.id
                ));
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&fd.as_raw_fd()));
                self.stop(EXIT_END);
                return;
            }
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }

    fn handle_signals(&mut self) {
        let pending = match self.signals.as_mut() {
            Some(signals) => signals.pending(),
            None => return,
        };
        for signal in pending {
            match signal {
                WorkerSignal::Hup => {
                    if self.stopping.is_none() {
                        self.log.line(&format!(
                            "Gracefully killing worker {} (pid: {})...",
                            self.id, self.pid
                        ));
                        self.stop(EXIT_GRACEFUL);
                    }
                }
                WorkerSignal::Usr1 => {
                    self.log.line(&format!(
                        "worker {} total requests: {}",
                        self.id, self.requests
                    ));
                    self.log.line(&format!(
                        "\tapp 0 [] requests: {} exceptions: {}",
                        self.requests, self.exceptions
                    ));
                    self.log.line("-----------------");
                }
                // Signals are read between requests, so the worker is idle by then.
                WorkerSignal::Usr2 => self.log.line(&format!(
                    "SIGUSR2: --- uWSGI worker {} (pid: {}) is idle ---",
                    self.id, self.pid
                )),
                WorkerSignal::Tstp => {
                    self.paused = !self.paused;
                    if self.paused {
                        self.log
                            .dated(&format!("*** worker {} suspended ***", self.id));
                    } else {
                        self.log
                            .dated(&format!("*** worker {} resumed ***", self.id));
                        for i in 0..self.acceptors.len() {
                            self.accept_from(i);
                        }
                    }
                }
            }
        }
    }
}
