//! The master: startup in the order of SERVER.md 3.1, then a single-threaded loop of named steps
//! (7.2): poll, drain signals, reap, apply intents, harakiri, mercy, touch files, spawn, finish,
//! notify. Every fork happens from this loop; the master never creates a thread.
//!
//! This file holds the state and the loop; the steps live in `startup` (3.1), `workers` (spawn,
//! reap, respawn), `supervise` (harakiri, mercy, lifetimes, touch files, watchdog), `reload`
//! (reloads, shutdown, vacuum) and `control` (master FIFO, status outputs, stats document).

use crate::config::{absolute, ServerConfig};
use crate::listener::{self, Address, MasterListener};
use crate::log;
use crate::notify::Notifier;
use crate::scoreboard::{
    self, Scoreboard, STATE_ACCEPTING, STATE_BUSY, STATE_STARTING, STATE_STOPPING,
};
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

mod control;
mod reload;
mod startup;
mod supervise;
mod workers;

use startup::redirect_log;
use supervise::{statm, watched_files};

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
            // Workers of an older configuration hold READY back during a reload; a worker
            // recycled by max-worker-lifetime or max-requests does not (with a short lifetime
            // it may be cursed in the very turn it is first seen accepting).
            if s.epoch != self.epoch {
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
