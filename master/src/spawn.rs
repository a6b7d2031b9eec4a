//! The worker side of `fork` (SERVER.md 3.3): reset what belongs to the master, then hand the
//! listeners, the slot and the configuration to [`App::work`] and leave with `_exit`.

use crate::run::ChildFds;
use crate::{signals, App, Listener, ServerConfig, SlotHandle, WorkerContext};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;

/// Runs in the forked child; never returns.
pub(crate) fn child_main<A: App>(
    app: &A,
    id: usize,
    listeners: Vec<Listener>,
    slot: SlotHandle,
    config: Arc<ServerConfig>,
    fds: ChildFds,
) -> ! {
    // Signals are still blocked (the master blocked them around fork): reset the master's
    // dispositions first, so nothing reaches a master handler in this process.
    signals::reset_in_child();
    for fd in fds.close.into_iter().flatten() {
        // SAFETY: these descriptors belong to the master; the child never uses their owners
        // (it leaves with _exit, so no destructor runs).
        unsafe { libc::close(fd) };
    }
    if config.no_orphans {
        // SAFETY: plain prctl.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    }
    // SAFETY: dup returns a new descriptor owned by the WorkerContext.
    let alive = unsafe { libc::dup(fds.alive_read) };
    let master_alive = if alive >= 0 {
        // SAFETY: fresh descriptor from dup.
        unsafe { OwnedFd::from_raw_fd(alive) }
    } else {
        exit_now(1)
    };
    signals::restore(&nix::sys::signal::SigSet::empty());
    if let Some(title) = crate::procname::worker_title(&config, id) {
        crate::procname::set_title(&title);
    }
    if let Some(dir) = &config.chdir2 {
        if let Err(e) = std::env::set_current_dir(dir) {
            crate::log::line(&format!("chdir() to {}: {e}", dir.display()));
            exit_now(crate::EXIT_INIT_FAILED);
        }
    }
    let ctx = WorkerContext {
        id,
        listeners,
        slot,
        master_alive,
        config,
    };
    let code =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.work(ctx))).unwrap_or(1);
    exit_now(code)
}

/// Flushes our own output and `_exit`s: no destructor or exit handler of the master runs here.
fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}
