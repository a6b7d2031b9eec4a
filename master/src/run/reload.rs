//! Reloads (3.9: rolling, chained, re-exec, brutal), shutdown (3.10) and vacuum.

use super::*;

impl<A: App> Master<A> {
    pub(super) fn reload(&mut self, kind: ReloadKind) {
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
        if config.processes > self.slots.len() {
            log::line(&format!(
                "restart needed to run more than {} workers (processes = {})",
                self.slots.len(),
                config.processes
            ));
        }
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

    /// Chain reload: curses slot `i` (or completes the chain).
    pub(super) fn chain_next(&mut self, i: usize) {
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
    pub(super) fn advance_chain(&mut self) {
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
    pub(super) fn reopen_logs(&self) {
        for path in [&self.config.logto, &self.config.logto2]
            .into_iter()
            .flatten()
        {
            if let Err(e) = redirect_log(path) {
                log::line(&e);
            }
        }
    }

    pub(super) fn shutdown(&mut self, graceful: bool) {
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

    /// Non-lazy reload: execve our own binary, keeping the listeners (3.9).
    pub(super) fn reexec(&mut self) -> String {
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

    pub(super) fn vacuum(&self) {
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
}

/// Options a lazy reload cannot change (3.9 step 1).
pub(super) fn restart_needed(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
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
