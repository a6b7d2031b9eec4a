//! What the loop checks on each turn: harakiri (3.6), mercy, lifetimes and memory, log size,
//! touch files, the systemd watchdog.

use super::*;

impl<A: App> Master<A> {
    /// Harakiri (3.6): SIGKILL a worker whose request outlived its deadline.
    pub(super) fn check_harakiri(&mut self) {
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
    pub(super) fn harakiri_dump(
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
    pub(super) fn check_mercy(&mut self) {
        let now = Instant::now();
        let mercy = self.config.worker_reload_mercy;
        for i in 0..self.slots.len() {
            let Some(pid) = self.slots[i].pid else {
                continue;
            };
            // A worker stopping on its own (SIGHUP from an operator, recycling) marks its slot
            // stopping: the mercy clock starts when the master first sees it.
            if self.slots[i].curse.is_none()
                && self.board.slot(i + 1).state.load(Ordering::Acquire) == STATE_STOPPING
            {
                self.slots[i].curse = Some(Curse {
                    at: now,
                    reason: StopReason::Reload,
                    mercy_killed: false,
                });
            }
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
    pub(super) fn check_lifetime_and_memory(&mut self) {
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
            // A worker still booting has no SIGHUP handler yet (it would die or miss the
            // request); its lifetime is checked again once it accepts.
            if !lifetime.is_zero()
                && matches!(state, STATE_ACCEPTING | STATE_BUSY)
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
    pub(super) fn rotate_log(&self) {
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
    pub(super) fn ping_watchdog(&mut self) {
        if let Some((interval, last)) = self.watchdog {
            if last.elapsed() >= interval {
                self.watchdog = Some((interval, Instant::now()));
                self.notifier.send("WATCHDOG=1\n");
            }
        }
    }

    /// Touch files: at most once per second, a changed mtime triggers its action.
    pub(super) fn check_touch(&mut self) {
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
}

/// Address space and resident set of a process, in bytes.
pub(super) fn statm(pid: Pid) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    Some((fields.next()?? * page, fields.next()?? * page))
}

pub(super) fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Every touch file of the configuration with its current mtime.
pub(super) fn watched_files(
    config: &ServerConfig,
) -> Vec<(PathBuf, Option<SystemTime>, TouchAction)> {
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
