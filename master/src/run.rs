//! The master: startup in the order of SERVER.md 3.1, then a single-threaded loop of named steps
//! (7.2): poll, drain signals, reap, apply intents, harakiri, mercy, touch files, spawn, finish,
//! notify. Every fork happens from this loop; the master never creates a thread.

use crate::config::{absolute, ServerConfig};
use crate::listener::{self, Address, MasterListener};
use crate::log;
use crate::notify::Notifier;
use crate::scoreboard::{self, Scoreboard, STATE_ACCEPTING, STATE_BUSY, STATE_STARTING};
use crate::signals::{self, SelfPipe};
use crate::{App, Invocation, EXIT_GRACEFUL, EXIT_INIT_FAILED};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Environment variables describing listeners kept across a re-exec, and the reload counter.
const ENV_INHERITED: &str = "KINTO_INHERITED_FDS";
const ENV_RELOADS: &str = "KINTO_RELOADS";
/// Slots reserved in the scoreboard beyond `processes` (SIGTTIN, reloads raising `processes`).
const MIN_CAPACITY: usize = 64;
/// Back-off of a slot whose workers fail to initialise (3.5, should).
const INIT_BACKOFF_SECS: [u64; 6] = [1, 2, 4, 8, 16, 30];

/// Why the master asked a worker to stop: decides the log line of its death and the respawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// Lazy reload: respawn at once with the new configuration.
    Reload,
    /// SIGTTOU or a reload lowering `processes`: no respawn.
    Remove,
    /// Shutdown or non-lazy reload: "buried", no respawn.
    Bury,
}

#[derive(Debug, Clone, Copy)]
struct Curse {
    at: Instant,
    reason: StopReason,
    mercy_killed: bool,
}

/// What the master remembers of a slot (the shared part is in the scoreboard).
#[derive(Debug, Default)]
struct SlotState {
    pid: Option<Pid>,
    generation: u32,
    /// Configuration epoch the worker was forked with (bumped by each lazy reload).
    epoch: u64,
    spawned_once: bool,
    spawned_at: Option<Instant>,
    curse: Option<Curse>,
    respawn_at: Option<Instant>,
    harakiri_fired: bool,
    /// When the graceful harakiri signal was sent: SIGKILL is due at this instant.
    harakiri_kill_at: Option<Instant>,
    harakiri_count: u64,
    respawn_count: u64,
    last_spawn_unix: u64,
    init_failures: usize,
    /// The worker was toggled into pause (SIGTSTP) and not back.
    paused: bool,
}

/// The reload flavours of 3.9 and their triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReloadKind {
    /// SIGHUP, `touch-reload`, fifo `r`: rolling with `lazy`, else stop all and re-exec.
    Graceful,
    /// Fifo `R`: every worker SIGTERMed, then re-exec, in every mode.
    Brutal,
    /// Fifo `w`/`W`, `touch-workers-reload`: every worker replaced, the master stays.
    Workers { brutal: bool },
    /// Fifo `c`, `touch-chain-reload`: one slot at a time, the next once the new one accepts.
    Chain,
}

/// What a touched file triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TouchAction {
    Reload,
    WorkersReload,
    ChainReload,
    LogReopen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Non-lazy reload: every worker stops, then the master re-executes itself.
    Reexec,
    Shutdown {
        graceful: bool,
    },
}

/// Startup failure: exit code and message.
struct Fatal(i32, String);

impl From<String> for Fatal {
    fn from(message: String) -> Fatal {
        Fatal(1, message)
    }
}

struct Master<A: App> {
    app: Arc<A>,
    config: Arc<ServerConfig>,
    invocation: Invocation,
    listeners: Vec<MasterListener>,
    board: Scoreboard,
    slots: Vec<SlotState>,
    target: usize,
    poll: mio::Poll,
    pipe: SelfPipe,
    alive_read: OwnedFd,
    alive_write: OwnedFd,
    notifier: Notifier,
    phase: Phase,
    epoch: u64,
    /// READY=1 is owed: at startup and after each reload.
    ready_pending: bool,
    last_status: Option<(usize, usize)>,
    forkbomb_last: Option<Instant>,
    forkbomb_count: usize,
    forkbomb_until: Option<Instant>,
    /// Watched files, their last mtime and what a change triggers.
    touched: Vec<(PathBuf, Option<SystemTime>, TouchAction)>,
    /// The stats server, when `stats` is set.
    stats: Option<crate::stats::StatsServer>,
    /// Chain reload in progress: index of the current victim.
    chain: Option<usize>,
    /// The master FIFO (read end, opened read-write so it never sees end-of-file).
    fifo: Option<std::fs::File>,
    last_touch_check: Instant,
    pidfile: Option<PathBuf>,
    /// `pidfile2`, removed by vacuum.
    pidfile2: Option<PathBuf>,
    startup_dir: PathBuf,
    exit_code: i32,
    /// `WATCHDOG_USEC` / 2, when systemd asked for keep-alive pings; and the last ping.
    watchdog: Option<(Duration, Instant)>,
    /// The watchdog variables, removed from the workers' environment, put back for a re-exec.
    watchdog_env: Vec<(String, String)>,
    last_memory_check: Instant,
    /// SIGTSTP pause in force.
    paused: bool,
    /// The command line as started (the process title may overwrite it), for a re-exec.
    argv: Vec<std::ffi::OsString>,
}

/// Runs the master until shutdown and returns the process exit code.
pub fn run<A: App>(invocation: Invocation) -> i32 {
    match Master::<A>::start(invocation) {
        Ok(mut master) => master.run_loop(),
        Err(Fatal(code, message)) => {
            for line in message.lines() {
                log::line(line);
            }
            code
        }
    }
}

impl<A: App> Master<A> {
    fn start(mut invocation: Invocation) -> Result<Master<A>, Fatal> {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        // 1. Signals first: a stop signal during startup is handled as soon as the loop runs.
        let pipe = signals::install().map_err(|e| format!("signal setup: {e}"))?;
        let reloads: u64 = std::env::var(ENV_RELOADS)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let inherited = std::env::var(ENV_INHERITED).ok();
        std::env::remove_var(ENV_INHERITED);
        let mut notifier = Notifier::from_env();
        let watchdog_env: Vec<(String, String)> = ["WATCHDOG_USEC", "WATCHDOG_PID"]
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        for (k, _) in &watchdog_env {
            std::env::remove_var(k);
        }
        let watchdog_for_us = watchdog_env
            .iter()
            .find(|(k, _)| k == "WATCHDOG_PID")
            .is_none_or(|(_, v)| v.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = watchdog_env
            .iter()
            .find(|(k, _)| k == "WATCHDOG_USEC")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && watchdog_for_us)
            .map(|usec| (Duration::from_micros(usec / 2), Instant::now()));
        notifier.send("STATUS=initializing\n");

        // 2-4. Configuration, names, env (applied by ServerConfig::load).
        invocation.ini = absolute(&invocation.ini);
        if invocation.section.is_empty() {
            invocation.section = "uwsgi".to_string();
        }
        log::line(&format!(
            "[uWSGI] getting INI configuration from {}",
            invocation.ini.display()
        ));
        let (mut config, app) = A::load(&invocation.ini, &invocation)?;
        adjust_to_nproc(&mut config);
        if let Some(mask) = config.umask {
            // SAFETY: plain syscall.
            unsafe { libc::umask(mask as libc::mode_t) };
        }
        log::set_date_format(config.log_date.clone());
        // 5. daemonize or logto, as the starting user.
        if let Some(path) = &config.daemonize {
            if notifier.path().is_some() {
                return Err(Fatal(
                    1,
                    "daemonize cannot be used under systemd Type=notify".to_string(),
                ));
            }
            daemonize(path)?;
        }
        if let Some(path) = &config.logto {
            redirect_log(path)?;
        }
        banner_head::<A>();
        let startup_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        if config.max_fd > 0 {
            use nix::sys::resource::{setrlimit, Resource};
            setrlimit(Resource::RLIMIT_NOFILE, config.max_fd, config.max_fd)
                .map_err(|e| format!("setrlimit(RLIMIT_NOFILE, {}): {e}", config.max_fd))?;
        }
        // 6. pidfiles, not rewritten by a re-exec; relative paths from the starting directory.
        let pidfile = config.pidfile.as_ref().map(|p| absolute(p));
        let safe_pidfile = config.safe_pidfile.as_ref().map(|p| absolute(p));
        if inherited.is_none() {
            write_pidfile(pidfile.as_deref(), false)?;
            write_pidfile(safe_pidfile.as_deref(), true)?;
        }
        // 7. chdir.
        if let Some(dir) = &config.chdir {
            std::env::set_current_dir(dir)
                .map_err(|e| format!("chdir() to {}: {e}", dir.display()))?;
        }
        // 8-9. Inherited sockets (systemd, re-exec), then bind the others.
        let listeners = setup_listeners(&config, inherited.as_deref())?;
        let stats = match &config.stats {
            Some(address) => {
                let (server, line) = crate::stats::StatsServer::bind(address, &config)?;
                log::line(&line);
                Some(server)
            }
            None => None,
        };
        let fifo = match config.master_fifo.first() {
            Some(path) => Some(open_fifo(path)?),
            None => None,
        };
        // 10. Privileges.
        for line in crate::privileges::drop_privileges(&config)? {
            log::line(&line);
        }
        // 11. What is opened as the dropped user (relative to the chdir directory).
        if let Some(path) = &config.logto2 {
            redirect_log(path)?;
        }
        let pidfile2 = config.pidfile2.as_ref().map(|p| absolute(p));
        if inherited.is_none() {
            write_pidfile(pidfile2.as_deref(), false)?;
            write_pidfile(config.safe_pidfile2.as_deref(), true)?;
        }
        // 12. Scoreboard, liveness pipe, banner tail.
        let capacity = config.processes.max(MIN_CAPACITY);
        let board = Scoreboard::new(capacity).map_err(|e| format!("mmap(): {e}"))?;
        board
            .header()
            .master_pid
            .store(std::process::id() as i32, Ordering::Relaxed);
        let (alive_read, alive_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe(): {e}"))?;
        let poll = mio::Poll::new().map_err(|e| format!("epoll: {e}"))?;
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&pipe.read.as_raw_fd()),
                mio::Token(0),
                mio::Interest::READABLE,
            )
            .map_err(|e| format!("epoll: {e}"))?;
        banner_tail(&config);
        log::line(&format!(
            "{} uWSGI master process (pid: {})",
            if reloads > 0 {
                "gracefully (RE)spawned"
            } else {
                "spawned"
            },
            std::process::id()
        ));
        if let Some(title) = crate::procname::master_title(&config) {
            crate::procname::set_title(&title);
        }
        let touched = watched_files(&config);
        if let Some(server) = &stats {
            poll.registry()
                .register(
                    &mut mio::unix::SourceFd(&server.raw_fd()),
                    mio::Token(2),
                    mio::Interest::READABLE,
                )
                .map_err(|e| format!("epoll: {e}"))?;
        }
        if let Some(file) = &fifo {
            poll.registry()
                .register(
                    &mut mio::unix::SourceFd(&file.as_raw_fd()),
                    mio::Token(1),
                    mio::Interest::READABLE,
                )
                .map_err(|e| format!("epoll: {e}"))?;
        }
        let target = config.processes;
        Ok(Master {
            app: Arc::new(app),
            config: Arc::new(config),
            invocation,
            listeners,
            board,
            slots: (0..capacity).map(|_| SlotState::default()).collect(),
            target,
            poll,
            pipe,
            alive_read,
            alive_write,
            notifier,
            phase: Phase::Running,
            epoch: 0,
            ready_pending: true,
            last_status: None,
            forkbomb_last: None,
            forkbomb_count: 0,
            forkbomb_until: None,
            touched,
            stats,
            chain: None,
            fifo,
            last_touch_check: Instant::now(),
            pidfile,
            pidfile2,
            startup_dir,
            exit_code: 0,
            watchdog,
            watchdog_env,
            last_memory_check: Instant::now(),
            paused: false,
            argv,
        })
    }

    /// The loop of 7.2.
    fn run_loop(&mut self) -> i32 {
        let mut events = mio::Events::with_capacity(8);
        // 13. Fork the workers before the first poll.
        self.spawn_missing();
        loop {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    log::line(&format!("epoll_wait(): {e}"));
                }
            }
            let pending = signals::drain(self.pipe.read.as_raw_fd());
            let commands = self.read_fifo();
            self.reap();
            for sig in pending {
                self.on_signal(sig);
            }
            for command in commands {
                self.on_fifo(command);
            }
            if let Some(mut stats) = self.stats.take() {
                stats.serve(|| self.snapshot());
                self.stats = Some(stats);
            }
            self.check_harakiri();
            self.check_mercy();
            self.check_lifetime_and_memory();
            self.check_touch();
            self.ping_watchdog();
            self.spawn_missing();
            self.advance_chain();
            if self.paused {
                self.sync_pause();
            }
            if let Some(code) = self.maybe_finish() {
                return code;
            }
            self.notify_state();
        }
    }

    fn next_timeout(&self) -> Duration {
        let mut timeout = Duration::from_secs(1);
        let now_ms = scoreboard::monotonic_ms();
        let now = Instant::now();
        if let Some((interval, last)) = self.watchdog {
            timeout = timeout.min((last + interval).saturating_duration_since(now));
        }
        if self.stats.as_ref().is_some_and(|s| s.busy()) {
            timeout = timeout.min(Duration::from_millis(50));
        }
        for (i, s) in self.slots.iter().enumerate() {
            if s.pid.is_some() && !s.harakiri_fired && s.harakiri_kill_at.is_none() {
                let d = self
                    .board
                    .slot(i + 1)
                    .harakiri_deadline_mono_ms
                    .load(Ordering::Acquire);
                if d != 0 {
                    timeout = timeout.min(Duration::from_millis(d.saturating_sub(now_ms)));
                }
            }
            // Only respawns that spawn_missing will act on, or the loop would spin.
            if let Some(at) = s
                .respawn_at
                .filter(|_| self.phase == Phase::Running && i < self.target)
            {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
            if let Some(at) = s
                .harakiri_kill_at
                .filter(|_| s.pid.is_some() && !s.harakiri_fired)
            {
                timeout = timeout.min(at.saturating_duration_since(now));
            }
            if let Some(c) = s.curse.filter(|c| !c.mercy_killed && s.pid.is_some()) {
                timeout = timeout
                    .min((c.at + self.config.worker_reload_mercy).saturating_duration_since(now));
            }
        }
        timeout
    }

    // ---- signals -------------------------------------------------------------------------

    fn on_signal(&mut self, sig: Signal) {
        match sig {
            Signal::SIGHUP => self.reload(ReloadKind::Graceful),
            Signal::SIGTERM => self.shutdown(true),
            Signal::SIGINT | Signal::SIGQUIT => self.shutdown(false),
            Signal::SIGUSR1 => self.log_stats(),
            Signal::SIGUSR2 => self.log_status(),
            Signal::SIGTTIN => self.add_worker(),
            Signal::SIGTTOU => self.remove_worker(),
            Signal::SIGTSTP => self.toggle_pause(),
            _ => {}
        }
    }

    fn reload(&mut self, kind: ReloadKind) {
        if self.phase != Phase::Running {
            return;
        }
        let (config, app) = match A::load(&self.invocation.ini, &self.invocation) {
            Ok(loaded) => loaded,
            Err(e) => {
                // A reload never takes a healthy service down [fix].
                log::line(&format!(
                    "reload failed, keeping the running configuration: {e}"
                ));
                let reason = e.lines().next().unwrap_or_default().to_string();
                self.notifier
                    .send(&format!("STATUS=reload failed: {reason}\n"));
                self.notifier.send("READY=1\n");
                return;
            }
        };
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
            t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000
        });
        self.notifier.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={ts}\nSTATUS=reloading\n"
        ));
        self.ready_pending = true;
        if config.log_reopen {
            self.reopen_logs();
        }
        let reexec = match kind {
            ReloadKind::Graceful => !config.lazy,
            ReloadKind::Brutal => true,
            ReloadKind::Workers { .. } | ReloadKind::Chain => false,
        };
        if reexec {
            self.phase = Phase::Reexec;
            self.config = Arc::new(config);
            self.chain = None;
            if kind == ReloadKind::Brutal {
                log::line("...brutally killing workers...");
                self.curse_all(Signal::SIGTERM, StopReason::Bury);
            } else {
                log::line("...gracefully killing workers...");
                self.curse_all(Signal::SIGHUP, StopReason::Bury);
            }
            return;
        }
        for option in restart_needed(&self.config, &config) {
            log::line(&format!("restart needed to change {option}"));
        }
        let mut config = config;
        // Live-reloadable options only: listeners, identity and files stay as started.
        config.sockets = self.config.sockets.clone();
        config.uid = self.config.uid.clone();
        config.gid = self.config.gid;
        config.chdir = self.config.chdir.clone();
        config.pidfile = self.config.pidfile.clone();
        config.master_fifo = self.config.master_fifo.clone();
        for line in &config.notices {
            log::line(line);
        }
        log::set_date_format(config.log_date.clone());
        self.target = config.processes.min(self.slots.len());
        self.config = Arc::new(config);
        self.app = Arc::new(app);
        self.epoch += 1;
        self.touched = watched_files(&self.config);
        let signal = match kind {
            ReloadKind::Workers { brutal: true } => Signal::SIGINT,
            _ => Signal::SIGHUP,
        };
        for i in 0..self.slots.len() {
            self.slots[i].respawn_at = self.slots[i]
                .respawn_at
                .filter(|_| i < self.target)
                .map(|_| Instant::now());
            if i >= self.target {
                self.curse(i, Signal::SIGHUP, StopReason::Remove);
            } else if kind != ReloadKind::Chain {
                self.curse(i, signal, StopReason::Reload);
            }
        }
        self.chain = None;
        if kind == ReloadKind::Chain {
            self.chain_next(0);
        }
    }

    /// The stats document's inputs (6.6).
    fn snapshot(&self) -> crate::stats::Snapshot {
        let sockets = self
            .listeners
            .iter()
            .map(|l| {
                let (queue, max_queue) = match &l.address {
                    Address::Tcp(_) => crate::stats::listen_queue(l.listener.raw_fd()),
                    _ => (0, 0),
                };
                crate::stats::SocketStats {
                    name: l.listener.name.clone(),
                    queue,
                    max_queue,
                }
            })
            .collect();
        let workers = (0..self.target)
            .map(|i| {
                let s = &self.slots[i];
                let slot = self.board.slot(i + 1);
                let state = slot.state.load(Ordering::Acquire);
                let busy = slot.request_started_mono_ms.load(Ordering::Acquire) != 0;
                let request = busy.then(|| {
                    let info = slot.request_info();
                    (info.method, info.uri, info.remote_addr, info.started_unix)
                });
                let (vsz, rss) = s.pid.and_then(statm).unwrap_or((0, 0));
                crate::stats::WorkerStats {
                    id: i + 1,
                    pid: s.pid.map_or(0, |p| p.as_raw()),
                    accepting: s.pid.is_some() && matches!(state, STATE_ACCEPTING | STATE_BUSY),
                    status: if s.paused {
                        "pause"
                    } else if busy {
                        "busy"
                    } else {
                        "idle"
                    },
                    requests: slot.requests.load(Ordering::Relaxed),
                    delta_requests: slot.delta_requests.load(Ordering::Relaxed),
                    exceptions: slot.exceptions.load(Ordering::Relaxed),
                    harakiri_count: s.harakiri_count,
                    rss,
                    vsz,
                    last_spawn: s.last_spawn_unix,
                    respawn_count: s.respawn_count,
                    tx: slot.tx.load(Ordering::Relaxed),
                    request,
                }
            })
            .collect();
        crate::stats::Snapshot {
            pid: std::process::id(),
            sockets,
            workers,
        }
    }

    /// Chain reload: curses slot `i` (or completes the chain).
    fn chain_next(&mut self, i: usize) {
        if i >= self.target {
            log::dated("chain reloading complete");
            self.chain = None;
            return;
        }
        log::dated(&format!("chain next victim is worker {}", i + 1));
        self.chain = Some(i);
        self.curse(i, Signal::SIGHUP, StopReason::Reload);
    }

    /// Moves the chain on once the current victim's slot runs a new, accepting worker.
    fn advance_chain(&mut self) {
        let Some(i) = self.chain else { return };
        if self.phase != Phase::Running {
            self.chain = None;
            return;
        }
        let s = &self.slots[i];
        let state = self.board.slot(i + 1).state.load(Ordering::Acquire);
        let replaced = i >= self.target
            || (s.pid.is_some()
                && s.curse.is_none()
                && s.epoch == self.epoch
                && matches!(state, STATE_ACCEPTING | STATE_BUSY));
        if replaced {
            self.chain_next(i + 1);
        }
    }

    /// `logto`/`logto2` reopened (fifo `l`, `touch-logreopen`, `log-reopen` on reload).
    fn reopen_logs(&self) {
        for path in [&self.config.logto, &self.config.logto2]
            .into_iter()
            .flatten()
        {
            if let Err(e) = redirect_log(path) {
                log::line(&e);
            }
        }
    }

    /// Commands waiting in the master FIFO.
    fn read_fifo(&mut self) -> Vec<u8> {
        let Some(fifo) = &mut self.fifo else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        use std::io::Read;
        while let Ok(n) = fifo.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    fn on_fifo(&mut self, command: u8) {
        match command {
            b'q' => self.shutdown(true),
            b'Q' => self.shutdown(false),
            b'r' => self.reload(ReloadKind::Graceful),
            b'R' => self.reload(ReloadKind::Brutal),
            b'w' => self.reload(ReloadKind::Workers { brutal: false }),
            b'W' => self.reload(ReloadKind::Workers { brutal: true }),
            b'c' => self.reload(ReloadKind::Chain),
            b'l' => self.reopen_logs(),
            b's' => self.log_stats(),
            b'p' => self.toggle_pause(),
            b'\n' | b'\r' | b' ' => {}
            other => log::line(&format!(
                "[uwsgi-fifo] unknown command \"{}\"",
                char::from(other).escape_default()
            )),
        }
    }

    fn shutdown(&mut self, graceful: bool) {
        match self.phase {
            Phase::Shutdown { graceful: false } => return,
            Phase::Shutdown { graceful: true } => {
                // A second stop signal turns a graceful shutdown brutal.
                log::line("SIGINT/SIGTERM received...killing workers...");
                self.phase = Phase::Shutdown { graceful: false };
                self.signal_live(Signal::SIGINT);
                return;
            }
            _ => {}
        }
        self.notifier.send("STOPPING=1\nSTATUS=stopping\n");
        self.phase = Phase::Shutdown { graceful };
        for s in &mut self.slots {
            s.respawn_at = None;
        }
        if graceful {
            log::dated("graceful shutdown triggered...");
            // New connections are refused at once for every process sharing the listeners;
            // systemd's sockets keep their queue for the next start.
            for l in self.listeners.iter().filter(|l| l.self_bound) {
                // SAFETY: plain syscall on a descriptor we own.
                unsafe { libc::shutdown(l.listener.raw_fd(), libc::SHUT_RDWR) };
            }
            self.curse_all(Signal::SIGHUP, StopReason::Bury);
        } else {
            log::line("SIGINT/SIGTERM received...killing workers...");
            self.curse_all(Signal::SIGINT, StopReason::Bury);
        }
    }

    fn toggle_pause(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.paused = !self.paused;
        if self.paused {
            log::dated(
                "*** PAUSE (press start to resume, if you do not have a joypad send SIGTSTP) ***",
            );
        } else {
            log::dated("*** (SIGTSTP received) resuming workers ***");
        }
        self.sync_pause();
    }

    /// Toggles each worker (SIGTSTP) until it matches the master's pause state. Only workers that
    /// said they are accepting get it: their handlers are installed by then (the default action of
    /// SIGTSTP would stop the process), and a worker spawned during a pause is paused once ready.
    fn sync_pause(&mut self) {
        for i in 0..self.slots.len() {
            let Some(pid) = self.slots[i].pid else {
                continue;
            };
            let state = self.board.slot(i + 1).state.load(Ordering::Acquire);
            if self.slots[i].paused != self.paused
                && self.slots[i].curse.is_none()
                && matches!(state, STATE_ACCEPTING | STATE_BUSY)
            {
                self.slots[i].paused = self.paused;
                let _ = kill(pid, Signal::SIGTSTP);
            }
        }
    }

    fn add_worker(&mut self) {
        if self.phase != Phase::Running || self.target >= self.slots.len() {
            return;
        }
        self.target += 1;
        log::line(&format!(
            "SIGTTIN received: increasing workers to {}",
            self.target
        ));
    }

    fn remove_worker(&mut self) {
        if self.phase != Phase::Running || self.target <= 1 {
            return;
        }
        self.target -= 1;
        log::line(&format!(
            "SIGTTOU received: decreasing workers to {}",
            self.target
        ));
        let i = self.target;
        self.slots[i].respawn_at = None;
        self.curse(i, Signal::SIGHUP, StopReason::Remove);
    }

    fn log_stats(&self) {
        let mut out = self.config.dump();
        out.push_str("-----------------\n");
        out.push_str(&format!(
            "\tworkers total requests: {}\n",
            self.board.header().total_requests.load(Ordering::Relaxed)
        ));
        for i in 0..self.target {
            let slot = self.board.slot(i + 1);
            out.push_str(&format!(
                "\tworker {} app 0 [] requests: {} exceptions: {}\n",
                i + 1,
                slot.requests.load(Ordering::Relaxed),
                slot.exceptions.load(Ordering::Relaxed)
            ));
        }
        out.push_str("-----------------");
        log::line(&out);
    }

    fn log_status(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            let Some(pid) = s.pid else { continue };
            let slot = self.board.slot(i + 1);
            if slot.request_started_mono_ms.load(Ordering::Acquire) != 0 {
                let info = slot.request_info();
                log::line(&format!(
                    "SIGUSR2: --- uWSGI worker {} (pid: {pid}) is managing request {} since {} ---",
                    i + 1,
                    info.uri,
                    log::ctime(info.started_unix as i64)
                ));
            } else {
                log::line(&format!(
                    "SIGUSR2: --- uWSGI worker {} (pid: {pid}) is idle ---",
                    i + 1
                ));
            }
        }
    }

    // ---- workers ----------------------------------------------------------------------------

    fn curse(&mut self, i: usize, sig: Signal, reason: StopReason) {
        let Some(pid) = self.slots[i].pid else { return };
        if self.slots[i].curse.is_none() {
            self.slots[i].curse = Some(Curse {
                at: Instant::now(),
                reason,
                mercy_killed: false,
            });
        }
        if let Some(c) = &mut self.slots[i].curse {
            c.reason = reason;
        }
        let _ = kill(pid, sig);
    }

    fn curse_all(&mut self, sig: Signal, reason: StopReason) {
        for i in 0..self.slots.len() {
            self.slots[i].respawn_at = None;
            self.curse(i, sig, reason);
        }
    }

    fn signal_live(&mut self, sig: Signal) {
        for s in &self.slots {
            if let Some(pid) = s.pid {
                let _ = kill(pid, sig);
            }
        }
    }

    /// `waitpid(-1, WNOHANG)` until nothing is left: classify each death, log it, free the slot.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let (pid, code, signal) = match status {
                WaitStatus::Exited(pid, code) => (pid, Some(code), None),
                WaitStatus::Signaled(pid, sig, _) => (pid, None, Some(sig)),
                _ => continue,
            };
            let Some(i) = self.slots.iter().position(|s| s.pid == Some(pid)) else {
                continue;
            };
            self.on_death(i, pid, code, signal);
        }
    }

    fn on_death(&mut self, i: usize, pid: Pid, code: Option<i32>, signal: Option<Signal>) {
        let n = i + 1;
        let now = Instant::now();
        let slot = &mut self.slots[i];
        slot.pid = None;
        slot.harakiri_fired = false;
        slot.harakiri_kill_at = None;
        self.board.slot(n).pid.store(0, Ordering::Relaxed);
        if let Some(curse) = slot.curse.take() {
            match curse.reason {
                StopReason::Bury => log::line(&format!(
                    "worker {n} buried after {} seconds",
                    now.duration_since(curse.at).as_secs()
                )),
                StopReason::Reload | StopReason::Remove => {
                    log::line(&format!("worker {n} killed successfully (pid: {pid})"))
                }
            }
            return;
        }
        if self.phase != Phase::Running {
            log::line(&format!("worker {n} buried after 0 seconds"));
            return;
        }
        match (code, signal) {
            (Some(EXIT_GRACEFUL), _) => {
                // Recycling decided by the worker: planned, not counted as a fork bomb.
                log::line(&format!("worker {n} killed successfully (pid: {pid})"));
            }
            (Some(EXIT_INIT_FAILED), _) => {
                if self.config.need_app {
                    log::line(&format!(
                        "OOPS ! failed loading app in worker {n} (pid {pid})"
                    ));
                    log::dated("need-app requested, destroying the instance...");
                    self.exit_code = EXIT_INIT_FAILED;
                    self.shutdown(false);
                    return;
                }
                log::line(&format!(
                    "OOPS ! failed loading app in worker {n} (pid {pid}) :( trying again..."
                ));
                let slot = &mut self.slots[i];
                let delay = INIT_BACKOFF_SECS[slot.init_failures.min(INIT_BACKOFF_SECS.len() - 1)];
                slot.init_failures += 1;
                slot.respawn_at = Some(now + Duration::from_secs(delay));
            }
            (_, Some(sig)) => {
                log::line(&format!(
                    "DAMN ! worker {n} (pid: {pid}) died, killed by signal {} :( trying respawn ...",
                    sig as i32
                ));
                self.count_unplanned(i, now);
            }
            (code, None) => {
                let _ = code;
                log::line(&format!(
                    "DAMN ! worker {n} (pid: {pid}) died :( trying respawn ..."
                ));
                self.count_unplanned(i, now);
            }
        }
    }

    /// Fork-bomb protection (3.5): too many unplanned deaths in a row postpone respawns by
    /// `forkbomb-delay` without blocking the loop [fix].
    fn count_unplanned(&mut self, i: usize, now: Instant) {
        match self.forkbomb_last {
            Some(last) if now.duration_since(last) < Duration::from_secs(1) => {
                self.forkbomb_count += 1
            }
            _ => self.forkbomb_count = 0,
        }
        self.forkbomb_last = Some(now);
        if self.forkbomb_count > self.target {
            log::line(&format!(
                "worker respawning too fast !!! i have to sleep a bit ({} seconds)...",
                self.config.forkbomb_delay.as_secs()
            ));
            self.forkbomb_until = Some(now + self.config.forkbomb_delay);
            self.forkbomb_count = 0;
        }
        if let Some(until) = self.forkbomb_until.filter(|u| *u > now) {
            self.slots[i].respawn_at = Some(until);
        }
    }

    fn spawn_missing(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let now = Instant::now();
        for i in 0..self.target {
            let s = &self.slots[i];
            if s.pid.is_none() && s.respawn_at.is_none_or(|at| at <= now) {
                self.slots[i].respawn_at = None;
                self.spawn(i);
            }
        }
    }

    fn spawn(&mut self, i: usize) {
        let n = i + 1;
        let generation = self.slots[i].generation.wrapping_add(1);
        self.slots[i].generation = generation;
        let slot = self.board.slot(n);
        slot.reset(generation);
        let mut config = (*self.config).clone();
        if config.max_requests > 0 {
            config.max_requests += i as u64 * config.max_requests_delta;
        }
        let child_fds = ChildFds {
            close: [
                Some(self.pipe.read.as_raw_fd()),
                Some(self.pipe.write.as_raw_fd()),
                Some(self.poll.as_raw_fd()),
                Some(self.alive_write.as_raw_fd()),
                self.notifier.raw_fd(),
                self.fifo.as_ref().map(|f| f.as_raw_fd()),
                self.stats.as_ref().map(|s| s.raw_fd()),
            ],
            alive_read: self.alive_read.as_raw_fd(),
        };
        let mask = signals::block_all();
        // SAFETY: the master is single-threaded, so the child may run arbitrary code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let listeners = self
                    .listeners
                    .iter()
                    .filter_map(|l| l.listener.try_clone().ok())
                    .collect();
                crate::spawn::child_main(
                    self.app.as_ref(),
                    n,
                    listeners,
                    self.board.handle(n),
                    Arc::new(config),
                    child_fds,
                )
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                signals::restore(&mask);
                slot.pid.store(child.as_raw(), Ordering::Relaxed);
                let s = &mut self.slots[i];
                s.pid = Some(child);
                s.epoch = self.epoch;
                s.curse = None;
                s.harakiri_fired = false;
                s.harakiri_kill_at = None;
                s.spawned_at = Some(Instant::now());
                s.respawn_count += 1;
                s.last_spawn_unix = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                s.paused = false;
                if s.spawned_once {
                    log::line(&format!("Respawned uWSGI worker {n} (new pid: {child})"));
                } else {
                    s.spawned_once = true;
                    log::line(&format!(
                        "spawned uWSGI worker {n} (pid: {child}, cores: 1)"
                    ));
                }
            }
            Err(e) => {
                signals::restore(&mask);
                log::line(&format!("fork(): {e}"));
                self.slots[i].respawn_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    // ---- supervision --------------------------------------------------------------------------

    /// Harakiri (3.6): SIGKILL a worker whose request outlived its deadline.
    fn check_harakiri(&mut self) {
        let now_ms = scoreboard::monotonic_ms();
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let Some(pid) = self.slots[i].pid else {
                continue;
            };
            if self.slots[i].harakiri_fired {
                continue;
            }
            let n = i + 1;
            let slot = self.board.slot(n);
            let info = slot.request_info();
            if let Some(due) = self.slots[i].harakiri_kill_at {
                // Second harakiri after a graceful attempt: SIGKILL.
                if now >= due {
                    self.harakiri_dump(n, pid, 2, false, &info);
                    let _ = kill(pid, Signal::SIGKILL);
                    self.slots[i].harakiri_fired = true;
                }
                continue;
            }
            let deadline = slot.harakiri_deadline_mono_ms.load(Ordering::Acquire);
            if deadline == 0 || now_ms < deadline {
                continue;
            }
            // The request may have finished between the two reads: then nothing is done.
            if slot.harakiri_deadline_mono_ms.load(Ordering::Acquire) != deadline
                || slot.generation.load(Ordering::Acquire) != self.slots[i].generation
            {
                continue;
            }
            self.slots[i].harakiri_count += 1;
            let grace = self.config.harakiri_graceful_timeout;
            if grace.is_zero() {
                self.harakiri_dump(n, pid, 1, false, &info);
                let _ = kill(pid, Signal::SIGKILL);
                self.slots[i].harakiri_fired = true;
                continue;
            }
            self.harakiri_dump(n, pid, 1, true, &info);
            let sig = self.config.harakiri_graceful_signal;
            let next = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| (d + grace).as_secs());
            log::dated(&format!(
                "HARAKIRI: graceful termination attempt on worker {n} with signal {sig}. Next harakiri: {next}"
            ));
            if let Ok(signal) = Signal::try_from(sig) {
                let _ = kill(pid, signal);
            }
            self.slots[i].harakiri_kill_at = Some(now + grace);
        }
    }

    /// The harakiri lines of 6.3, in order.
    fn harakiri_dump(
        &self,
        n: usize,
        pid: Pid,
        attempt: u32,
        graceful: bool,
        info: &scoreboard::RequestInfo,
    ) {
        let graceful = if graceful { "yes" } else { "no" };
        log::dated(&format!(
            "*** HARAKIRI ON WORKER {n} (pid: {pid}, try: {attempt}, graceful: {graceful}) ***"
        ));
        if self.config.harakiri_verbose {
            for what in ["syscall", "wchan"] {
                let text =
                    std::fs::read_to_string(format!("/proc/{pid}/{what}")).unwrap_or_default();
                log::line(&format!("HARAKIRI: -- {what}> {}", text.trim_end()));
            }
        }
        log::dated(&format!("HARAKIRI !!! worker {n} status !!!"));
        log::dated(&format!(
            "HARAKIRI [core 0] {} - {} {} since {}",
            info.remote_addr, info.method, info.uri, info.started_unix
        ));
        log::dated(&format!("HARAKIRI !!! end of worker {n} status !!!"));
        log::dated(&format!("HARAKIRI triggered by worker {n} core 0 !!!"));
    }

    /// Mercy (3.9): a worker asked to stop that is still alive after `worker-reload-mercy`.
    fn check_mercy(&mut self) {
        let now = Instant::now();
        let mercy = self.config.worker_reload_mercy;
        for i in 0..self.slots.len() {
            let Some(pid) = self.slots[i].pid else {
                continue;
            };
            let Some(curse) = &mut self.slots[i].curse else {
                continue;
            };
            if !curse.mercy_killed && now.duration_since(curse.at) >= mercy {
                curse.mercy_killed = true;
                log::dated(&format!(
                    "worker {} (pid: {pid}) is taking too much time to die...NO MERCY !!!",
                    i + 1
                ));
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Once per second: `max-worker-lifetime` (graceful recycle), `evil-reload-on-rss`/`-as`
    /// (SIGKILL; memory read from `/proc/<pid>/statm` by the master itself), `log-maxsize`.
    fn check_lifetime_and_memory(&mut self) {
        if self.phase != Phase::Running || self.last_memory_check.elapsed() < Duration::from_secs(1)
        {
            return;
        }
        self.last_memory_check = Instant::now();
        self.rotate_log();
        let lifetime = self.config.max_worker_lifetime;
        let (evil_rss, evil_as) = (
            self.config.evil_reload_on_rss,
            self.config.evil_reload_on_as,
        );
        for i in 0..self.target {
            let n = i + 1;
            let (Some(pid), None) = (self.slots[i].pid, self.slots[i].curse) else {
                continue;
            };
            let age = self.slots[i]
                .spawned_at
                .map_or(Duration::ZERO, |t| t.elapsed());
            // The init back-off of a slot resets once one of its workers has served for 10 s.
            let state = self.board.slot(n).state.load(Ordering::Acquire);
            if age >= Duration::from_secs(10) && matches!(state, STATE_ACCEPTING | STATE_BUSY) {
                self.slots[i].init_failures = 0;
            }
            if !lifetime.is_zero()
                && age >= lifetime + self.config.max_worker_lifetime_delta * i as u32
            {
                log::line(&format!(
                    "worker {n} lifetime reached, it was running for {} second(s)",
                    age.as_secs()
                ));
                self.curse(i, Signal::SIGHUP, StopReason::Reload);
                continue;
            }
            if evil_rss == 0 && evil_as == 0 {
                continue;
            }
            let Some((vsz, rss)) = statm(pid) else {
                continue;
            };
            let mb = 1024 * 1024;
            let over = if evil_rss > 0 && rss >= evil_rss * mb {
                Some(format!("RSS: {rss}"))
            } else if evil_as > 0 && vsz >= evil_as * mb {
                Some(format!("ADDRESS SPACE: {vsz}"))
            } else {
                None
            };
            if let Some(what) = over {
                log::line(&format!(
                    "*** EVIL RELOAD ON WORKER {n} {what} (pid: {pid}) ***"
                ));
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// `log-maxsize`: the master renames a `logto` file grown past the limit (to
    /// `log-backupname`, else `<logto>.<unix time>`) and reopens it. Workers write to the new
    /// file once respawned.
    fn rotate_log(&self) {
        let (Some(path), max) = (&self.config.logto, self.config.log_maxsize) else {
            return;
        };
        if max == 0 || std::fs::metadata(path).map_or(0, |m| m.len()) < max {
            return;
        }
        let backup = self.config.log_backupname.clone().unwrap_or_else(|| {
            let now = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            PathBuf::from(format!("{}.{now}", path.display()))
        });
        match std::fs::rename(path, &backup) {
            Ok(()) => {
                if let Err(e) = redirect_log(path) {
                    log::line(&e);
                }
                log::line(&format!("logfile rotated to {}", backup.display()));
            }
            Err(e) => log::line(&format!("unable to rotate log {}: {e}", path.display())),
        }
    }

    /// `WATCHDOG=1` every `WATCHDOG_USEC / 2`, from the loop itself (5.1).
    fn ping_watchdog(&mut self) {
        if let Some((interval, last)) = self.watchdog {
            if last.elapsed() >= interval {
                self.watchdog = Some((interval, Instant::now()));
                self.notifier.send("WATCHDOG=1\n");
            }
        }
    }

    /// Touch files: at most once per second, a changed mtime triggers its action.
    fn check_touch(&mut self) {
        if self.touched.is_empty() || self.last_touch_check.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_touch_check = Instant::now();
        let mut actions = Vec::new();
        for (path, seen, action) in &mut self.touched {
            let now = mtime(path);
            if now != *seen {
                *seen = now;
                actions.push((path.clone(), *action));
            }
        }
        for (path, action) in actions {
            let (what, kind) = match action {
                TouchAction::Reload => ("grace them all", Some(ReloadKind::Graceful)),
                TouchAction::WorkersReload => (
                    "workers reload",
                    Some(ReloadKind::Workers { brutal: false }),
                ),
                TouchAction::ChainReload => ("chain reload", Some(ReloadKind::Chain)),
                TouchAction::LogReopen => ("reopening logs", None),
            };
            log::dated(&format!(
                "*** {} has been touched... {what} !!! ***",
                path.display()
            ));
            match kind {
                Some(kind) => self.reload(kind),
                None => self.reopen_logs(),
            }
        }
    }

    /// Ends the process (shutdown complete) or re-executes it (non-lazy reload complete).
    fn maybe_finish(&mut self) -> Option<i32> {
        if self.phase == Phase::Running || self.slots.iter().any(|s| s.pid.is_some()) {
            return None;
        }
        if self.phase == Phase::Reexec {
            if self.config.exit_on_reload {
                self.vacuum();
                log::line("goodbye to uWSGI.");
                return Some(0);
            }
            let error = self.reexec();
            log::line(&format!("re-exec failed: {error}; respawning workers"));
            self.phase = Phase::Running;
            return None;
        }
        self.vacuum();
        log::line("goodbye to uWSGI.");
        Some(self.exit_code)
    }

    /// Non-lazy reload: execve our own binary, keeping the listeners (3.9).
    fn reexec(&mut self) -> String {
        log::line("binary reloading uWSGI...");
        log::line(&format!("chdir() to {}", self.startup_dir.display()));
        let _ = std::env::set_current_dir(&self.startup_dir);
        let max_fd = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX)
            .ok()
            .flatten()
            .unwrap_or(1024);
        log::line(&format!(
            "closing all non-uwsgi socket fds > 2 (max_fd = {max_fd})..."
        ));
        let mut kept = Vec::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let fd = l.listener.raw_fd();
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            );
            log::line(&format!(
                "found fd {fd} mapped to socket {i} ({})",
                l.listener.name
            ));
            // `fd;origin;configured name`: the new image matches by name first (a `:0` port
            // only matches by name), as uWSGI does.
            let origin = if l.self_bound { "bound" } else { "systemd" };
            kept.push(format!("{fd};{origin};{}", l.listener.name));
        }
        std::env::set_var(ENV_INHERITED, kept.join(","));
        let reloads: u64 = std::env::var(ENV_RELOADS)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        std::env::set_var(ENV_RELOADS, (reloads + 1).to_string());
        if let Some(path) = self.notifier.path() {
            std::env::set_var("NOTIFY_SOCKET", path);
        }
        for (k, v) in &self.watchdog_env {
            std::env::set_var(k, v);
        }
        let binary = match std::env::current_exe() {
            Ok(b) => b,
            Err(e) => return format!("current_exe(): {e}"),
        };
        log::line(&format!("running {}", binary.display()));
        use std::os::unix::ffi::OsStrExt;
        let to_c = |s: &std::ffi::OsStr| std::ffi::CString::new(s.as_bytes());
        let (Ok(path), Ok(args)) = (
            to_c(binary.as_os_str()),
            self.argv
                .iter()
                .map(|a| to_c(a))
                .collect::<Result<Vec<_>, _>>(),
        ) else {
            return "NUL byte in the command line".to_string();
        };
        // Signals stay blocked across execve until the new image has its handlers (a SIGHUP or
        // SIGTERM in between would otherwise take the default action and kill the service).
        // Plain execv: std's exec would unblock every signal first.
        let mask = signals::block_all();
        let error = match nix::unistd::execv(&path, &args) {
            Err(e) => e.to_string(),
            Ok(never) => match never {},
        };
        signals::restore(&mask);
        // exec failed: restore what the running image needs.
        std::env::remove_var(ENV_INHERITED);
        std::env::set_var(ENV_RELOADS, reloads.to_string());
        std::env::remove_var("NOTIFY_SOCKET");
        for (k, _) in &self.watchdog_env {
            std::env::remove_var(k);
        }
        for l in &self.listeners {
            let _ = nix::fcntl::fcntl(
                l.listener.raw_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
        }
        error
    }

    fn vacuum(&self) {
        if !self.config.vacuum {
            return;
        }
        // The pidfile is root's when a uid was set: the master can no longer delete it.
        let pidfile = self.pidfile.as_ref().filter(|_| self.config.uid.is_none());
        for (path, line) in [
            (pidfile, "VACUUM: pidfile removed."),
            (self.pidfile2.as_ref(), "VACUUM: pidfile2 removed."),
        ] {
            let Some(path) = path else { continue };
            match std::fs::remove_file(path) {
                Ok(()) => log::line(line),
                Err(e) => log::line(&format!("unlink(): {e} [{}]", path.display())),
            }
        }
        if let Some(Ok(Address::Unix(path))) =
            self.config.stats.as_deref().map(listener::parse_address)
        {
            if std::fs::remove_file(&path).is_ok() {
                log::line(&format!("VACUUM: unix socket {} removed.", path.display()));
            }
        }
        for l in &self.listeners {
            let Some((path, inode)) = &l.unix_file else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata(path) {
                Ok(m) if m.ino() != *inode => log::line(&format!(
                    "VACUUM WARNING: unix socket {} changed inode. Skip removal",
                    path.display()
                )),
                _ => match std::fs::remove_file(path) {
                    Ok(()) => {
                        log::line(&format!("VACUUM: unix socket {} removed.", path.display()))
                    }
                    Err(e) => log::line(&format!("unlink(): {e} [{}]", path.display())),
                },
            }
        }
    }

    /// READY / STATUS notifications (5.1).
    fn notify_state(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let mut accepting = 0;
        let mut starting = 0;
        let mut stale = 0;
        for i in 0..self.target {
            let s = &self.slots[i];
            if s.pid.is_none() {
                continue;
            }
            match self.board.slot(i + 1).state.load(Ordering::Acquire) {
                STATE_ACCEPTING | STATE_BUSY => accepting += 1,
                STATE_STARTING => starting += 1,
                _ => {}
            }
            if s.epoch != self.epoch || s.curse.is_some() {
                stale += 1;
            }
        }
        let all_tried = self.slots[..self.target].iter().all(|s| s.spawned_once);
        let status = (accepting, self.target);
        if self.ready_pending {
            if accepting > 0 && starting == 0 && stale == 0 && all_tried {
                self.ready_pending = false;
                self.last_status = Some(status);
                self.notifier.send(&format!(
                    "READY=1\nSTATUS=ready: {accepting} of {} workers accepting\nMAINPID={}\n",
                    self.target,
                    std::process::id()
                ));
            }
        } else if self.last_status != Some(status) {
            self.last_status = Some(status);
            self.notifier.send(&format!(
                "STATUS=ready: {accepting} of {} workers accepting\n",
                self.target
            ));
        }
    }
}

/// Descriptors a worker closes right after fork, and the liveness pipe it keeps.
pub(crate) struct ChildFds {
    pub close: [Option<std::os::fd::RawFd>; 7],
    pub alive_read: std::os::fd::RawFd,
}

/// Detaches: fork (the parent exits 0), `setsid`, standard input from `/dev/null`, output to
/// `path`. The master is still single-threaded here (no worker, no thread).
fn daemonize(path: &std::path::Path) -> Result<(), String> {
    // SAFETY: single-threaded process; the parent only calls _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => return Err(format!("fork(): {e}")),
    }
    nix::unistd::setsid().map_err(|e| format!("setsid(): {e}"))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    nix::unistd::dup2(null.as_raw_fd(), 0).map_err(|e| format!("dup2(): {e}"))?;
    redirect_log(path)
}

/// Appends standard error (and output) to `path`; workers inherit it.
fn redirect_log(path: &std::path::Path) -> Result<(), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("unable to open log file {}: {e}", path.display()))?;
    for fd in [1, 2] {
        nix::unistd::dup2(file.as_raw_fd(), fd)
            .map_err(|e| format!("dup2() of log file {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Writes `<pid>\n` to a pidfile; `safe` writes a temporary file and renames it over.
fn write_pidfile(path: Option<&std::path::Path>, safe: bool) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let content = format!("{}\n", std::process::id());
    let error = |e: std::io::Error| format!("unable to write pidfile {}: {e}", path.display());
    if safe {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, content).map_err(error)?;
        std::fs::rename(&tmp, path).map_err(error)
    } else {
        std::fs::write(path, content).map_err(error)
    }
}

/// Address space and resident set of a process, in bytes.
fn statm(pid: Pid) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some((fields.next()?? * page, fields.next()?? * page))
}

/// uWSGI lowers `processes` below `RLIMIT_NPROC` (2.1 `processes`).
fn adjust_to_nproc(config: &mut ServerConfig) {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NPROC) {
        if soft != RLIM_INFINITY && soft < config.processes as u64 + 1 {
            config.processes = (soft.saturating_sub(1) as usize).max(1);
            log::line(&format!(
                "!!! number of workers adjusted to {} due to system limits !!!",
                config.processes
            ));
        }
    }
}

/// Every touch file of the configuration with its current mtime.
fn watched_files(config: &ServerConfig) -> Vec<(PathBuf, Option<SystemTime>, TouchAction)> {
    let groups = [
        (&config.touch_reload, TouchAction::Reload),
        (&config.touch_workers_reload, TouchAction::WorkersReload),
        (&config.touch_chain_reload, TouchAction::ChainReload),
        (&config.touch_logreopen, TouchAction::LogReopen),
    ];
    groups
        .into_iter()
        .flat_map(|(paths, action)| paths.iter().map(move |p| (p.clone(), mtime(p), action)))
        .collect()
}

/// Creates the master FIFO (replacing whatever is at the path, as uWSGI does) and opens it
/// read-write and non-blocking, so that writers coming and going never give end-of-file.
fn open_fifo(path: &std::path::Path) -> Result<std::fs::File, String> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| format!("mkfifo() {}: {e}", path.display()))?;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("open() master fifo {}: {e}", path.display()))
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Options a lazy reload cannot change (3.9 step 1).
fn restart_needed(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.sockets != new.sockets {
        out.push("sockets");
    }
    if old.uid != new.uid {
        out.push("uid");
    }
    if old.gid != new.gid {
        out.push("gid");
    }
    if old.chdir != new.chdir {
        out.push("chdir");
    }
    if old.pidfile != new.pidfile {
        out.push("pidfile");
    }
    out
}

/// Steps 8-9: listeners inherited from a re-exec or from systemd, then the configured ones not
/// inherited are bound.
fn setup_listeners(
    config: &ServerConfig,
    inherited: Option<&str>,
) -> Result<Vec<MasterListener>, String> {
    // (socket, address, self-bound, configured name when inherited from our previous image)
    let mut adopted: Vec<(listener::ListenSocket, Address, bool, Option<String>)> = Vec::new();
    let mut from_systemd = false;
    if let Some(list) = inherited {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let mut parts = item.splitn(3, ';');
            let fd: i32 = parts
                .next()
                .and_then(|fd| fd.parse().ok())
                .ok_or_else(|| format!("invalid {ENV_INHERITED}: {item}"))?;
            let self_bound = parts.next() != Some("systemd");
            let name = parts.next().map(str::to_string);
            let (socket, address) = listener::adopt(fd)?;
            adopted.push((socket, address, self_bound, name));
        }
    } else {
        let pid_matches = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            == Some(std::process::id());
        let count: i32 = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(var);
        }
        if pid_matches && count > 0 {
            log::line("- SystemD socket activation detected -");
            from_systemd = true;
            for fd in 3..3 + count {
                let (socket, address) = listener::adopt(fd)?;
                adopted.push((socket, address, false, None));
            }
        }
    }
    let mut out: Vec<MasterListener> = Vec::new();
    let mut needs_bind = Vec::new();
    let specs = config.effective_sockets()?;
    for spec in &specs {
        if let Some(fd) = spec.address.strip_prefix("fd://") {
            let by_name = adopted
                .iter()
                .position(|(_, _, _, name)| name.as_deref() == Some(spec.address.as_str()));
            let (socket, address) = match by_name {
                Some(pos) => {
                    let (socket, address, _, _) = adopted.remove(pos);
                    (socket, address)
                }
                None => listener::adopt(
                    fd.parse()
                        .map_err(|_| format!("invalid socket address: {}", spec.address))?,
                )?,
            };
            let (family, shown) = listener::describe(&address);
            let ml = MasterListener {
                listener: crate::Listener {
                    socket,
                    name: spec.address.clone(),
                    keep_alive: spec.keep_alive,
                },
                unix_file: None,
                address,
                self_bound: false,
            };
            log::line(&format!(
                "uwsgi socket {} inherited {family} address {shown} fd {}",
                out.len(),
                ml.listener.raw_fd()
            ));
            out.push(ml);
            continue;
        }
        let wanted = listener::parse_address(&spec.address)?;
        let by_name = adopted
            .iter()
            .position(|(_, _, _, name)| name.as_deref() == Some(spec.address.as_str()));
        match by_name.or_else(|| adopted.iter().position(|(_, a, _, _)| *a == wanted)) {
            Some(pos) => {
                let (socket, address, self_bound, _) = adopted.remove(pos);
                let index = out.len();
                let (family, real) = listener::describe(&address);
                let (verb, shown) = if from_systemd {
                    ("attached to", real)
                } else {
                    ("inherited", spec.address.clone())
                };
                let ml = MasterListener {
                    listener: crate::Listener {
                        socket,
                        name: spec.address.clone(),
                        keep_alive: spec.keep_alive,
                    },
                    unix_file: unix_file(&address, self_bound),
                    address,
                    self_bound,
                };
                log::line(&format!(
                    "uwsgi socket {index} {verb} {family} address {shown} fd {}",
                    ml.listener.raw_fd()
                ));
                out.push(ml);
            }
            None => needs_bind.push(spec),
        }
    }
    // Inherited descriptors matching no line: served as HTTP [fix] (systemd); dropped after a
    // re-exec whose configuration no longer names them.
    for (socket, address, self_bound, _) in adopted {
        if !from_systemd {
            continue;
        }
        let index = out.len();
        let (family, shown) = listener::describe(&address);
        let ml = MasterListener {
            listener: crate::Listener {
                socket,
                name: shown.clone(),
                keep_alive: false,
            },
            unix_file: None,
            address,
            self_bound,
        };
        log::line(&format!(
            "uwsgi socket {index} attached to {family} address {shown} fd {}",
            ml.listener.raw_fd()
        ));
        out.push(ml);
    }
    if !needs_bind.is_empty() {
        if let Ok(max) = std::fs::read_to_string("/proc/sys/net/core/somaxconn") {
            let max: u32 = max.trim().parse().unwrap_or(u32::MAX);
            if config.listen > max {
                return Err(format!(
                    "Listen queue size is greater than the system max net.core.somaxconn ({max})."
                ));
            }
        }
    }
    for spec in needs_bind {
        let (ml, line) = listener::bind(out.len(), spec, config)?;
        log::line(&line);
        out.push(ml);
    }
    if out.is_empty() {
        return Err("The -s/--socket option is missing and stdin is not a socket.".to_string());
    }
    Ok(out)
}

fn unix_file(address: &Address, self_bound: bool) -> Option<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    match address {
        Address::Unix(p) if self_bound => std::fs::metadata(p).ok().map(|m| (p.clone(), m.ino())),
        _ => None,
    }
}

/// The banner up to the socket lines (6.2).
fn banner_head<A: App>() {
    log::line(&format!(
        "*** Starting {} {} (64bit) on [{}] ***",
        A::NAME,
        A::VERSION,
        log::ctime_now()
    ));
    // SAFETY: uname fills the zeroed struct we own.
    let uts = unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        libc::uname(&mut u);
        u
    };
    let field = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates every field.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    log::line(&format!(
        "os: {}-{} {}",
        field(&uts.sysname),
        field(&uts.release),
        field(&uts.version)
    ));
    log::line(&format!("nodename: {}", field(&uts.nodename)));
    log::line(&format!("machine: {}", field(&uts.machine)));
    log::line(&format!(
        "detected number of CPU cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    if let Ok(cwd) = std::env::current_dir() {
        log::line(&format!("current working directory: {}", cwd.display()));
    }
    if let Ok(exe) = std::env::current_exe() {
        log::line(&format!("detected binary path: {}", exe.display()));
    }
    if let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
    {
        log::line(&format!("your processes number limit is {soft}"));
    }
    if let Ok(Some(page)) = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        log::line(&format!("your memory page size is {page} bytes"));
    }
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        log::line(&format!("detected max file descriptor number: {soft}"));
    }
    log::line("thunder lock: disabled (you can enable it with --thunder-lock)");
}

/// The banner after the socket and privilege lines, notices included (6.2).
fn banner_tail(config: &ServerConfig) {
    log::line(&format!(
        "your server socket listen backlog is limited to {} connections",
        config.listen
    ));
    log::line(&format!(
        "your mercy for graceful operations on workers is {} seconds",
        config.worker_reload_mercy.as_secs()
    ));
    if config.post_buffering > 0 {
        log::line(&format!(
            "setting request body buffering size to {} bytes",
            config.post_buffering
        ));
    }
    log::line(if config.processes == 1 {
        "*** Operational MODE: single process ***"
    } else {
        "*** Operational MODE: preforking ***"
    });
    for line in &config.notices {
        log::line(line);
    }
}
