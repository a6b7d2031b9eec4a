//! Startup, in the order of SERVER.md 3.1: configuration, logs, pidfiles, listeners (inherited
//! or bound), privileges, scoreboard, banner. Everything here runs before the first fork.

use super::*;

impl<A: App> Master<A> {
    pub(super) fn start(mut invocation: Invocation) -> Result<Master<A>, Fatal> {
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
}

/// Steps 8-9: listeners inherited from a re-exec or from systemd, then the configured ones not
/// inherited are bound.
pub(super) fn setup_listeners(
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

pub(super) fn unix_file(address: &Address, self_bound: bool) -> Option<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    match address {
        Address::Unix(p) if self_bound => std::fs::metadata(p).ok().map(|m| (p.clone(), m.ino())),
        _ => None,
    }
}

/// The banner up to the socket lines (6.2).
pub(super) fn banner_head<A: App>() {
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
pub(super) fn banner_tail(config: &ServerConfig) {
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

/// Detaches: fork (the parent exits 0), `setsid`, standard input from `/dev/null`, output to
/// `path`. The master is still single-threaded here (no worker, no thread).
pub(super) fn daemonize(path: &std::path::Path) -> Result<(), String> {
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
pub(super) fn redirect_log(path: &std::path::Path) -> Result<(), String> {
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
pub(super) fn write_pidfile(path: Option<&std::path::Path>, safe: bool) -> Result<(), String> {
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

/// uWSGI lowers `processes` below `RLIMIT_NPROC` (2.1 `processes`).
pub(super) fn adjust_to_nproc(config: &mut ServerConfig) {
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

/// Creates the master FIFO (replacing whatever is at the path, as uWSGI does) and opens it
/// read-write and non-blocking, so that writers coming and going never give end-of-file.
pub(super) fn open_fifo(path: &std::path::Path) -> Result<std::fs::File, String> {
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
