//! Worker slots: spawning (fork), reaping and classifying deaths, respawn and the fork-bomb
//! guard (3.5), stop requests, worker count changes, pause.

use super::*;

impl<A: App> Master<A> {
    pub(super) fn curse(&mut self, i: usize, sig: Signal, reason: StopReason) {
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

    pub(super) fn curse_all(&mut self, sig: Signal, reason: StopReason) {
        for i in 0..self.slots.len() {
            self.slots[i].respawn_at = None;
            self.curse(i, sig, reason);
        }
    }

    pub(super) fn signal_live(&mut self, sig: Signal) {
        for s in &self.slots {
            if let Some(pid) = s.pid {
                let _ = kill(pid, sig);
            }
        }
    }

    /// `waitpid(-1, WNOHANG)` until nothing is left: classify each death, log it, free the slot.
    pub(super) fn reap(&mut self) {
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

    pub(super) fn on_death(
        &mut self,
        i: usize,
        pid: Pid,
        code: Option<i32>,
        signal: Option<Signal>,
    ) {
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
            (_, None) => {
                log::line(&format!(
                    "DAMN ! worker {n} (pid: {pid}) died :( trying respawn ..."
                ));
                self.count_unplanned(i, now);
            }
        }
    }

    /// Fork-bomb protection (3.5): too many unplanned deaths in a row postpone respawns by
    /// `forkbomb-delay` without blocking the loop [fix].
    pub(super) fn count_unplanned(&mut self, i: usize, now: Instant) {
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

    pub(super) fn spawn_missing(&mut self) {
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

    pub(super) fn spawn(&mut self, i: usize) {
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
        // Buffered output would otherwise be written twice, by the master and by the child.
        let _ = std::io::Write::flush(&mut std::io::stdout());
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

    pub(super) fn add_worker(&mut self) {
        if self.phase != Phase::Running || self.target >= self.slots.len() {
            return;
        }
        self.target += 1;
        log::line(&format!(
            "SIGTTIN received: increasing workers to {}",
            self.target
        ));
    }

    pub(super) fn remove_worker(&mut self) {
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

    pub(super) fn toggle_pause(&mut self) {
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
    pub(super) fn sync_pause(&mut self) {
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
}
